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
* ``"auto"`` (default): ``"kernel"`` for CPU tensors, ``"torch"`` for tensors on other devices.

bfloat16 parameters on the kernel path raise TypeError (the operator has no bfloat16): keep
float32 master weights. ``implementation="torch"`` updates bfloat16 tensors, but only with betas
that stay below 1 in bfloat16 (the default beta2=0.999 rounds to 1.0 there).

Hyper-parameters that round to a degenerate value in a parameter's dtype (a beta below 1 that
becomes 1, so that ``1 - beta`` is 0 and the parameters diverge; an eps above 0 that becomes 0,
so that a zero gradient gives NaN, as 1e-8 in float16) are refused at ``step()`` with a
ValueError, before anything is written. ``step()`` checks every parameter, gradient and state of
every group before it writes anything; ``load_state_dict`` checks the state it is given (a
``torch.optim.Adam`` state dict is refused with a clear message).

Sharded training: ``torch.distributed.optim.ZeroRedundancyOptimizer(params,
optimizer_class=AMSGradV2, ...)`` works (each rank keeps the state of its own parameters), and so
does FSDP2 (``fully_shard``): DTensor parameters are updated through their local shards
(``to_local()``), which is the whole update since it is elementwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from amsgrad.core.contract import (
    HYPER_NAMES,
    Hyper,
    check_grad_meta,
    find_overlap,
    overlap_error,
    scalar_to_dtype,
)
from amsgrad.core.dtypes import F32, STATE_DTYPES, STATE_DTYPES_TEXT
from amsgrad.core.functional import apply_adam_with_amsgrad_v2_many
from amsgrad.core.optimizers import as_number, check_hyper_in_dtype, check_optimizer_hyper
from amsgrad.core.overlap import OverlapUndecidedError, may_overlap_itself, undecided_error

__all__ = ["AMSGradV2"]

_IMPLEMENTATIONS = ("auto", "kernel", "torch")
#: The kernel's dtypes (the core's state dtypes) as torch dtypes, with their NumPy dtypes.
_NUMPY_OF: dict[torch.dtype, np.dtype] = {getattr(torch, d.name): d for d in STATE_DTYPES}
#: The torch-operations path also takes bfloat16.
_TORCH_DTYPES = (*_NUMPY_OF, torch.bfloat16)
#: How this API spells (lr, beta1, beta2, eps) in messages (see check_optimizer_hyper).
_NAMES = ("lr", "betas[0] (beta1)", "betas[1] (beta2)", "eps")


# --------------------------------------------------------------------------- argument checks


