""":class:`~amsgrad.torch.AMSGradV2`'s parameters updated in a dtype other than their own.

* **Master weights** (``master_weights=True``): a float16 or bfloat16 parameter keeps a float32
  master copy in ``state["master"]`` (made from the parameter at its first step: the widening
  is exact) and float32 ``m``, ``v``, ``vhat``. Each step widens the gradient to float32
  (exact), runs the float32 update on (master, m, v, vhat, gradient), and writes the master
  copy rounded to the parameter's dtype (to nearest, ties to even, as ``Tensor.to``) into the
  parameter. Other dtypes are updated as without the option.
* **Complex parameters** (complex64, complex128): the real and imaginary parts are separate
  elements, as ``torch.optim.Adam`` treats them: the update runs on ``torch.view_as_real`` of the
  parameter, its gradient and its state (complex tensors of the parameter's dtype), in float32
  for complex64 and float64 for complex128. MindSpore's operator has no complex dtype: this is
  an extension, exact in the sense that it is the operator applied to the real pairs.

Both run on the kernel path (CPU) and on the torch-operations path; neither takes the fast step
(:func:`amsgrad.adapters.torch_fast.record` declines their groups).
"""

from __future__ import annotations

from typing import Any

import torch

from amsgrad.adapters.torch_support import MASTER, MOMENTS, grad_of, local, mindspore_grad

__all__ = [
    "HALF_DTYPES",
    "REAL_OF",
    "check_complex",
    "check_grad",
    "compute_dtype",
    "operands",
    "restore_loaded",
    "uses_master",
    "write_back",
]

#: The dtypes ``master_weights`` applies to.
HALF_DTYPES = (torch.float16, torch.bfloat16)
#: The real dtype each complex dtype is updated in.
REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def uses_master(param: torch.Tensor, master_weights: Any) -> bool:
    """True when ``param`` is updated through a float32 master copy."""
    return bool(master_weights) and param.dtype in HALF_DTYPES


def compute_dtype(param: torch.Tensor, master: bool) -> torch.dtype:
    """The dtype the update of ``param`` runs in (float32 for a master copy, the real dtype of
    a complex parameter, the parameter's own dtype otherwise)."""
    if master:
        return torch.float32
    return REAL_OF.get(param.dtype, param.dtype)


def check_complex(where: Any, param: torch.Tensor) -> None:
    """A complex parameter must be complex64 or complex128 and not a conjugated view (the
    update writes its real and imaginary parts in place, which a conjugated view's memory does
    not hold as they read)."""
    if not param.is_complex():
        return
    if param.dtype not in REAL_OF:
        raise TypeError(
            f"{where}: complex parameters are updated as pairs of real numbers: expected "
            f"complex64 (float32 pairs) or complex128 (float64 pairs), got {param.dtype}"
        )
    if param.is_conj():
        raise ValueError(
            f"{where}: the parameter is a conjugated view (is_conj()), whose memory holds the "
            "conjugates of its values, so it cannot be updated in place; pass a tensor that is "
            "not a conjugated view (resolve_conj() makes one)"
        )


def check_grad(where: Any, param: torch.Tensor, grad: torch.Tensor, master: bool) -> None:
    """The gradient of a master-weights or complex parameter: the parameter's shape, and a
    dtype that converts exactly to the dtype of the update."""
    if tuple(grad.shape) != tuple(param.shape):
        raise ValueError(
            f"{where}: the gradient has shape {tuple(grad.shape)}, expected the parameter's "
            f"shape {tuple(param.shape)}"
        )
    if master:
        if grad.dtype not in (param.dtype, torch.float32):
            raise TypeError(
                f"{where}: the gradient has dtype {grad.dtype}; with master_weights=True a "
                f"{param.dtype} parameter takes a gradient of dtype {param.dtype} or float32 "
                "(widened to float32 exactly)"
            )
    elif grad.dtype != param.dtype:
        raise TypeError(
            f"{where}: the gradient has dtype {grad.dtype}, expected the complex parameter's "
            f"dtype {param.dtype}"
        )


def _real(tensor: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def operands(
    param: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(var, m, v, vhat, grad)`` of one parameter's update, in the dtype it runs in: the
    tensors written (views of their memory: the parameter, or its master copy; the state) and
    the gradient as MindSpore's ``nn.Adam`` hands it to the operator (a negated view resolved;
    a conjugated complex gradient resolved into a copy)."""
    var = local(param).detach()
    grad = local(grad_of(param)).detach()
    master = state.get(MASTER)
    if master is not None:
        var = local(master)
        grad = grad.resolve_neg().to(torch.float32)
    pairs = var.is_complex()
    if pairs:
        var = torch.view_as_real(var)
        grad = torch.view_as_real(grad.resolve_conj().resolve_neg())
    m, v, vhat = (_real(local(state[name])) for name in MOMENTS)
    grad = mindspore_grad(var, grad, group, pairs)
    if grad.is_neg():
        grad = grad.resolve_neg()
    return var, m, v, vhat, grad


def write_back(params: list[torch.Tensor], states: dict[torch.Tensor, dict[str, Any]]) -> None:
    """After the update: each master-weights parameter becomes its master copy rounded to the
    parameter's dtype (``copy_`` rounds to nearest, ties to even, as ``Tensor.to``)."""
    for param in params:
        master = states[param].get(MASTER)
        if master is not None:
            local(param).detach().copy_(local(master))


def restore_loaded(state: dict[str, Any], saved: dict[str, Any], param: torch.Tensor) -> None:
    """After ``torch.optim.Optimizer.load_state_dict``, which casts every floating-point state
    tensor to its parameter's dtype: the master copy and the moments of a master-weights state
    again as loaded (float32, on the parameter's device)."""
    for name in (*MOMENTS, MASTER):
        state[name] = saved[name].detach().to(device=param.device, dtype=torch.float32)
