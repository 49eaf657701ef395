"""Optax: :func:`amsgrad_v2`, the operator as an ``optax.GradientTransformation``, and its
state from and to MindSpore checkpoints (:func:`load_mindspore`, :func:`save_mindspore`).

The public entry of :mod:`amsgrad.adapters.optax` and :mod:`amsgrad.adapters.optax_mindspore`
(which hold the code and its documentation).
``import amsgrad.optax`` imports JAX and Optax; ``import amsgrad`` does not.
"""

from amsgrad.adapters.optax import AmsgradV2State, amsgrad_v2, mindspore_decay_mask
from amsgrad.adapters.optax_mindspore import load_mindspore, save_mindspore

__all__ = [
    "AmsgradV2State",
    "amsgrad_v2",
    "load_mindspore",
    "mindspore_decay_mask",
    "save_mindspore",
]