def _as_number(value: Any) -> float | None:
    """A real number (Python, NumPy, or a one-element tensor) as a float; None otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            return None
        return float(value.detach().reshape(()).item())
    return as_number(value)


def _check_hyper(where: str, lr: Any, betas: Any, eps: Any, implementation: Any) -> None:
    """Validate one set of hyper-parameters; ``where`` prefixes the names (a group's index)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{where}betas: expected a pair (beta1, beta2) of numbers, got {betas!r}")
    check_optimizer_hyper(lr, betas[0], betas[1], eps, names=_NAMES, where=where, read=_as_number)
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(
            f"{where}implementation: expected one of {', '.join(map(repr, _IMPLEMENTATIONS))}, "
            f"got {implementation!r}"
        )


def _param_label(group_index: int, param_index: int, param: torch.Tensor) -> str:
    return (
        f"param_groups[{group_index}]['params'][{param_index}] "
        f"(shape {tuple(param.shape)}, dtype {param.dtype}, device {param.device})"
    )


def _uses_kernel(implementation: str, param: torch.Tensor) -> bool:
    if implementation == "torch":
        return False
    if implementation == "kernel":
        return True
    return param.device.type == "cpu"


def _check_param(
    group_index: int,
    param_index: int,
    param: torch.Tensor,
    implementation: str,
    label: Any = None,
) -> bool:
    """Check that ``param`` can be updated; returns True for the kernel path. ``label``: how
    messages name it (default: its :class:`_Where`)."""
    kernel = _uses_kernel(implementation, param)
    if label is None:
        label = _Where(group_index, param_index, param)  # formatted only for an error
    if kernel:
        if param.device.type != "cpu":
            raise TypeError(
                f"{label}: implementation='kernel' needs CPU tensors; use implementation='auto' "
                "or 'torch' for tensors on other devices"
            )
        if param.dtype == torch.bfloat16:
            raise TypeError(
                f"{label}: the bit-exact kernel takes float16, float32 or float64 (MindSpore's "
                "ApplyAdamWithAmsgradV2 has no bfloat16). Keep float32 master weights (the "
                "optimizer updates a float32 copy; cast it to bfloat16 for the model). "
                "implementation='torch' updates bfloat16 tensors with torch operations (each "
                "rounded to bfloat16, not bit-exact to any reference), but only with betas that "
                "stay below 1 in bfloat16: the default beta2=0.999 rounds to 1.0, so v would "
                "never grow and the parameters would diverge (such values are refused)"
            )
        if param.dtype not in _NUMPY_OF:
            raise TypeError(f"{label}: expected dtype {STATE_DTYPES_TEXT}")
    elif param.dtype not in _TORCH_DTYPES:
        raise TypeError(f"{label}: expected dtype bfloat16, {STATE_DTYPES_TEXT}")
    return kernel


# --------------------------------------------------------------------------- the optimizer


class AMSGradV2(torch.optim.Optimizer):
    """MindSpore's ApplyAdamWithAmsgradV2 (AMSGrad with epsilon added to ``sqrt(vhat)``).

    Args:
      params: an iterable of tensors, of ``(name, tensor)`` pairs, or of parameter-group dicts
        (each may set its own ``lr``, ``betas``, ``eps``, ``implementation``).
      lr: learning rate, >= 0 (a number, or a one-element tensor read with ``.item()``).
      betas: ``(beta1, beta2)``, each in [0, 1).
      eps: added to ``sqrt(vhat)`` in the denominator, >= 0. Unlike ``torch.optim.Adam``, the
        bias correction is applied to the learning rate (``lr_t``), so eps is not scaled by it.
      implementation: ``"auto"`` (kernel on CPU, torch operations elsewhere), ``"kernel"`` or
        ``"torch"`` (see the module docstring).

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
        *,
        implementation: str = "auto",
    ) -> None:
        _check_hyper("", lr, betas, eps, implementation)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "implementation": implementation,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (its hyper-parameters are checked before it is added)."""
        if isinstance(param_group, dict):
            merged = {**self.defaults, **param_group}
            where = f"param_groups[{len(self.param_groups)}]: "
            _check_hyper(
                where, merged["lr"], merged["betas"], merged["eps"], merged["implementation"]
            )
            params = param_group.get("params")
            if isinstance(params, torch.Tensor):
                params = [params]
            elif isinstance(params, Iterable) and not isinstance(params, (set, dict, str)):
                params = param_group["params"] = list(params)  # a generator: read it once
                params = [p[1] if isinstance(p, tuple) else p for p in params]
            else:
                params = []  # torch.optim.Optimizer reports what is wrong with it
            for index, param in enumerate(params):
                if isinstance(param, torch.Tensor) and param.dtype == torch.bfloat16:
                    _check_param(len(self.param_groups), index, param, merged["implementation"])
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("implementation", "auto")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, after checking that every parameter's state is AMSGradV2's.

        Each per-parameter state must hold ``m``, ``v``, ``vhat`` (tensors of the parameter's
        shape), ``step`` (an int >= 0) and ``beta1_power``, ``beta2_power`` (numbers in [0, 1]).
        Otherwise raises ValueError naming the parameter and what is missing or wrong (a
        ``torch.optim.Adam`` state dict is named as such), and nothing of the optimizer changes.
        """
        saved_groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        states = state_dict.get("state") if isinstance(state_dict, dict) else None
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
                for param_index, (param, key) in enumerate(zip(group["params"], ids, strict=True)):
                    if key in states:
                        where = _param_label(group_index, param_index, param)
                        _check_state(where, param, states[key], loaded=True)
        super().load_state_dict(state_dict)

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

        # 1. Check every parameter and its state; new states are made aside, stored at the end.
        fresh: dict[torch.Tensor, dict[str, Any]] = {}
        states: dict[torch.Tensor, dict[str, Any]] = {}
        buckets: dict[tuple[Any, ...], list[tuple[_Where, torch.Tensor]]] = {}
        powers: dict[torch.Tensor, tuple[np.float32, np.float32]] = {}
        with np.errstate(under="ignore"):  # beta powers tend to 0 by the rule
            self._check_all(fresh, states, buckets, powers)

        # 2. Each bucket's hyper-parameters in its dtype; with several buckets (one is written
        #    before the kernel checks the next), memory overlap across all kernel buckets.
        for (group_index, _kernel, _device, dtype, _b1, _b2), members in buckets.items():
            _check_group_hyper(self.param_groups[group_index], members[0][0], dtype)
        if len(buckets) > 1:
            _check_memory(
                [member for key, members in buckets.items() if key[1] for member in members],
                states,
            )

        # 3. Update, bucket by bucket; then store the new states and count the step.
        for (group_index, kernel, *_), members in buckets.items():
            group = self.param_groups[group_index]
            params = [param for _, param in members]
            beta1_power, beta2_power = powers[params[0]]
            if kernel:
                self._kernel_update(group, params, states, beta1_power, beta2_power)
            else:
                self._torch_update(group, params, states, beta1_power, beta2_power)
        for param, state in fresh.items():
            self.state[param] = state
        for param, (beta1_power, beta2_power) in powers.items():
            state = states[param]
            state["step"] += 1
            state["beta1_power"] = float(beta1_power)
            state["beta2_power"] = float(beta2_power)
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
            beta1, beta2 = (np.float32(_scalar(beta)) for beta in group["betas"])
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
                kernel = _check_param(
                    group_index, param_index, param, group["implementation"], where
                )
                if kernel and (param.is_neg() or param.is_conj()):
                    raise ValueError(
                        f"{where}: the parameter is a negated or conjugated view, which the "
                        "kernel cannot update in place; pass the tensor it views"
                    )
                _check_grad(where, param, grad, kernel)
                state = self.state.get(param)
                if state:
                    if not _state_ok(param, state):
                        _check_state(where, param, state, loaded=False)
                    if not kernel:  # the kernel checks memory overlap itself
                        _check_distinct(where, param, state)
                else:
                    state = fresh[param] = _new_state(param)
                states[param] = state
                beta1_power = _float32(state["beta1_power"]) * beta1
                beta2_power = _float32(state["beta2_power"]) * beta2
                powers[param] = (beta1_power, beta2_power)
                key = (
                    group_index,
                    kernel,
                    param.device,
                    param.dtype,
                    float(beta1_power),
                    float(beta2_power),
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
    ) -> None:
        """The bit-exact multi-tensor kernel on the tensors' own memory (CPU, zero-copy)."""
        beta1, beta2 = group["betas"]
        lists = _kernel_lists(params, states)
        apply_adam_with_amsgrad_v2_many(
            lists[0],
            lists[1],
            lists[2],
            lists[3],
            # Python floats of the same float32 values: the same bits, and the kernel's fast path
            float(beta1_power),
            float(beta2_power),
            _scalar(group["lr"]),
            _scalar(beta1),
            _scalar(beta2),
            _scalar(group["eps"]),
            lists[4],
        )
        # The memory was written behind autograd's back: tell it, as an in-place op would (a
        # detached view shares its base's version counter).
        torch.autograd.graph.increment_version([_local(param).detach() for param in params])

    def _torch_update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        states: dict[torch.Tensor, dict[str, Any]],
        beta1_power: np.float32,
        beta2_power: np.float32,
    ) -> None:
        """The same formula with torch operations, each rounded to the parameter's dtype."""
        dtype, device = params[0].dtype, params[0].device
        beta1, beta2 = group["betas"]
        scalars = _torch_scalars(
            dtype,
            beta1_power,
            beta2_power,
            _scalar(group["lr"]),
            _scalar(beta1),
            _scalar(beta2),
            _scalar(group["eps"]),
        )
        lr_t, one_minus_beta1, one_minus_beta2, eps = (s.to(device) for s in scalars)
        for param in params:
            state = states[param]
            m, v, vhat = (_local(state[name]) for name in ("m", "v", "vhat"))
            grad = _local(_grad(param))
            if grad.is_neg():
                grad = grad.resolve_neg()
            if grad.dtype != dtype:
                grad = grad.to(dtype)
            torch_update(
                _local(param), m, v, vhat, grad, lr_t, one_minus_beta1, one_minus_beta2, eps
            )


