"""The torch optimizer's fast step: what a full step checked, recorded and reused.

:meth:`amsgrad.torch.AMSGradV2.step` checks every parameter, gradient and state before it
writes anything, and hands the kernel NumPy views of the tensors: several microseconds per
parameter. Most steps look like the one before: the same parameters on the same memory, the
same state tensors, new gradients of the same kind. After a full step that ran every group with
gradients on the kernel in one bucket per group, :func:`record` keeps a :class:`GroupPlan` per
group: the tensors (held, so their memory stays alive), their addresses and sizes, the dtype,
the step count and beta powers all of them share. The next step calls :func:`prepare`, which
re-checks only what can have changed since, at a few hundred nanoseconds per parameter:

* the group's parameter list (the same tensors, in order) and its other settings (decay, loss
  scale, maximize, centralization, master weights, implementation, capturable, foreach, fused,
  differentiable); lr, betas and eps are read anew (schedulers change them);
* each parameter as it was: address, shape, dtype, C-contiguous, not a negated view
  (``param.data = param.data.t()`` keeps the address and is seen);
* each gradient: present exactly where it was, on the CPU, of the parameter's shape and dtype,
  C-contiguous, not a negated view;
* the optimizer's state: the same state object, each parameter's state dict the same object
  with as many entries (an added ``'master'`` goes to the full path, which refuses it),
  holding the very step count and beta power objects that the last step stored (a ``2.0`` or a
  NumPy float in their place goes to the full path, which refuses it) and the same m, v, vhat
  tensors on the same memory (address, element count, dtype), C-contiguous. (A transposed view
  of a square moment, ``m.data = m.data.t()``, keeps address and shape; the full path pairs its
  elements with the parameter's logically, the kernel would pair them by address.) Not looked
  at, for their cost (about 0.6 us per parameter): a moment's shape (a contiguous view in
  another shape, ``v.data = v.data.view(3, 2)``, is updated element by element as before; the
  full path refuses it) and its negation bit (set only by torch's private ``_neg_view``).

The group settings are compared by identity (``weight_decay = False`` equals the recorded 0.0,
and the full path refuses it).

Anything else (a new parameter, a missing gradient, a strided one, a load_state_dict, a changed
setting) returns None and the step runs the full path, which raises the precise error or
handles the general case, and records new plans. :func:`run` makes one native call over every
group (:func:`amsgrad.core.kernel.apply_addresses`, which also refuses memory shared between
any two tensors, or an address that is not one of the dtype's items, before writing; the step
then runs the full path), then advances the states as the full path does.
"""

from __future__ import annotations

import operator
from itertools import chain, repeat
from typing import Any

import numpy as np
import torch

from amsgrad.adapters.torch_support import MASTER, NUMPY_OF, mindspore_grad
from amsgrad.core.contract import fast_hyper
from amsgrad.core.kernel import apply_addresses

__all__ = ["GroupPlan", "prepare", "record", "run"]

_GRAD = operator.attrgetter("grad")
_IS_CPU = operator.attrgetter("is_cpu")
_DTYPE = operator.attrgetter("dtype")
_DATA_PTR = torch.Tensor.data_ptr
_NUMEL = torch.Tensor.numel
_SHAPE = operator.attrgetter("shape")
_IS_CONTIGUOUS = torch.Tensor.is_contiguous
_IS_NEG = torch.Tensor.is_neg
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_MOMENTS = operator.itemgetter("m", "v", "vhat")
_STEP = operator.itemgetter("step")
_BETA1_POWER = operator.itemgetter("beta1_power")
_BETA2_POWER = operator.itemgetter("beta2_power")


def _settings(group: dict[str, Any]) -> tuple[Any, ...]:
    """The group entries a plan was made under, other than lr, betas and eps."""
    return (
        group.get("implementation"),
        group.get("weight_decay"),
        group.get("loss_scale"),
        group.get("maximize"),
        group.get("grad_centralization"),
        group.get("master_weights"),
        group.get("capturable"),
        group.get("differentiable"),
        group.get("foreach"),
        group.get("fused"),
    )


