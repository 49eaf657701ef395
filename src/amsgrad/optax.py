"""Optax: :func:`amsgrad_v2`, the operator as an ``optax.GradientTransformation``.

The public entry of :mod:`amsgrad.adapters.optax` (which holds the code and its documentation).
``import amsgrad.optax`` imports JAX and Optax; ``import amsgrad`` does not.
"""

from amsgrad.adapters.optax import AmsgradV2State, amsgrad_v2, mindspore_decay_mask

__all__ = ["AmsgradV2State", "amsgrad_v2", "mindspore_decay_mask"]