# --------------------------------------------------------------------------- state and checks

#: The per-parameter state AMSGradV2 keeps; the moments are tensors like the parameter.
_STATE_KEYS = ("step", "beta1_power", "beta2_power", "m", "v", "vhat")
_MOMENTS = ("m", "v", "vhat")
#: torch.optim.Adam's per-parameter state (amsgrad=True adds max_exp_avg_sq).
_ADAM_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


#: Tensor types whose memory is their own (not a DTensor whose shard ``_local`` returns).
_PLAIN = (torch.Tensor, torch.nn.Parameter)


class _Where:
    """A parameter as messages name it (:func:`_param_label`), formatted only when an error
    is raised: building the text for every parameter of every step would cost more than the
    checks."""

    __slots__ = ("group_index", "param", "param_index")

    def __init__(self, group_index: int, param_index: int, param: torch.Tensor) -> None:
        self.group_index, self.param_index, self.param = group_index, param_index, param

    def __str__(self) -> str:
        return _param_label(self.group_index, self.param_index, self.param)


def _new_state(param: torch.Tensor) -> dict[str, Any]:
    return {
        "step": 0,
        "beta1_power": 1.0,
        "beta2_power": 1.0,
        **{name: torch.zeros_like(param, memory_format=torch.preserve_format) for name in _MOMENTS},
    }