class GroupPlan:
    """One parameter group's kernel update as the last full step checked it."""

    __slots__ = (
        "addresses",
        "aliases",
        "all_params",
        "beta1_power",
        "beta2_power",
        "dtype",
        "dtypes",
        "entries",
        "flat",
        "flat_addresses",
        "flat_sizes",
        "held",
        "moments",
        "np_dtype",
        "param_addresses",
        "params",
        "settings",
        "shapes",
        "sizes",
        "skipped",
        "state_map",
        "states",
        "step",
        "transform",
    )

    def __init__(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        states: list[dict[str, Any]],
        state_map: Any,
    ) -> None:
        self.all_params = list(group["params"])
        chosen = {id(param) for param in params}
        self.params = params
        self.skipped = [param for param in self.all_params if id(param) not in chosen]
        self.settings = _settings(group)
        self.transform = (
            bool(group.get("maximize"))
            or bool(group.get("grad_centralization"))
            or float(group.get("weight_decay", 0.0)) > 0
            or float(group.get("loss_scale", 1.0)) != 1
        )
        self.state_map = state_map
        self.states = states
        self.moments = [_MOMENTS(state) for state in states]
        self.flat = list(chain.from_iterable(self.moments))
        self.flat_addresses = list(map(_DATA_PTR, self.flat))
        # Detached views keep the memory written alive whatever happens to the tensors (a
        # `.data` assignment frees the old storage otherwise); the addresses checks see it.
        self.aliases = [param.detach() for param in params]
        self.held = [tensor.detach() for tensor in self.flat]
        self.dtype = params[0].dtype
        self.dtypes = {self.dtype}
        self.np_dtype = np.dtype(NUMPY_OF[self.dtype])
        first = states[0]
        self.step = first["step"]
        self.beta1_power = first["beta1_power"]
        self.beta2_power = first["beta2_power"]
        # One object per counter, shared by every state of the group: prepare() checks them
        # by identity (a step of 2.0 or a NumPy beta power equals the recorded value, but the
        # full path refuses it).
        for state in states:
            state["step"] = self.step
            state["beta1_power"] = self.beta1_power
            state["beta2_power"] = self.beta2_power
        self.param_addresses = list(map(_DATA_PTR, params))
        self.sizes = np.fromiter(map(_NUMEL, params), dtype=np.int64, count=len(params))
        self.shapes = list(map(_SHAPE, params))
        self.flat_sizes = [size for size in map(_NUMEL, params) for _ in range(3)]
        self.entries = list(map(len, states))
        table = np.empty((len(params), 5), dtype=np.int64)
        table[:, 0] = self.param_addresses
        for role in range(3):
            table[:, role + 1] = [_DATA_PTR(moments[role]) for moments in self.moments]
        self.addresses = table


def record(
    optimizer: Any, buckets: dict[tuple[Any, ...], list[tuple[Any, torch.Tensor]]]
) -> dict[int, GroupPlan | None]:
    """Plans for the groups of a full step that just ran (``buckets``: its buckets, keyed by
    ``(group index, path, device, dtype, beta1_power, beta2_power, lr)``). A group gets a
    plan when its parameters with gradients formed one kernel bucket of plain, C-contiguous
    CPU tensors with C-contiguous state; a group without gradients gets None (nothing to do
    while that lasts). Returns {} when some group cannot be planned, among them a group with a
    parameter updated in another dtype than its own (a float32 master copy, or a complex
    parameter's real pairs: :mod:`~amsgrad.adapters.torch_mixed`)."""
    plans: dict[int, GroupPlan | None] = {}
    by_group: dict[int, list[torch.Tensor]] = {}
    for key, members in buckets.items():
        group_index, path = key[0], key[1]
        if path != "kernel" or group_index in by_group:
            return {}
        by_group[group_index] = [param for _, param in members]
    for group_index, group in enumerate(optimizer.param_groups):
        params = by_group.get(group_index)
        if params is None:
            if any(param.grad is not None for param in group["params"]):
                return {}
            plans[group_index] = None
            continue
        states = [optimizer.state[param] for param in params]
        counters = {
            (type(s["step"]), type(s["beta1_power"]), type(s["beta2_power"])) for s in states
        }
        values = {(s["step"], s["beta1_power"], s["beta2_power"]) for s in states}
        if counters != {(int, float, float)} or len(values) != 1:
            return {}
        for param, state in zip(params, states, strict=True):
            if type(param) not in _PLAIN or not param.is_contiguous():
                return {}
            if param.dtype not in NUMPY_OF or MASTER in state:
                return {}
            if not all(type(t) in _PLAIN and t.is_contiguous() for t in _MOMENTS(state)):
                return {}
            if any(t.data_ptr() % t.element_size() for t in (param, *_MOMENTS(state))):
                return {}  # on a misaligned buffer: the kernel takes items, the full path copies
        plans[group_index] = GroupPlan(group, params, states, optimizer.state)
    return plans


