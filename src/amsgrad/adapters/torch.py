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

bfloat16 parameters on the kernel path raise TypeError (the operator has no bfloat16); pass
``implementation="torch"`` to train them with the torch-operations path.

Sharded training: ``torch.distributed.optim.ZeroRedundancyOptimizer(params,
optimizer_class=AMSGradV2, ...)`` works (each rank keeps the state of its own parameters), and so
does FSDP2 (``fully_shard``): DTensor parameters are updated through their local shards
(``to_local()``), which is the whole update since it is elementwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from amsgrad.core.contract import (
    HYPER_NAMES,
    Hyper,
    as_number,
    check_optimizer_hyper,
    scalar_to_dtype,
)
from amsgrad.core.dtypes import F32, STATE_DTYPES, STATE_DTYPES_TEXT
from amsgrad.core.functional import apply_adam_with_amsgrad_v2_many

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
    group_index: int, param_index: int, param: torch.Tensor, implementation: str
) -> bool:
    """Check that ``param`` can be updated; returns True for the kernel path."""
    kernel = _uses_kernel(implementation, param)
    label = _param_label(group_index, param_index, param)
    if kernel:
        if param.device.type != "cpu":
            raise TypeError(
                f"{label}: implementation='kernel' needs CPU tensors; use implementation='auto' "
                "or 'torch' for tensors on other devices"
            )
        if param.dtype == torch.bfloat16:
            raise TypeError(
                f"{label}: the bit-exact kernel takes float16, float32 or float64 (MindSpore's "
                "ApplyAdamWithAmsgradV2 has no bfloat16). Keep float32 master weights, or pass "
                "implementation='torch' to update bfloat16 tensors with torch operations (each "
                "operation rounded to bfloat16; not bit-exact to any reference)"
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

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns the closure's loss (or None).

        closure: an optional callable that re-evaluates the model and returns the loss; it runs
        with gradients enabled before the update.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        # 1. Check everything before anything is written.
        work: list[tuple[dict[str, Any], torch.Tensor, bool]] = []
        for group_index, group in enumerate(self.param_groups):
            for param_index, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None:
                    continue
                if grad.is_sparse or grad.layout != torch.strided:
                    raise RuntimeError(
                        f"{_param_label(group_index, param_index, param)}: AMSGradV2 does not "
                        f"support sparse gradients, got a gradient of layout {grad.layout}; "
                        "use dense gradients (e.g. nn.Embedding(sparse=False))"
                    )
                kernel = _check_param(group_index, param_index, param, group["implementation"])
                work.append((group, param, kernel))

        # 2. Bucket by group, path, device, dtype and beta powers (the kernel takes one set of
        #    scalars per call).
        buckets: dict[tuple[Any, ...], list[torch.Tensor]] = {}
        powers: dict[torch.Tensor, tuple[np.float32, np.float32]] = {}
        for group, param, kernel in work:
            state = self.state[param]
            if len(state) == 0:
                state["step"] = 0
                state["beta1_power"] = 1.0
                state["beta2_power"] = 1.0
                state["m"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["v"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["vhat"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            beta1, beta2 = group["betas"]
            beta1_power = _float32(state["beta1_power"]) * np.float32(beta1)
            beta2_power = _float32(state["beta2_power"]) * np.float32(beta2)
            powers[param] = (beta1_power, beta2_power)
            key = (
                id(group),
                kernel,
                param.device,
                param.dtype,
                float(beta1_power),
                float(beta2_power),
            )
            buckets.setdefault(key, []).append(param)

        # 3. Update, bucket by bucket.
        groups = {id(group): group for group in self.param_groups}
        for (group_id, kernel, _device, _dtype, _b1, _b2), params in buckets.items():
            group = groups[group_id]
            beta1_power, beta2_power = powers[params[0]]
            if kernel:
                self._kernel_update(group, params, beta1_power, beta2_power)
            else:
                self._torch_update(group, params, beta1_power, beta2_power)
            for param in params:
                state = self.state[param]
                state["step"] += 1
                state["beta1_power"] = float(beta1_power)
                state["beta2_power"] = float(beta2_power)
        return loss

    # ----------------------------------------------------------------------- implementations

    def _kernel_update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        beta1_power: np.float32,
        beta2_power: np.float32,
    ) -> None:
        """The bit-exact multi-tensor kernel on the tensors' own memory (CPU, zero-copy)."""
        states = [self.state[param] for param in params]
        beta1, beta2 = group["betas"]
        local_params = [_local(param).detach() for param in params]
        apply_adam_with_amsgrad_v2_many(
            [param.numpy() for param in local_params],
            [_local(state["m"]).numpy() for state in states],
            [_local(state["v"]).numpy() for state in states],
            [_local(state["vhat"]).numpy() for state in states],
            # Python floats of the same float32 values: the same bits, and the kernel's fast path
            float(beta1_power),
            float(beta2_power),
            _scalar(group["lr"]),
            _scalar(beta1),
            _scalar(beta2),
            _scalar(group["eps"]),
            [_local(_grad(param)).detach().numpy() for param in params],
        )
        # The memory was written behind autograd's back: tell it, as an in-place op would (a
        # detached view shares its base's version counter).
        torch.autograd.graph.increment_version(local_params)

    def _torch_update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
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
            state = self.state[param]
            m, v, vhat = (_local(state[name]) for name in ("m", "v", "vhat"))
            grad = _local(_grad(param))
            if grad.dtype != dtype:
                grad = grad.to(dtype)
            torch_update(
                _local(param), m, v, vhat, grad, lr_t, one_minus_beta1, one_minus_beta2, eps
            )


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