def _state_problems(param: torch.Tensor, state: Any, loaded: bool) -> list[str]:
    """What is wrong with one parameter's state (empty when nothing is). ``loaded``: a state
    being loaded, whose float tensors ``load_state_dict`` casts to the parameter's dtype and
    device (so only their shapes are checked)."""
    if not isinstance(state, dict):
        return [f"expected a dict, got {type(state).__name__}"]
    problems = []
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        problems.append(f"missing keys {', '.join(map(repr, missing))}")
    for name in _MOMENTS:
        if name not in state:
            continue
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            problems.append(f"{name!r} is a {type(tensor).__name__}, expected a tensor")
        elif tuple(tensor.shape) != tuple(param.shape):
            problems.append(
                f"{name!r} has shape {tuple(tensor.shape)}, expected the parameter's shape "
                f"{tuple(param.shape)}"
            )
        elif tensor.is_neg() or tensor.is_conj():
            problems.append(f"{name!r} is a negated or conjugated view, expected a plain tensor")
        elif not loaded and (tensor.dtype, tensor.device) != (param.dtype, param.device):
            problems.append(
                f"{name!r} has dtype {tensor.dtype} on {tensor.device}, expected the "
                f"parameter's dtype {param.dtype} on {param.device}"
            )
    step = state.get("step", 0)
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        problems.append(f"'step' is {step!r}, expected an int >= 0")
    for name in ("beta1_power", "beta2_power"):
        number = _as_number(state.get(name, 1.0))
        if number is None or not 0 <= number <= 1:
            problems.append(f"{name!r} is {state.get(name)!r}, expected a number in [0, 1]")
    return problems