class _Prepared:
    """What :func:`run` needs of one group's step."""

    __slots__ = ("beta1_power", "beta2_power", "grads", "hyper", "plan")

    def __init__(
        self,
        plan: GroupPlan,
        grads: list[torch.Tensor],
        hyper: np.ndarray,
        beta1_power: float,
        beta2_power: float,
    ) -> None:
        self.plan, self.grads, self.hyper = plan, grads, hyper
        self.beta1_power, self.beta2_power = beta1_power, beta2_power


def prepare(
    optimizer: Any, plans: dict[int, GroupPlan | None], hyper_ok: Any
) -> list[_Prepared] | None:
    """Each group's step from its plan, or None when any group needs the full path.
    ``hyper_ok(group, dtype, lr)``: True when the group's hyper-parameters may run as they are
    (plain numbers that round to a valid update in ``dtype``)."""
    groups = optimizer.param_groups
    if len(plans) != len(groups):
        return None
    prepared = []
    dtype = None
    for group_index, group in enumerate(groups):
        plan = plans[group_index]
        if plan is None:
            if any(map(operator.is_not, map(_GRAD, group["params"]), repeat(None))):
                return None
            continue
        step = _prepare_group(optimizer, plan, group, hyper_ok)
        if step is None or (dtype is not None and plan.dtype is not dtype):
            return None
        dtype = plan.dtype
        prepared.append(step)
    return prepared


