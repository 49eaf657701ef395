"""ApplyAdamWithAmsgradV2 as a PyTorch optimizer: :class:`AMSGradV2`.

``import amsgrad.torch`` imports PyTorch; ``import amsgrad`` does not. Inside this module
``torch`` is the absolute import of the PyTorch package.

Usage::

    from amsgrad.torch import AMSGradV2

    opt = AMSGradV2(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Each ``step()`` applies MindSpore's ApplyAdamWithAmsgradV2 to every parameter that has a
gradient. Per parameter the state holds ``m``, ``v``, ``vhat`` (tensors like the parameter),
``step`` (an int) and ``beta1_power``, ``beta2_power``: they start at 1 and are multiplied by the
betas in float32 before each update, as MindSpore's Adam optimizers keep them (stored as Python
floats that hold the float32 values exactly, so that ``load_state_dict`` cannot cast them).

The update runs in one of two implementations, chosen per parameter by ``implementation``:

* ``"kernel"``: the bit-exact multi-tensor kernel
  (:func:`amsgrad.apply_adam_with_amsgrad_v2_many`) on the parameters' own memory
  (``tensor.detach().numpy()`` shares it: no copy), grouped by parameter group, dtype and beta
  powers. CPU tensors of dtype float16, float32 or float64 only.
* ``"torch"``: the same formula written with torch operations, one operation per step of the
  formula, each rounded to the parameter's dtype, on any device and for bfloat16 too. On CPU it
  gives the same bits as the kernel for float16, float32 and float64 (measured, held by the
  tests); on other devices it follows that device's arithmetic (see ``docs/frameworks.md``).
* ``"triton"``: one fused Triton kernel over the bucket (:mod:`amsgrad.adapters.triton`), for
  CUDA tensors of dtype float16, float32 or float64 (CPU tensors under Triton's interpreter,
  ``TRITON_INTERPRET=1``), exact to the kernel by its code generation.
* ``"auto"`` (default): ``"kernel"`` for CPU tensors; for CUDA tensors ``"triton"`` when Triton
  is installed, else ``"torch"``; ``"torch"`` for tensors on other devices.

``capturable=True`` (Triton path only) keeps the beta powers in the state as float32 tensors on
the device, multiplied there, and reads ``lr`` there (a one-element float32 tensor on the device,
or a number), so that ``step()`` can be captured in a CUDA graph after a warm-up step.

bfloat16 parameters on the kernel path raise TypeError (the operator has no bfloat16): pass
``master_weights=True``, which keeps a float32 master copy of each float16 and bfloat16
parameter (``state["master"]``, with float32 moments), runs the float32 update on it and writes
it rounded to the parameter's dtype into the parameter (:mod:`~amsgrad.adapters.torch_mixed`).
``implementation="torch"`` updates bfloat16 tensors, but only with betas that stay below 1 in
bfloat16 (the default beta2=0.999 rounds to 1.0 there). Complex parameters (complex64,
complex128) are updated as pairs of real numbers, as ``torch.optim.Adam`` treats them.

Hyper-parameters that round to a degenerate value in a parameter's dtype (a beta below 1 that
becomes 1, so that ``1 - beta`` is 0 and the parameters diverge; an eps above 0 that becomes 0,
so that a zero gradient gives NaN, as 1e-8 in float16) are refused at ``step()`` with a
ValueError, before anything is written. ``step()`` checks every parameter, gradient and state of
every group before it writes anything; ``load_state_dict`` checks the groups and state it is
given (a ``torch.optim.Adam(amsgrad=True)`` state dict is converted; one without amsgrad is
refused with a message saying how to convert it, and one of AdamW's decoupled weight decay is
refused: it is not MindSpore's update).

Sharded training: ``torch.distributed.optim.ZeroRedundancyOptimizer(params,
optimizer_class=AMSGradV2, ...)`` works (each rank keeps the state of its own parameters), and so
does FSDP2 (``fully_shard``): DTensor parameters are updated through their local shards
(``to_local()``), which is the whole update since it is elementwise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from amsgrad.adapters import torch_fast, torch_mixed
from amsgrad.adapters.mindspore_state import NameMap
from amsgrad.adapters.torch_mindspore import load_mindspore_state, save_mindspore_state
from amsgrad.adapters.torch_support import (
    NUMPY_OF,
    as_tensor_number,
    check_device_lr,
    check_distinct,
    check_group_keys,
    check_memory,
    check_state,
    check_triton_param,
    device_powers,
    from_torch_adam,
    local,
    lr_at,
    mindspore_param_groups,
    new_state,
    powers_as_floats,
    state_ok,
    to_dtype,
    torch_scalars,
    torch_update,
    triton_available,
    triton_update,
)
from amsgrad.core.contract import (
    check_grad_meta,
)
from amsgrad.core.dtypes import STATE_DTYPES_TEXT
from amsgrad.core.functional import apply_adam_with_amsgrad_v2_many
from amsgrad.core.optimizers import check_decay, check_hyper_in_dtype, check_optimizer_hyper

__all__ = ["AMSGradV2", "mindspore_param_groups"]

_IMPLEMENTATIONS = ("auto", "kernel", "torch", "triton")
#: The torch-operations path also takes bfloat16.
_TORCH_DTYPES = (*NUMPY_OF, torch.bfloat16)
#: Complex parameters are updated as real pairs (torch_mixed).
_COMPLEX_TEXT = " (or complex64, complex128)"
#: How this API spells (lr, beta1, beta2, eps) in messages (see check_optimizer_hyper).
_NAMES = ("lr", "betas[0] (beta1)", "betas[1] (beta2)", "eps")


# --------------------------------------------------------------------------- argument checks


def _check_hyper(
    where: str, lr: Any, betas: Any, eps: Any, implementation: Any, lr_name: str = "lr"
) -> None:
    """Validate one set of hyper-parameters; ``where`` prefixes the names (a group's index);
    ``lr_name``: how lr is named (``lr[3]``, an entry of a per-step list)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{where}betas: expected a pair (beta1, beta2) of numbers, got {betas!r}")
    if isinstance(lr, (list, tuple)):
        if not lr:
            raise ValueError(f"{where}lr: an empty list of per-step learning rates")
        for index, value in enumerate(lr):
            _check_hyper(where, value, betas, eps, implementation, f"lr[{index}]")
        return
    check_optimizer_hyper(
        lr, betas[0], betas[1], eps, names=(lr_name, *_NAMES[1:]), where=where,
        read=as_tensor_number, finite=True,
    )  # fmt: skip
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(
            f"{where}implementation: expected one of {', '.join(map(repr, _IMPLEMENTATIONS))}, "
            f"got {implementation!r}"
        )


def _lr_values(lr: Any) -> Any:
    """A 1-d tensor or array of per-step learning rates (MindSpore accepts a 1-d Tensor) as
    the list of its values; anything else as it is."""
    if isinstance(lr, (torch.Tensor, np.ndarray)) and lr.ndim == 1:
        return [float(value) for value in lr.tolist()]
    return lr


#: What ``__setstate__`` gives a group that lacks them (state dicts of older versions).
_GROUP_DEFAULTS = {
    "implementation": "auto",
    "master_weights": False,
    "weight_decay": 0.0,
    "loss_scale": 1.0,
    "grad_centralization": False,
    "maximize": False,
    "foreach": None,
    "fused": None,
    "capturable": False,
    "differentiable": False,
}
#: The keys a loaded group must hold (AMSGradV2.state_dict() writes them).
_LOADED_KEYS = ("lr", "betas", "eps")


def _check_group(group_index: int, group: dict[str, Any], params: list[Any]) -> None:
    """The checks of one parameter group, defaults merged in (``group``), as the constructor,
    :meth:`AMSGradV2.add_param_group` and :meth:`AMSGradV2.load_state_dict` run them: its keys
    and flags, hyper-parameters and decay, and its bfloat16 ``params`` without master
    weights."""
    where = f"param_groups[{group_index}]: "
    check_group_keys(where, group)
    _check_hyper(where, group["lr"], group["betas"], group["eps"], group["implementation"])
    check_decay(where, group["weight_decay"], group["loss_scale"])
    for index, param in enumerate(params):
        if (
            isinstance(param, torch.Tensor)
            and param.dtype == torch.bfloat16
            and not group["master_weights"]
        ):
            _check_param(group_index, index, param, group["implementation"])


def _check_once(group_index: int, params: list[Any], groups: list[dict[str, Any]]) -> None:
    """Refuse a parameter given twice, in ``params`` (the group being added as
    ``param_groups[group_index]``) or in one of ``groups``: it would be updated twice per
    step (torch.optim only warns within a group)."""
    seen: dict[int, str] = {}
    for index, group in enumerate(groups):
        for position, param in enumerate(group["params"]):
            seen.setdefault(id(param), f"param_groups[{index}]['params'][{position}]")
    for position, param in enumerate(params):
        if not isinstance(param, torch.Tensor):
            continue  # torch.optim.Optimizer reports it
        name = f"param_groups[{group_index}]['params'][{position}]"
        first = seen.setdefault(id(param), name)
        if first != name:
            raise ValueError(
                f"{name} is the same tensor as {first}: a parameter may be given once (it "
                "would be updated twice per step); remove the repeat"
            )


def _param_label(group_index: int, param_index: int, param: torch.Tensor) -> str:
    return (
        f"param_groups[{group_index}]['params'][{param_index}] "
        f"(shape {tuple(param.shape)}, dtype {param.dtype}, device {param.device})"
    )


def _path(implementation: str, param: torch.Tensor) -> str:
    """The implementation that updates ``param``: "kernel", "torch" or "triton" ("auto": the
    kernel on CPU, Triton on CUDA when it is installed, torch operations otherwise)."""
    if implementation != "auto":
        return implementation
    if param.device.type == "cpu":
        return "kernel"
    return "triton" if param.device.type == "cuda" and triton_available() else "torch"


def _check_param(
    group_index: int,
    param_index: int,
    param: torch.Tensor,
    implementation: str,
    label: Any = None,
    capturable: bool = False,
    master: bool = False,
) -> str:
    """Check that ``param`` can be updated; returns its path (:func:`_path`). ``label``: how
    messages name it (default: its :class:`_Where`). ``master``: it is updated through a
    float32 master copy (see :mod:`~amsgrad.adapters.torch_mixed`)."""
    path = _path(implementation, param)
    if label is None:
        label = _Where(group_index, param_index, param)  # formatted only for an error
    if capturable and path != "triton":
        raise ValueError(
            f"{label}: capturable=True needs the Triton kernel (implementation='triton', or "
            f"'auto' with CUDA tensors and Triton installed); this parameter takes the {path!r} "
            "path"
        )
    torch_mixed.check_complex(label, param)
    dtype = torch_mixed.compute_dtype(param, master)
    if path == "triton":
        if master or param.is_complex():
            raise TypeError(
                f"{label}: the Triton path does not take master_weights or complex parameters "
                "yet; use implementation='torch' for them"
            )
        check_triton_param(label, param)
    elif path == "kernel":
        if param.device.type != "cpu":
            raise TypeError(
                f"{label}: implementation='kernel' needs CPU tensors; use implementation='auto' "
                "or 'torch' for tensors on other devices"
            )
        if dtype == torch.bfloat16:
            raise TypeError(
                f"{label}: the bit-exact kernel takes float16, float32 or float64 (MindSpore's "
                "ApplyAdamWithAmsgradV2 has no bfloat16). Pass master_weights=True to keep "
                "float32 master weights (the optimizer keeps a float32 copy of the parameter "
                "and float32 moments, runs the float32 kernel on them and writes the copy "
                "rounded to bfloat16 into the parameter). "
                "implementation='torch' updates bfloat16 tensors with torch operations (each "
                "rounded to bfloat16, not bit-exact to any reference), but only with betas that "
                "stay below 1 in bfloat16: the default beta2=0.999 rounds to 1.0, so v would "
                "never grow and the parameters would diverge (such values are refused)"
            )
        if dtype not in NUMPY_OF:
            raise TypeError(f"{label}: expected dtype {STATE_DTYPES_TEXT}{_COMPLEX_TEXT}")
    elif dtype not in _TORCH_DTYPES:
        raise TypeError(f"{label}: expected dtype bfloat16, {STATE_DTYPES_TEXT}{_COMPLEX_TEXT}")
    return path


# --------------------------------------------------------------------------- the optimizer


class AMSGradV2(torch.optim.Optimizer):
    """MindSpore's ApplyAdamWithAmsgradV2 (AMSGrad with epsilon added to ``sqrt(vhat)``).

    Args:
      params: an iterable of tensors, of ``(name, tensor)`` pairs, or of parameter-group dicts
        (each may set its own ``lr``, ``betas``, ``eps``, ``weight_decay``, ``loss_scale``,
        ``grad_centralization``, ``maximize``, ``implementation``, ``master_weights``; other
        keys are refused). A parameter may be given once (within and across groups).
      lr: learning rate, finite and >= 0 (a number, or a one-element tensor read with
        ``.item()``), or a list of per-step values (MindSpore's ``learning_rate=[...]``).
      betas: ``(beta1, beta2)``, each in [0, 1).
      eps: added to ``sqrt(vhat)`` in the denominator, finite and >= 0. Unlike
        ``torch.optim.Adam``, the bias correction is applied to the learning rate (``lr_t``), so
        eps is not scaled by it.
      weight_decay: MindSpore's coupled decay, ``grad = param * float32(wd * loss_scale) +
        grad`` in the parameter's dtype (on a new tensor), >= 0.
      loss_scale: after the decay, ``grad = grad * float32(1 / loss_scale)``, > 0.
      grad_centralization: MindSpore's group option, between the decay and the loss scale:
        gradients of rank >= 2 whose ``shape[1]`` is a multiple of 16 lose their mean over every
        axis but the first (:func:`~amsgrad.adapters.torch_support.centralized`).
      maximize, foreach, fused, capturable, differentiable: as ``torch.optim.Adam``'s, for the
        values honoured (``maximize`` negates the gradient first; ``foreach``/``fused`` None or
        True; ``capturable`` True on the Triton path only; ``differentiable`` False).
      implementation: ``"auto"`` (kernel on CPU, Triton on CUDA when installed, torch
        operations elsewhere), ``"kernel"``, ``"torch"`` or ``"triton"`` (see the module
        docstring).
      master_weights: when True, float16 and bfloat16 parameters are updated through a float32
        master copy kept in the state (T below is then float32, and the parameter receives the
        copy rounded to its dtype after each step); parameters of other dtypes are unaffected.
        The step reads the master copy, not the parameter: after changing such a parameter
        outside the optimizer, copy it into ``state[p]["master"]`` (docs/frameworks.md).

    Per update and parameter (T is the parameter's dtype, every operation rounded to T)::

        beta1_power = float32(beta1_power * beta1); beta2_power = float32(beta2_power * beta2)
        lr_t = (lr * sqrt(1 - beta2_power)) / (1 - beta1_power)
        m    = m + (grad - m) * (1 - beta1)
        v    = v + (grad * grad - v) * (1 - beta2)
        vhat = v if vhat < v else vhat
        p    = p - (lr_t * m) / (sqrt(vhat) + eps)

    Hyper-parameters are converted as the SPEC converts Python floats (rounded to float32, then
    to T); beta powers are float32 values. Parameters without a gradient are skipped (their
    beta powers do not advance). Sparse gradients raise RuntimeError. Errors are raised before
    anything is written.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        loss_scale: float = 1.0,
        grad_centralization: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        implementation: str = "auto",
        master_weights: bool = False,
    ) -> None:
        lr = _lr_values(lr)
        _check_hyper("", lr, betas, eps, implementation)
        check_decay("", weight_decay, loss_scale)
        defaults = {
            "lr": list(lr) if isinstance(lr, (list, tuple)) else lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "loss_scale": loss_scale,
            "grad_centralization": grad_centralization,
            "maximize": maximize,
            "foreach": foreach,
            "fused": fused,
            "capturable": capturable,
            "differentiable": differentiable,
            "implementation": implementation,
            "master_weights": master_weights,
        }
        check_group_keys("", defaults)
        # What the last full step checked, per group, reused while it holds (torch_fast).
        self._fast_plans: dict[int, torch_fast.GroupPlan | None] = {}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (its settings are checked, and its parameters refused when
        already given, before it is added)."""
        if isinstance(param_group, dict):
            if "lr" in param_group:
                param_group["lr"] = _lr_values(param_group["lr"])
            merged = {**self.defaults, **param_group}
            group_index = len(self.param_groups)
            params = param_group.get("params")
            if isinstance(params, torch.Tensor):
                params = [params]
            elif isinstance(params, Iterable) and not isinstance(params, (set, dict, str)):
                params = param_group["params"] = list(params)  # a generator: read it once
                params = [p[1] if isinstance(p, tuple) else p for p in params]
            else:
                params = []  # torch.optim.Optimizer reports what is wrong with it
            _check_group(group_index, merged, params)
            _check_once(group_index, params, self.param_groups)
            if isinstance(param_group.get("lr"), tuple):
                param_group["lr"] = list(param_group["lr"])
        self._fast_plans = {}
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._fast_plans = {}
        for group in self.param_groups:
            for name, value in _GROUP_DEFAULTS.items():
                group.setdefault(name, value)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, with beta powers kept on the device (``capturable=True``) as
        Python floats (``load_state_dict`` would cast tensors to the parameter's dtype)."""
        state_dict = super().state_dict()
        state_dict["state"] = {key: powers_as_floats(s) for key, s in state_dict["state"].items()}
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, after checking that every parameter's state is AMSGradV2's.

        Each saved group must hold ``lr``, ``betas`` and ``eps`` and pass the constructor's
        checks (known keys, flag values, ranges). Each per-parameter state must hold ``m``,
        ``v``, ``vhat`` (tensors of the parameter's shape), ``step`` (an int >= 0) and
        ``beta1_power``, ``beta2_power`` (numbers in [0, 1]). Otherwise raises ValueError naming
        the group or parameter and what is missing or wrong (a ``torch.optim.Adam`` state dict
        is named as such), and nothing of the optimizer changes.
        A ``torch.optim.Adam(amsgrad=True)`` state dict is converted first (see
        :func:`~amsgrad.adapters.torch_support.from_torch_adam`).
        """
        if isinstance(state_dict, dict):
            state_dict = from_torch_adam(state_dict, self.param_groups)
        saved_groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        states = state_dict.get("state") if isinstance(state_dict, dict) else None
        masters: list[tuple[torch.Tensor, dict[str, Any]]] = []
        if isinstance(saved_groups, list) and len(saved_groups) == len(self.param_groups):
            for group_index, (group, saved) in enumerate(
                zip(self.param_groups, saved_groups, strict=True)
            ):
                if isinstance(saved, dict):  # else torch.optim.Optimizer reports it
                    _check_loaded_group(group_index, saved, group["params"])
        if (
            isinstance(saved_groups, list)
            and isinstance(states, dict)
            and len(saved_groups) == len(self.param_groups)
        ):
            for group_index, (group, saved) in enumerate(
                zip(self.param_groups, saved_groups, strict=True)
            ):
                ids = saved.get("params") if isinstance(saved, dict) else None
                if not isinstance(ids, list) or len(ids) != len(group["params"]):
                    continue  # torch.optim.Optimizer reports it, before changing anything
                master_weights = saved.get("master_weights", False)  # the group as loaded
                for param_index, (param, key) in enumerate(zip(group["params"], ids, strict=True)):
                    if key in states:
                        where = _param_label(group_index, param_index, param)
                        master = torch_mixed.uses_master(param, master_weights)
                        check_state(where, param, states[key], loaded=True, master=master)
                        if master:
                            masters.append((param, states[key]))
        super().load_state_dict(state_dict)
        for param, saved_state in masters:  # cast to the parameter's dtype by torch: undone
            torch_mixed.restore_loaded(self.state[param], saved_state, param)

    @torch.compiler.disable  # runs as it is inside compiled code (see docs/frameworks.md)
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns the closure's loss (or None).

        closure: an optional callable that re-evaluates the model and returns the loss; it runs
        with gradients enabled before the update.

        Everything (every group's parameters, gradients, state and hyper-parameters) is checked
        before the first write: when it raises, no parameter, state or counter has changed.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        # 0. The fast path: a step like the last one, on the checks it recorded (torch_fast).
        if self._fast_plans:
            prepared = torch_fast.prepare(self, self._fast_plans, _fast_hyper_ok)
            if prepared is not None and torch_fast.run(prepared):
                return loss
        self._fast_plans = {}

        # 1. Check every parameter and its state; new states are made aside, stored at the end.
        fresh: dict[torch.Tensor, dict[str, Any]] = {}
        states: dict[torch.Tensor, dict[str, Any]] = {}
        buckets: dict[tuple[Any, ...], list[tuple[_Where, torch.Tensor]]] = {}
        powers: dict[torch.Tensor, tuple[np.float32, np.float32]] = {}
        with np.errstate(under="ignore"):  # beta powers tend to 0 by the rule
            self._check_all(fresh, states, buckets, powers)

        # 2. Each bucket's hyper-parameters in its dtype; with several buckets (one is written
        #    before the kernel checks the next), memory overlap across all kernel buckets.
        for (group_index, _kernel, _device, dtype, _b1, _b2, lr), members in buckets.items():
            _check_group_hyper(self.param_groups[group_index], members[0][0], dtype, lr)
        if len(buckets) > 1:
            check_memory(
                [m for key, members in buckets.items() if key[1] == "kernel" for m in members],
                states,
            )

        # 3. Update, bucket by bucket; then store the new states and count the step.
        for (group_index, path, *_, lr), members in buckets.items():
            group = self.param_groups[group_index]
            params = [param for _, param in members]
            beta1_power, beta2_power = powers[params[0]]
            if path == "kernel":
                self._kernel_update(group, params, states, beta1_power, beta2_power, lr)
            elif path == "triton":
                self._triton_update(group, params, states, powers, lr)
            else:
                self._torch_update(group, params, states, beta1_power, beta2_power, lr)
        for param, state in fresh.items():
            self.state[param] = state
        for param, (beta1_power, beta2_power) in powers.items():
            state = states[param]
            state["step"] += 1
            if isinstance(beta1_power, torch.Tensor):  # capturable: advanced on the device
                state["beta1_power"], state["beta2_power"] = beta1_power, beta2_power
                continue
            state["beta1_power"] = float(beta1_power)
            state["beta2_power"] = float(beta2_power)
        self._fast_plans = torch_fast.record(self, buckets)
        return loss

    def _check_all(
        self,
        fresh: dict[torch.Tensor, dict[str, Any]],
        states: dict[torch.Tensor, dict[str, Any]],
        buckets: dict[tuple[Any, ...], list[tuple[_Where, torch.Tensor]]],
        powers: dict[torch.Tensor, tuple[np.float32, np.float32]],
    ) -> None:
        """Step 1 of :meth:`step`: check every parameter with a gradient, its gradient and its
        state (a new state goes to ``fresh``), compute its beta powers, and bucket it."""
        for group_index, group in enumerate(self.param_groups):
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise ValueError(
                    f"param_groups[{group_index}]: betas: expected a pair (beta1, beta2) of "
                    f"numbers, got {betas!r}"
                )
            beta1, beta2 = (np.float32(_scalar(beta)) for beta in betas)
            master_weights = group["master_weights"]
            for param_index, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None:
                    continue
                where = _Where(group_index, param_index, param)
                if grad.is_sparse or grad.layout != torch.strided:
                    raise RuntimeError(
                        f"{where}: AMSGradV2 does not support sparse gradients, got a gradient "
                        f"of layout {grad.layout}; use dense gradients (e.g. "
                        "nn.Embedding(sparse=False))"
                    )
                master = torch_mixed.uses_master(param, master_weights)
                path = _check_param(
                    group_index,
                    param_index,
                    param,
                    group["implementation"],
                    where,
                    group["capturable"],
                    master,
                )
                kernel = path == "kernel"
                if kernel and (param.is_neg() or param.is_conj()):
                    raise ValueError(
                        f"{where}: the parameter is a negated or conjugated view, which the "
                        "kernel cannot update in place; pass the tensor it views"
                    )
                if master or param.is_complex():
                    torch_mixed.check_grad(where, param, grad, master)
                else:
                    _check_grad(where, param, grad, kernel)
                state = self.state.get(param)
                if state:
                    if not state_ok(param, state, group["capturable"], master):
                        check_state(where, param, state, loaded=False, master=master)
                    if not kernel:  # the kernel checks memory overlap itself
                        check_distinct(where, param, state)
                else:
                    state = fresh[param] = new_state(param, master)
                states[param] = state
                if group["capturable"]:  # the device's tensors, advanced by _triton_update
                    powers[param] = device_powers(state, param.device)
                    key: tuple[Any, ...] = (group_index, path, param.device, param.dtype, None)
                    key += (None, lr_at(group["lr"], state["step"], where))
                    buckets.setdefault(key, []).append((where, param))
                    continue
                beta1_power = _float32(state["beta1_power"]) * beta1
                beta2_power = _float32(state["beta2_power"]) * beta2
                powers[param] = (beta1_power, beta2_power)
                key = (
                    group_index,
                    path,
                    param.device,
                    torch_mixed.compute_dtype(param, master),
                    float(beta1_power),
                    float(beta2_power),
                    lr_at(group["lr"], state["step"], where),
                )
                buckets.setdefault(key, []).append((where, param))

    # ----------------------------------------------------------------------- implementations

    def _kernel_update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        states: dict[torch.Tensor, dict[str, Any]],
        beta1_power: np.float32,
        beta2_power: np.float32,
        lr: Any,
    ) -> None:
        """The bit-exact multi-tensor kernel on the tensors' own memory (CPU, zero-copy)."""
        beta1, beta2 = group["betas"]
        lists = _kernel_lists(group, params, states)
        apply_adam_with_amsgrad_v2_many(
            lists[0],
            lists[1],
            lists[2],
            lists[3],
            # Python floats of the same float32 values: the same bits, and the kernel's fast path
            float(beta1_power),
            float(beta2_power),
            _scalar(lr),
            _scalar(beta1),
            _scalar(beta2),
            _scalar(group["eps"]),
            lists[4],
        )
        torch_mixed.write_back(params, states)
        # The memory was written behind autograd's back: tell it, as an in-place op would (a
        # detached view shares its base's version counter).
        torch.autograd.graph.increment_version([local(param).detach() for param in params])

    def _triton_update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        states: dict[torch.Tensor, dict[str, Any]],
        powers: dict[torch.Tensor, tuple[Any, Any]],
        lr: Any,
    ) -> None:
        """The fused Triton kernel on CUDA tensors (CPU tensors under ``TRITON_INTERPRET=1``);
        capturable: lr and the beta powers stay on the device."""
        triton_update(group, params, states, powers, lr, _scalar)

    def _torch_update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        states: dict[torch.Tensor, dict[str, Any]],
        beta1_power: np.float32,
        beta2_power: np.float32,
        lr: Any,
    ) -> None:
        """The same formula with torch operations, each rounded to the parameter's dtype (the
        dtype of the update: see :mod:`~amsgrad.adapters.torch_mixed`)."""
        rows = [torch_mixed.operands(param, states[param], group) for param in params]
        dtype, device = rows[0][0].dtype, rows[0][0].device
        beta1, beta2 = group["betas"]
        scalars = torch_scalars(
            dtype,
            beta1_power,
            beta2_power,
            _scalar(lr),
            _scalar(beta1),
            _scalar(beta2),
            _scalar(group["eps"]),
        )
        lr_t, one_minus_beta1, one_minus_beta2, eps = (s.to(device) for s in scalars)
        for var, m, v, vhat, grad in rows:
            if grad.dtype != dtype:
                grad = grad.to(dtype)
            torch_update(var, m, v, vhat, grad, lr_t, one_minus_beta1, one_minus_beta2, eps)
        torch_mixed.write_back(params, states)

    # ----------------------------------------------------------------------- MindSpore files

    def load_mindspore(
        self,
        checkpoint: str | os.PathLike[str] | Mapping[str, Any],
        model: torch.nn.Module,
        name_map: NameMap = None,
        *,
        lr_mismatch: str = "warn",
    ) -> None:
        """Load the parameters and the state of ``mindspore.save_checkpoint(optimizer)`` of an
        ``nn.Adam(use_amsgrad=True)``, so that the next ``step()`` is MindSpore's next step.

        checkpoint: a ``.ckpt``/``.safetensors`` path, or the dict
          :func:`amsgrad.mindspore.load_checkpoint` returns.
        model: the module whose ``named_parameters()`` name this optimizer's parameters.
        name_map: MindSpore's name of each torch name where they differ: a dict (names it
          lacks are kept) or a callable.
        lr_mismatch: when the checkpoint's ``learning_rate`` differs (in float32) from a
          group's lr: ``"warn"`` (default), ``"raise"`` or ``"ignore"``; the optimizer keeps
          its own lr either way. Under ``"warn"`` and ``"raise"`` a ``learning_rate`` entry
          that is not float32 of shape ``()`` or ``(steps,)`` with finite values >= 0 raises
          ValueError naming it; ``"ignore"`` does not read it.

        Each parameter receives ``<name>``, its ``m``, ``v``, ``vhat`` the entries
        ``moment1.<name>``, ``moment2.<name>``, ``vhat.<name>``, its ``step`` ``global_step``
        (which also positions a per-step lr list) and its beta powers the checkpoint's float32
        ``beta1_power``, ``beta2_power``. Entries must have the parameter's shape and dtype.
        Everything is checked first: a missing or wrong entry raises ValueError naming it, and
        nothing has changed. Model parameters that this optimizer does not hold are not read.
        """
        load_mindspore_state(self, checkpoint, model, name_map, lr_mismatch)
        self._fast_plans = {}  # new state and parameters: the next step checks everything

    def save_mindspore(
        self,
        path: str | os.PathLike[str],
        model: torch.nn.Module,
        name_map: NameMap = None,
        *,
        format: str | None = None,
    ) -> None:
        """Write the parameters and state as ``mindspore.save_checkpoint(optimizer)`` of an
        ``nn.Adam(use_amsgrad=True)`` would (the names and order of :meth:`load_mindspore`),
        so that MindSpore's ``load_param_into_net`` on its network and optimizer continues
        from here. format: ``"ckpt"`` or ``"safetensors"`` (default: the extension's).

        MindSpore keeps one ``global_step`` and one pair of beta powers for all parameters:
        raises ValueError when this optimizer's parameters differ in step or beta powers
        (parameters without a gradient at some step). ``learning_rate`` is written when every
        group has the same lr (a number or a per-step list); otherwise it is left out with a
        UserWarning. The file is written atomically.
        """
        save_mindspore_state(self, path, model, name_map, format)


# --------------------------------------------------------------------------- state and checks


class _Where:
    """A parameter as messages name it (:func:`_param_label`), formatted only when an error
    is raised: building the text for every parameter of every step would cost more than the
    checks."""

    __slots__ = ("group_index", "param", "param_index")

    def __init__(self, group_index: int, param_index: int, param: torch.Tensor) -> None:
        self.group_index, self.param_index, self.param = group_index, param_index, param

    def __str__(self) -> str:
        return _param_label(self.group_index, self.param_index, self.param)


def _check_loaded_group(group_index: int, saved: dict[str, Any], params: list[Any]) -> None:
    """A group of a state dict being loaded: the keys it must hold, then :func:`_check_group`
    on it as ``__setstate__`` will complete it."""
    missing = [key for key in _LOADED_KEYS if key not in saved]
    if missing:
        raise ValueError(
            f"param_groups[{group_index}]: missing parameter-group key"
            f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; a saved group "
            f"holds {', '.join(map(repr, _LOADED_KEYS))} (as AMSGradV2.state_dict() writes it)"
        )
    _check_group(group_index, {**_GROUP_DEFAULTS, **saved}, params)


def _check_grad(where: Any, param: torch.Tensor, grad: torch.Tensor, kernel: bool) -> None:
    """A gradient of the parameter's shape (and, on the kernel path, of a dtype the operator
    converts to the parameter's: the contract's message)."""
    if grad.shape == param.shape and grad.dtype == param.dtype:
        return
    if tuple(grad.shape) != tuple(param.shape):
        raise ValueError(
            f"{where}: the gradient has shape {tuple(grad.shape)}, expected the parameter's "
            f"shape {tuple(param.shape)}"
        )
    if kernel:
        source = NUMPY_OF.get(grad.dtype)
        if source is None:
            raise TypeError(
                f"{where}: the gradient has dtype {grad.dtype}, expected {STATE_DTYPES_TEXT}"
            )
        try:
            check_grad_meta(
                source, tuple(grad.shape), NUMPY_OF[param.dtype], tuple(grad.shape), "gradient"
            )
        except TypeError as error:
            raise type(error)(f"{where}: {error}") from None


def _check_group_hyper(group: dict[str, Any], where: Any, dtype: torch.dtype, lr: Any) -> None:
    """The group's hyper-parameters, converted as the update converts them: values of a type
    the operator refuses, and values that round to a degenerate update in ``dtype``."""
    beta1, beta2 = group["betas"]  # a pair: _check_all
    check_decay(f"{where}: ", group["weight_decay"], group["loss_scale"])  # edited since?
    if group["capturable"] and isinstance(lr, torch.Tensor):
        check_device_lr(where, lr, where.param.device)  # read by the kernel, not here
        lr = 0.0
    given = (lr, beta1, beta2, group["eps"])
    if all(type(value) in (float, int) for value in given):
        try:  # plain numbers: once per set of values (a tensor lr may change in place)
            _hyper_ok(*given, dtype)
            return
        except (TypeError, ValueError):
            pass  # raised again below, with the parameter's name
    lr, beta1, beta2, eps = (_scalar(value) for value in given)
    _check_hyper_values(f"{where}: ", lr, beta1, beta2, eps, dtype)


def _fast_hyper_ok(group: dict[str, Any], dtype: torch.dtype, lr: Any) -> bool:
    """For the fast step: the group's hyper-parameters are Python floats that give a valid
    update in ``dtype`` (anything else takes the full path, which names the problem)."""
    betas = group["betas"]
    if type(betas) is not tuple or len(betas) != 2:
        return False
    beta1, beta2 = betas
    given = (lr, beta1, beta2, group["eps"])
    if not all(type(value) is float for value in given):
        return False
    try:
        return _hyper_ok(*given, dtype)
    except (TypeError, ValueError):
        return False


@functools.lru_cache(maxsize=256)
def _hyper_ok(lr: float, beta1: float, beta2: float, eps: float, dtype: torch.dtype) -> bool:
    _check_hyper_values("", lr, beta1, beta2, eps, dtype)
    return True


def _check_hyper_values(
    where: str, lr: Any, beta1: Any, beta2: Any, eps: Any, dtype: torch.dtype
) -> None:
    """The checks of each step (the group may have been edited since it was built): the
    ranges of the constructor, the operator's scalar rules, and the values that ``dtype``
    turns into a degenerate update."""
    for name, value in zip(_NAMES, (lr, beta1, beta2, eps), strict=True):
        try:
            to_dtype(name, value, dtype)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}{error}") from None
    check_optimizer_hyper(
        lr, beta1, beta2, eps, names=_NAMES, where=where, read=as_tensor_number, finite=True
    )

    def rounded(name: str, value: Any) -> float:
        return float(to_dtype(name, value, dtype).to(torch.float64).item())

    check_hyper_in_dtype(
        beta1,
        beta2,
        eps,
        str(dtype).removeprefix("torch."),
        names=_NAMES,
        where=where,
        rounded=rounded,
        lr=lr,
        advice=(
            "pass master_weights=True (the optimizer then updates a float32 copy of each "
            "parameter with float32 moments and copies it back)"
        ),
    )


def _kernel_lists(
    group: dict[str, Any], params: list[torch.Tensor], states: dict[torch.Tensor, dict[str, Any]]
) -> list[list[np.ndarray]]:
    """The five lists of the multi-tensor kernel for ``params``: parameters (or their master
    copies, or real views), m, v, vhat as views of the tensors' memory; gradients too (a
    negated view is resolved: grads are read)."""
    rows = [torch_mixed.operands(param, states[param], group) for param in params]
    return [[tensor.numpy() for tensor in column] for column in zip(*rows, strict=True)]


# --------------------------------------------------------------------------- helpers


def _float32(value: Any) -> np.float32:
    """A stored beta power (a float holding a float32 value, or a tensor) as np.float32."""
    if isinstance(value, torch.Tensor):
        value = value.detach().reshape(()).to("cpu", torch.float64).item()
    return np.float32(value)


def _scalar(value: Any) -> Any:
    """A hyper-parameter for the kernel: numbers pass through; a tensor is read with .item()."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().reshape(()).item())
    return value