def _state_ok(param: torch.Tensor, state: dict[str, Any]) -> bool:
    """The common case of :func:`_state_problems`, quickly: the state as step() leaves it."""
    step = state.get("step")
    if type(step) is not int or step < 0:
        return False
    for name in ("beta1_power", "beta2_power"):
        power = state.get(name)
        if type(power) is not float or not 0 <= power <= 1:
            return False
    shape, dtype, device = param.shape, param.dtype, param.device
    kind = torch.Tensor if type(param) is torch.nn.Parameter else type(param.data)
    for tensor in (state.get("m"), state.get("v"), state.get("vhat")):
        if (
            type(tensor) is not kind
            or tensor.dtype is not dtype
            or tensor.shape != shape
            or tensor.device != device
            or tensor.is_neg()
        ):
            return False
    return True


def _check_state(where: Any, param: torch.Tensor, state: Any, loaded: bool) -> None:
    """Raise ValueError naming the parameter when its state is not AMSGradV2's."""
    problems = _state_problems(param, state, loaded)
    if not problems:
        return
    text = f"{where}: the optimizer state is not AMSGradV2's: {'; '.join(problems)}"
    if isinstance(state, dict) and any(key in state for key in _ADAM_KEYS):
        text += (
            f" (it holds {', '.join(k for k in _ADAM_KEYS if k in state)}: this is a "
            "torch.optim.Adam state dict; converting it to AMSGradV2's state is not supported "
            "yet: start AMSGradV2 from a fresh state, or keep training with torch.optim.Adam)"
        )
    raise ValueError(text)


def _check_distinct(where: Any, param: torch.Tensor, state: dict[str, Any]) -> None:
    """The parameter, m, v and vhat in four distinct memories (torch-operations path; checked
    for contiguous tensors, whose memory is one interval)."""
    tensors = [("the parameter", _local(param))]
    tensors += [(repr(name), _local(state[name])) for name in _MOMENTS]
    if not all(tensor.is_contiguous() for _, tensor in tensors):
        return
    spans = [
        (tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size(), name)
        for name, tensor in tensors
        if tensor.numel()
    ]
    for index, (low, high, name) in enumerate(spans):
        for other_low, other_high, other in spans[index + 1 :]:
            if low < other_high and other_low < high:
                raise ValueError(
                    f"{where}: {name} and {other} share memory; the update writes each of "
                    "them in place, so they must be distinct tensors"
                )


