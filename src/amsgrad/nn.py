"""MindSpore-style ``nn`` namespace: ``import amsgrad.nn as nn; class Net(nn.Cell): ...``, and
MindSpore's learning-rate helpers: ``nn.dynamic_lr.cosine_decay_lr(...)`` (also
``nn.cosine_decay_lr``) and ``nn.dynamic_lr.schedule_values("CosineDecayLR", steps, ...)``."""

from amsgrad.adapters import mindspore_lr as dynamic_lr
from amsgrad.adapters.mindspore_compat import Cell
from amsgrad.adapters.mindspore_lr import (
    cosine_decay_lr,
    exponential_decay_lr,
    inverse_decay_lr,
    natural_exp_decay_lr,
    piecewise_constant_lr,
    polynomial_decay_lr,
    schedule_values,
    warmup_lr,
)

__all__ = [
    "Cell",
    "cosine_decay_lr",
    "dynamic_lr",
    "exponential_decay_lr",
    "inverse_decay_lr",
    "natural_exp_decay_lr",
    "piecewise_constant_lr",
    "polynomial_decay_lr",
    "schedule_values",
    "warmup_lr",
]
