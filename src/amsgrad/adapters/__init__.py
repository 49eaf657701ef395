"""The adapter layer: the operator in other frameworks' terms (PyTorch, JAX, Optax and a
MindSpore-shaped surface), built on the core. Each module imports its framework; the public
names are re-exported by :mod:`amsgrad.torch`, :mod:`amsgrad.jax`, :mod:`amsgrad.optax`,
:mod:`amsgrad.ops` and :mod:`amsgrad.nn`."""
