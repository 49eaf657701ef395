"""MindSpore-style ``nn`` namespace: ``import amsgrad.nn as nn; class Net(nn.Cell): ...``."""

from amsgrad.adapters.mindspore_compat import Cell

__all__ = ["Cell"]
