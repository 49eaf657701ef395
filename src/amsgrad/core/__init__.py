"""The core layer: the operator's contract, its reference maths, the native kernel and its
dispatch, and the functional NumPy API. It imports NumPy and the standard library only, never
an adapter or an application (see docs/ARCHITECTURE.md)."""