def _check_memory(
    members: list[tuple[_Where, torch.Tensor]], states: dict[torch.Tensor, dict[str, Any]]
) -> None:
    """No parameter or state tensor of the kernel buckets shares memory with any other tensor
    of them (gradients may share memory with each other: they are only read), checked before
    the first bucket is written. Byte intervals are compared at once with NumPy; the exact
    check (and the check of strided tensors against themselves) runs only on a suspicion."""
    if not members:
        return
    roles = ("", *_MOMENTS, "gradient")
    tensors: list[torch.Tensor] = []
    for _, param in members:
        state = states[param]
        tensors += (param, state["m"], state["v"], state["vhat"], _grad(param))
    if not all(type(t) in _PLAIN for t in tensors):
        tensors = [_local(t) for t in tensors]
    lows = [t.data_ptr() for t in tensors]
    strided = not all(t.is_contiguous() for t in tensors)
    if not strided:
        highs = [t.nbytes for t in tensors]
    else:
        highs = []  # the extent of each tensor's memory, from its lowest byte
        for index, tensor in enumerate(tensors):
            if not tensor.numel():
                highs.append(0)
                continue
            low = high = lows[index]
            size = tensor.element_size()
            for length, stride in zip(tensor.shape, tensor.stride(), strict=True):
                if stride < 0:
                    low += stride * (length - 1) * size
                else:
                    high += stride * (length - 1) * size
            lows[index] = low
            highs.append(high + size - low)
    bounds = np.empty((len(tensors), 2), np.int64)
    bounds[:, 0] = lows
    bounds[:, 1] = bounds[:, 0] + np.asarray(highs, np.int64)
    is_grad = np.zeros(len(tensors), bool)
    is_grad[4::5] = True
    nonempty = bounds[:, 1] > bounds[:, 0]
    written = bounds[nonempty & ~is_grad]
    written = written[np.argsort(written[:, 0], kind="stable")]
    suspect = bool((written[1:, 0] < np.maximum.accumulate(written[:, 1])[:-1]).any())
    if not suspect:
        read = bounds[nonempty & is_grad]
        before = np.searchsorted(written[:, 0], read[:, 1]) - 1  # last interval below each end
        hit = (before >= 0) & (written[np.maximum(before, 0), 1] > read[:, 0])
        suspect = bool(hit.any()) if len(written) else False
    if not (suspect or strided):
        return

    def name(index: int) -> str:
        where, role = members[index // 5][0], roles[index % 5]
        return f"{where}" if not role else f"the {role} of {where}"

    arrays = [_numpy(name(k), tensor) for k, tensor in enumerate(tensors)]
    for index, array in enumerate(arrays):
        if not is_grad[index] and not array.flags.c_contiguous and may_overlap_itself(array):
            raise ValueError(f"{name(index)}: its elements overlap in memory")
    try:
        pair = find_overlap(arrays, list(is_grad))
    except OverlapUndecidedError as error:
        raise undecided_error(name(error.pair[0]), name(error.pair[1])) from None
    if pair is not None:
        raise overlap_error(name(pair[0]), name(pair[1]))


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
        source = _NUMPY_OF.get(grad.dtype)
        if source is None:
            raise TypeError(
                f"{where}: the gradient has dtype {grad.dtype}, expected {STATE_DTYPES_TEXT}"
            )
        try:
            check_grad_meta(
                source, tuple(grad.shape), _NUMPY_OF[param.dtype], tuple(grad.shape), "gradient"
            )
        except TypeError as error:
            raise type(error)(f"{where}: {error}") from None


def _check_group_hyper(group: dict[str, Any], where: Any, dtype: torch.dtype) -> None:
    """The group's hyper-parameters, converted as the update converts them: values of a type
    the operator refuses, and values that round to a degenerate update in ``dtype``."""
    beta1, beta2 = group["betas"]
    given = (group["lr"], beta1, beta2, group["eps"])
    if all(type(value) in (float, int) for value in given):
        try:  # plain numbers: once per set of values (a tensor lr may change in place)
            _hyper_ok(*given, dtype)
            return
        except (TypeError, ValueError):
            pass  # raised again below, with the parameter's name
    lr, beta1, beta2, eps = (_scalar(value) for value in given)
    _check_hyper_values(f"{where}: ", lr, beta1, beta2, eps, dtype)


@functools.lru_cache(maxsize=256)
def _hyper_ok(lr: float, beta1: float, beta2: float, eps: float, dtype: torch.dtype) -> bool:
    _check_hyper_values("", lr, beta1, beta2, eps, dtype)
    return True


def _check_hyper_values(
    where: str, lr: Any, beta1: Any, beta2: Any, eps: Any, dtype: torch.dtype
) -> None:
    for name, value in zip(_NAMES, (lr, beta1, beta2, eps), strict=True):
        try:
            _to_dtype(name, value, dtype)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}{error}") from None

    def rounded(name: str, value: Any) -> float:
        return float(_to_dtype(name, value, dtype).to(torch.float64).item())

    check_hyper_in_dtype(
        beta1,
        beta2,
        eps,
        str(dtype).removeprefix("torch."),
        names=_NAMES,
        where=where,
        rounded=rounded,
    )


