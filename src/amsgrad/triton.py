"""Triton: ApplyAdamWithAmsgradV2 as one fused kernel over many CUDA tensors.

The public entry of :mod:`amsgrad.adapters.triton` (which holds the code and its documentation).
``import amsgrad.triton`` imports Triton and PyTorch (``pip install amsgrad[gpu]``);
``import amsgrad`` does not.
"""

from amsgrad.adapters.triton import (
    apply_many,
    apply_many_capturable,
    check_many,
    compile_ptx,
    interpreting,
)

__all__ = ["apply_many", "apply_many_capturable", "check_many", "compile_ptx", "interpreting"]
