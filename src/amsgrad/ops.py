"""MindSpore-style ``ops`` namespace: ``from amsgrad import ops; ops.ApplyAdamWithAmsgradV2()``."""

from amsgrad.adapters.mindspore_compat import ApplyAdamWithAmsgradV2

__all__ = ["ApplyAdamWithAmsgradV2"]
