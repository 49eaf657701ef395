"""JAX: :func:`apply_adam_with_amsgrad_v2`, the operator as a pure function of JAX arrays.

The public entry of :mod:`amsgrad.adapters.jax` (which holds the code and its documentation).
``import amsgrad.jax`` imports JAX; ``import amsgrad`` does not.
"""

from amsgrad.adapters.jax import apply_adam_with_amsgrad_v2

__all__ = ["apply_adam_with_amsgrad_v2"]
