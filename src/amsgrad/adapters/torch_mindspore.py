"""``AMSGradV2.load_mindspore`` and ``save_mindspore``: its state from and to MindSpore
checkpoints of ``nn.Adam(use_amsgrad=True)`` (the names, checks and counters are
:mod:`amsgrad.adapters.mindspore_state`'s).

The optimizer's parameters are named by ``model.named_parameters()`` (through ``name_map``
where MindSpore's names differ); the model's parameters that the optimizer does not hold are
neither read nor written. Per parameter, AMSGradV2's state ``m``, ``v``, ``vhat``, ``step``,
``beta1_power``, ``beta2_power`` is MindSpore's ``moment1.<name>``, ``moment2.<name>``,
``vhat.<name>``, ``global_step``, ``beta1_power``, ``beta2_power``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from amsgrad.adapters.mindspore_state import (
    LR_POLICIES,
    NameMap,
    OptimizerState,
    Slot,
    check_learning_rates,
    checked_beta_power,
    checked_global_step,
    common_counters,
    learning_rate_entry,
    map_names,
    read_state,
    write_state,
)
from amsgrad.adapters.torch_support import NUMPY_OF, as_tensor_number
from amsgrad.core.dtypes import STATE_DTYPES_TEXT

__all__ = ["load_mindspore_state", "save_mindspore_state"]


def _slots(
    optimizer: torch.optim.Optimizer, model: Any, name_map: NameMap
) -> list[tuple[torch.Tensor, Slot]]:
    """Each parameter of the optimizer (groups in order) with its slot in the checkpoint."""
    named = getattr(model, "named_parameters", None)
    if not callable(named):
        raise TypeError(
            "model: expected a torch.nn.Module (its named_parameters() name the optimizer's "
            f"parameters), got {type(model).__name__}"
        )
    names = {id(param): name for name, param in named()}
    held: dict[int, torch.Tensor] = {}
    for group_index, group in enumerate(optimizer.param_groups):
        for param_index, param in enumerate(group["params"]):
            where = (
                f"param_groups[{group_index}]['params'][{param_index}] (shape "
                f"{tuple(param.shape)}, dtype {param.dtype})"
            )
            if id(param) not in names:
                raise ValueError(
                    f"model: the optimizer's parameter {where} is not among "
                    "model.named_parameters(), so it has no name in the checkpoint; pass the "
                    "model that owns the optimizer's parameters"
                )
            if param.dtype not in NUMPY_OF:
                raise TypeError(
                    f"{names[id(param)]!r}: {where}: a MindSpore optimizer checkpoint holds "
                    f"parameters of dtype {STATE_DTYPES_TEXT}"
                )
            if group.get("master_weights") and param.dtype == torch.float16:
                raise TypeError(
                    f"{names[id(param)]!r}: {where}: its group has master_weights=True, and a "
                    "MindSpore optimizer checkpoint has no place for a float32 master copy "
                    "(MindSpore's nn.Adam refuses float16 parameters); use master_weights=False "
                    "for the parameters moved to or from MindSpore"
                )
            held[id(param)] = param
    # The model's order (MindSpore writes its network's order, which a model defined the same
    # way shares); parameters shared under two names take the first.
    params = [held[key] for key in names if key in held]
    labels = [names[id(param)] for param in params]
    mapped = map_names(labels, name_map)
    return [
        (param, Slot(label, name, tuple(param.shape), NUMPY_OF[param.dtype]))
        for param, label, name in zip(params, labels, mapped, strict=True)
    ]


def _group_lrs(optimizer: torch.optim.Optimizer) -> list[tuple[str, Any]]:
    out = []
    for index, group in enumerate(optimizer.param_groups):
        if not group["params"]:
            continue
        lr = group["lr"]
        if not isinstance(lr, (list, tuple)):
            lr = as_tensor_number(lr)
        out.append((f"param_groups[{index}]", lr))
    return out


def _like(param: torch.Tensor, array: np.ndarray) -> torch.Tensor:
    """A new tensor like ``param`` (dtype, device, memory format) holding ``array``."""
    tensor = torch.empty_like(param, memory_format=torch.preserve_format)
    return tensor.copy_(torch.from_numpy(array))


def load_mindspore_state(
    optimizer: torch.optim.Optimizer,
    checkpoint: Any,
    model: Any,
    name_map: NameMap = None,
    lr_mismatch: str = "warn",
) -> None:
    """See :meth:`amsgrad.torch.AMSGradV2.load_mindspore`."""
    if lr_mismatch not in LR_POLICIES:
        raise ValueError(
            f"lr_mismatch: expected one of {', '.join(map(repr, LR_POLICIES))}, got {lr_mismatch!r}"
        )
    slots = _slots(optimizer, model, name_map)
    state = read_state(checkpoint, [slot for _, slot in slots])
    check_learning_rates(state.learning_rates, _group_lrs(optimizer), lr_mismatch)
    # Everything is checked: from here on only writes.
    with torch.no_grad():
        for index, (param, _) in enumerate(slots):
            param.copy_(torch.from_numpy(state.params[index]))
            optimizer.state[param] = {
                "step": state.global_step,
                "beta1_power": float(state.beta1_power),
                "beta2_power": float(state.beta2_power),
                "m": _like(param, state.moment1[index]),
                "v": _like(param, state.moment2[index]),
                "vhat": _like(param, state.vhat[index]),
            }


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu").numpy().copy()


def save_mindspore_state(
    optimizer: torch.optim.Optimizer,
    path: str | os.PathLike[str],
    model: Any,
    name_map: NameMap = None,
    format: str | None = None,
) -> None:
    """See :meth:`amsgrad.torch.AMSGradV2.save_mindspore`."""
    slots = _slots(optimizer, model, name_map)
    rows = []
    moments: dict[str, list[np.ndarray]] = {"m": [], "v": [], "vhat": []}
    for param, slot in slots:
        state = optimizer.state.get(param) or {}
        step = state.get("step", 0)
        if isinstance(step, torch.Tensor):
            step = int(step.item())
        powers = [as_tensor_number(state.get(name, 1.0)) for name in ("beta1_power", "beta2_power")]
        if powers[0] is None or powers[1] is None or not isinstance(step, int):
            raise ValueError(f"{slot.label!r}: its optimizer state is not AMSGradV2's")
        # MindSpore's int32 global_step and float32 beta powers: refused here, by name.
        step = checked_global_step(step, f"{slot.label!r}: its state 'step'")
        for index, name in enumerate(("beta1_power", "beta2_power")):
            checked_beta_power(powers[index], name, f"{slot.label!r}: its state {name!r}")
        rows.append((slot.label, step, powers[0], powers[1]))
        for key in moments:
            tensor = state.get(key)
            if tensor is None:
                moments[key].append(np.zeros(slot.shape, slot.dtype))
            elif tuple(tensor.shape) != slot.shape or tensor.dtype != param.dtype:
                raise ValueError(
                    f"{slot.label!r}: its state {key!r} is {tensor.dtype} "
                    f"{tuple(tensor.shape)}, expected the parameter's {param.dtype} {slot.shape}"
                )
            else:
                moments[key].append(_numpy(tensor))
    global_step, beta1_power, beta2_power = common_counters(rows)
    groups = _group_lrs(optimizer)
    lr = learning_rate_entry([lr for _, lr in groups], [f"{label}['lr']" for label, _ in groups])
    if lr is None:
        warnings.warn(
            "the optimizer's groups have different learning rates: the checkpoint holds no "
            "'learning_rate' (MindSpore, loading it, keeps its own)",
            UserWarning,
            stacklevel=3,
        )
    state = OptimizerState(
        global_step=global_step,
        beta1_power=beta1_power,
        beta2_power=beta2_power,
        params=[_numpy(param) for param, _ in slots],
        moment1=moments["m"],
        moment2=moments["v"],
        vhat=moments["vhat"],
        learning_rates={} if lr is None else {"learning_rate": lr},
    )
    write_state(path, [slot for _, slot in slots], state, format=format)