def _numpy(where: str, tensor: torch.Tensor) -> np.ndarray:
    """The NumPy array of a CPU tensor's memory (no copy)."""
    try:
        return _local(tensor).detach().numpy()
    except RuntimeError as error:  # a negated view, a tensor that NumPy cannot see
        raise ValueError(f"{where}: the kernel cannot update it in place ({error})") from None


def _kernel_lists(
    params: list[torch.Tensor], states: dict[torch.Tensor, dict[str, Any]]
) -> list[list[np.ndarray]]:
    """The five lists of the multi-tensor kernel for ``params``: parameters, m, v, vhat as
    views of the tensors' memory; gradients too (a negated view is resolved: grads are read)."""
    moments = [states[param] for param in params]
    grads = [_local(_grad(param)).detach() for param in params]
    return [
        [_local(param).detach().numpy() for param in params],
        [_local(state["m"]).numpy() for state in moments],
        [_local(state["v"]).numpy() for state in moments],
        [_local(state["vhat"]).numpy() for state in moments],
        [(grad.resolve_neg() if grad.is_neg() else grad).numpy() for grad in grads],
    ]


# --------------------------------------------------------------------------- helpers


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2's ``fully_shard`` parameters), else the tensor.

    The update is elementwise, so updating each rank's shard of the parameter, gradient and
    state in place is the whole update; ``to_local()`` shares the shard's memory.
    """
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None and hasattr(tensor, "placements"):
        return to_local()
    return tensor


def _grad(param: torch.Tensor) -> torch.Tensor:
    grad = param.grad
    assert grad is not None  # only parameters with a gradient are bucketed
    return grad


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


def _to_dtype(name: str, value: Any, dtype: torch.dtype) -> torch.Tensor:
    """A 0-d CPU tensor of ``dtype`` holding ``value`` converted by the SPEC's scalar rules
    (:func:`~amsgrad.core.contract.scalar_to_dtype`, as on the kernel path; bfloat16 from the
    float32 value)."""
    if dtype == torch.bfloat16:
        return torch.from_numpy(scalar_to_dtype(name, value, F32)).to(torch.bfloat16)
    return torch.from_numpy(scalar_to_dtype(name, value, _NUMPY_OF[dtype]))


def _torch_scalars(
    dtype: torch.dtype,
    beta1_power: np.float32,
    beta2_power: np.float32,
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``lr_t``, ``1 - beta1``, ``1 - beta2``, ``eps`` as 0-d CPU tensors of ``dtype``.

    Computed with torch operations on CPU, each rounded to ``dtype`` (for float16/32/64 these
    are the kernel's values bit for bit).
    """
    one = torch.ones((), dtype=dtype)
    given = Hyper(beta1_power, beta2_power, lr, beta1, beta2, eps)
    b1p, b2p, lr_d, b1, b2, eps_d = (
        _to_dtype(name, value, dtype) for name, value in zip(HYPER_NAMES, given, strict=True)
    )
    lr_t = (lr_d * _sqrt64(one - b2p)) / (one - b1p)
    return lr_t, one - b1, one - b2, eps_d


def _sqrt64(x: torch.Tensor) -> torch.Tensor:
    """The SPEC's ``sqrt64``: the square root computed in float64, rounded to x's dtype.

    ``torch.sqrt`` is not correctly rounded on every device (on CPU, PyTorch 2.13's float32 and
    float64 square roots are off by one ULP for about 17 % and 1 % of inputs), so:

    * float16, bfloat16, float32: ``torch.sqrt`` in float64, then rounded to T. A float64
      result within one float64 ULP of the true root rounds to the correctly rounded root in
      T: the root of a float32 is never closer than 2**-50 (relative) to a midpoint of T.
    * float64: ``torch.sqrt``, then corrected by exact residuals (:func:`_correct_sqrt64`).
    """
    if x.dtype == torch.float64:
        return _correct_sqrt64(x)
    return torch.sqrt(x.to(torch.float64)).to(x.dtype)


