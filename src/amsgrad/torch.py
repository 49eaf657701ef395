"""PyTorch: :class:`AMSGradV2`, a ``torch.optim.Optimizer`` on the exact kernel.

The public entry of :mod:`amsgrad.adapters.torch` (which holds the code and its documentation).
``import amsgrad.torch`` imports PyTorch; ``import amsgrad`` does not.
"""

from amsgrad.adapters.torch import AMSGradV2, mindspore_param_groups

__all__ = ["AMSGradV2", "mindspore_param_groups"]