def _prepare_group(
    optimizer: Any, plan: GroupPlan, group: dict[str, Any], hyper_ok: Any
) -> _Prepared | None:
    params = plan.params
    members = group["params"]
    if (
        len(members) != len(plan.all_params)
        or not all(map(operator.is_, members, plan.all_params))
        or not all(map(operator.is_, _settings(group), plan.settings))
        or optimizer.state is not plan.state_map
    ):
        return None
    if plan.skipped and any(map(operator.is_not, map(_GRAD, plan.skipped), repeat(None))):
        return None
    grads = list(map(_GRAD, params))
    try:
        if (
            # The parameters: where they were, as they were (`param.data = ...` may keep
            # the address and change the view: a transpose, another dtype, another shape).
            list(map(_DATA_PTR, params)) != plan.param_addresses
            or list(map(_SHAPE, params)) != plan.shapes
            or set(map(_DTYPE, params)) != plan.dtypes
            or not all(map(_IS_CONTIGUOUS, params))
            or any(map(_IS_NEG, params))
            # The gradients: present, of the parameters' shape and dtype, on the CPU.
            or any(map(operator.is_, grads, repeat(None)))
            or not all(map(_IS_CPU, grads))
            or list(map(_SHAPE, grads)) != plan.shapes
            or set(map(_DTYPE, grads)) != plan.dtypes
            or not all(map(_IS_CONTIGUOUS, grads))
            or any(map(_IS_NEG, grads))
        ):
            return None
    except RuntimeError:  # a sparse or other layout without these properties
        return None
    states = list(map(optimizer.state.get, params))
    flat = plan.flat
    try:
        if (
            not all(map(operator.is_, states, plan.states))
            or list(map(len, states)) != plan.entries
            or not all(map(operator.is_, map(_STEP, states), repeat(plan.step)))
            or not all(map(operator.is_, map(_BETA1_POWER, states), repeat(plan.beta1_power)))
            or not all(map(operator.is_, map(_BETA2_POWER, states), repeat(plan.beta2_power)))
            or not all(map(operator.is_, chain.from_iterable(map(_MOMENTS, states)), flat))
            # The state tensors on the memory they had (resize_ or `.data = ...` keep the
            # object): the same address, element count and dtype, and contiguous (a transposed
            # square moment keeps address and shape; the full path pairs it logically).
            or list(map(_DATA_PTR, flat)) != plan.flat_addresses
            or list(map(_NUMEL, flat)) != plan.flat_sizes
            or set(map(_DTYPE, flat)) != plan.dtypes
            or not all(map(_IS_CONTIGUOUS, flat))
        ):
            return None
    except (KeyError, TypeError, RuntimeError):  # an entry deleted; a layout without strides
        return None
    if plan.transform:
        grads = [mindspore_grad(p, g, group) for p, g in zip(params, grads, strict=True)]
        if not all(map(_IS_CONTIGUOUS, grads)) or any(map(_IS_NEG, grads)):
            return None
    betas = group["betas"]
    if type(betas) is not tuple or len(betas) != 2:
        return None
    beta1, beta2 = betas
    lr = group["lr"]
    if isinstance(lr, list):
        if plan.step >= len(lr):
            return None  # the full path says the list is too short
        lr = lr[plan.step]
    if not hyper_ok(group, plan.dtype, lr):
        return None
    with np.errstate(under="ignore"):  # beta powers tend to 0 by the rule (as the full path)
        beta1_power = float(np.float32(plan.beta1_power) * np.float32(beta1))
        beta2_power = float(np.float32(plan.beta2_power) * np.float32(beta2))
    hyper = fast_hyper((beta1_power, beta2_power, lr, beta1, beta2, group["eps"]), plan.np_dtype)
    if hyper is None:
        return None
    return _Prepared(plan, grads, hyper, beta1_power, beta2_power)


def run(prepared: list[_Prepared]) -> bool:
    """The prepared groups' update in one native call, then their states advanced. False when
    nothing was written (memory shared between two tensors, or the NumPy backend): the caller
    then runs the full path."""
    if not prepared:
        return True
    try:
        if len(prepared) == 1:
            only = prepared[0]
            addresses = only.plan.addresses
            addresses[:, 4] = list(map(_DATA_PTR, only.grads))
            found = apply_addresses(addresses.reshape(-1), only.plan.sizes, only.hyper)
        else:
            addresses = np.concatenate([item.plan.addresses for item in prepared])
            addresses[:, 4] = [_DATA_PTR(grad) for item in prepared for grad in item.grads]
            sizes = np.concatenate([item.plan.sizes for item in prepared])
            sets = np.repeat(
                np.arange(len(prepared), dtype=np.int64), [len(item.grads) for item in prepared]
            )
            hyper = np.ascontiguousarray(np.concatenate([item.hyper for item in prepared], axis=1))
            found = apply_addresses(addresses.reshape(-1), sizes, hyper, sets)
    except ValueError:  # an address that is not one of the dtype's items (misaligned, null)
        return False  # checked before anything is written: the full path handles it
    if found is not None:
        return False
    for item in prepared:
        plan = item.plan
        # Written behind autograd's back: bump the version counters as an in-place op would.
        torch.autograd.graph.increment_version(plan.aliases)
        step, beta1_power, beta2_power = plan.step + 1, item.beta1_power, item.beta2_power
        plan.step, plan.beta1_power, plan.beta2_power = step, beta1_power, beta2_power
        for state in plan.states:
            state["step"] = step
            state["beta1_power"] = beta1_power
            state["beta2_power"] = beta2_power
    return True