_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's constant for float64
_TINY, _HUGE = 2.0**-900, 2.0**1000


def _two_product_sign(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sign(a * b - x)`` computed exactly (Dekker's product, no FMA), for a * b close to x.

    ``a * b = P + err`` exactly (Veltkamp splits); ``P - x`` is exact (Sterbenz: P and x are
    within a factor 2); ``fl(D + err)`` has the sign of ``D + err``. Needs a, b, x normal,
    away from overflow and underflow (the caller scales).
    """
    product = a * b
    gamma = a * _SPLITTER
    a_hi = gamma - (gamma - a)
    a_lo = a - a_hi
    gamma = b * _SPLITTER
    b_hi = gamma - (gamma - b)
    b_lo = b - b_hi
    err = (((a_hi * b_hi - product) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo
    return torch.sign((product - x) + err)


def _correct_sqrt64(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded float64 square root, from a ``torch.sqrt`` within one ULP.

    For the root c and its neighbours c- < c < c+: the true root s exceeds the midpoint
    (c + c+)/2 exactly when c * c+ - x < 0, and lies below (c- + c)/2 exactly when
    c * c- - x >= 0 (c * c+ - x is a multiple of c's quantum squared, the midpoint's square
    differs from it by a quarter of that quantum, so no tie can occur). Inputs far from 1 are
    scaled by an even power of two first (exact), so that the products neither overflow nor
    underflow. Zero, negative, infinite and NaN inputs keep ``torch.sqrt``'s result.
    """
    root = torch.sqrt(x)
    tiny = x < _TINY
    huge = x > _HUGE

    def const(value: float) -> torch.Tensor:
        return x.new_full((), value)

    scale = torch.where(tiny, const(2.0**400), torch.where(huge, const(2.0**-400), const(1.0)))
    unscale = torch.where(tiny, const(2.0**-200), torch.where(huge, const(2.0**200), const(1.0)))
    scaled = x * scale
    c = torch.sqrt(scaled)
    c_up = torch.nextafter(c, const(float("inf")).expand_as(c))
    c_down = torch.nextafter(c, const(0.0).expand_as(c))
    go_up = _two_product_sign(c, c_up, scaled) < 0
    go_down = _two_product_sign(c, c_down, scaled) >= 0
    corrected = torch.where(go_up, c_up, torch.where(go_down, c_down, c)) * unscale
    regular = (x > 0) & torch.isfinite(x)
    return torch.where(regular, corrected, root)


def torch_update(
    param: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    vhat: torch.Tensor,
    grad: torch.Tensor,
    lr_t: torch.Tensor,
    one_minus_beta1: torch.Tensor,
    one_minus_beta2: torch.Tensor,
    eps: torch.Tensor,
) -> None:
    """One update in place with torch operations (no fused multiply-add, one op per term).

    All tensors share one dtype; the four scalars are 0-d tensors of that dtype on the device.
    """
    delta = torch.sub(grad, m)
    delta.mul_(one_minus_beta1)
    m.add_(delta)  # m + (grad - m) * (1 - beta1)
    delta = torch.mul(grad, grad)
    delta.sub_(v)
    delta.mul_(one_minus_beta2)
    v.add_(delta)  # v + (grad * grad - v) * (1 - beta2)
    # A NaN in v keeps the old vhat (the comparison is false); a NaN in vhat stays.
    vhat.copy_(torch.where(vhat < v, v, vhat))
    denom = _sqrt64(vhat)
    denom.add_(eps)
    step = torch.mul(m, lr_t)
    step.div_(denom)
    param.sub_(step)  # param - (lr_t * m) / (sqrt(vhat) + eps)
