"""Helpers of :mod:`amsgrad.adapters.torch`: the per-parameter state and its checks, the
memory-overlap checks, and the update written with torch operations (bit-exact to the kernel on
CPU for float16, float32 and float64)."""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np
import torch

from amsgrad.adapters.mindspore_state import NameMap, map_names
from amsgrad.core.contract import (
    HYPER_NAMES,
    Hyper,
    find_overlap,
    overlap_error,
    scalar_to_dtype,
)
from amsgrad.core.dtypes import F32, STATE_DTYPES
from amsgrad.core.optimizers import as_number, centralizes
from amsgrad.core.overlap import OverlapUndecidedError, may_overlap_itself, undecided_error

#: The kernel's dtypes (the core's state dtypes) as torch dtypes, with their NumPy dtypes.
NUMPY_OF: dict[torch.dtype, np.dtype] = {getattr(torch, d.name): d for d in STATE_DTYPES}


def as_tensor_number(value: Any) -> float | None:
    """A real number (Python, NumPy, or a one-element tensor) as a float; None otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            return None
        return float(value.detach().reshape(()).item())
    return as_number(value)


#: The per-parameter state AMSGradV2 keeps; the moments are tensors like the parameter.
STATE_KEYS = ("step", "beta1_power", "beta2_power", "m", "v", "vhat")
MOMENTS = ("m", "v", "vhat")
#: With ``master_weights`` (float16 and bfloat16 parameters): the float32 master copy, kept
#: beside float32 moments.
MASTER = "master"
#: torch.optim.Adam's per-parameter state (amsgrad=True adds max_exp_avg_sq).
ADAM_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


#: Tensor types whose memory is their own (not a DTensor whose shard ``local`` returns).
PLAIN = (torch.Tensor, torch.nn.Parameter)


def new_state(param: torch.Tensor, master: bool = False) -> dict[str, Any]:
    """A parameter's first state: zero moments like the parameter; with ``master``, a float32
    copy of the parameter (exact: float16 and bfloat16 widen exactly) and float32 moments."""
    like = param
    extra: dict[str, torch.Tensor] = {}
    if master:
        like = param.detach().to(torch.float32, memory_format=torch.preserve_format, copy=True)
        extra[MASTER] = like
    return {
        "step": 0,
        "beta1_power": 1.0,
        "beta2_power": 1.0,
        **{name: torch.zeros_like(like, memory_format=torch.preserve_format) for name in MOMENTS},
        **extra,
    }


def state_problems(
    param: torch.Tensor, state: Any, loaded: bool, master: bool = False
) -> list[str]:
    """What is wrong with one parameter's state (empty when nothing is). ``loaded``: a state
    being loaded, whose float tensors ``load_state_dict`` casts to the parameter's dtype and
    device (so only their shapes are checked, but for a master-weights state, whose tensors
    must be float32). ``master``: the parameter is updated with master weights (its state holds
    ``master`` and float32 moments)."""
    if not isinstance(state, dict):
        return [f"expected a dict, got {type(state).__name__}"]
    problems = []
    keys = (*STATE_KEYS, MASTER) if master else STATE_KEYS
    missing = [key for key in keys if key not in state]
    if missing:
        problems.append(f"missing keys {', '.join(map(repr, missing))}")
    if master and MASTER not in state:
        problems.append(
            "master_weights=True keeps a float32 master copy of a float16 or bfloat16 parameter "
            "in state['master'], with float32 m, v, vhat"
        )
    if not master and MASTER in state:
        problems.append(
            "'master' is a master-weights state (a float32 copy of the parameter), but this "
            "parameter is not updated with master weights (its group's master_weights is False, "
            "or its dtype is not float16 or bfloat16)"
        )
    dtype = torch.float32 if master else param.dtype
    for name in (*MOMENTS, MASTER) if master else MOMENTS:
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
        elif master and tensor.dtype != torch.float32:
            problems.append(
                f"{name!r} has dtype {tensor.dtype}, expected float32 (master_weights=True keeps "
                "the master copy and the moments in float32)"
            )
        elif not loaded and (tensor.dtype, tensor.device) != (dtype, param.device):
            whose = "the master-weights dtype" if master else "the parameter's dtype"
            problems.append(
                f"{name!r} has dtype {tensor.dtype} on {tensor.device}, expected {whose} "
                f"{dtype} on {param.device}"
            )
    step = state.get("step", 0)
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        problems.append(f"'step' is {step!r}, expected an int >= 0")
    for name in ("beta1_power", "beta2_power"):
        number = as_tensor_number(state.get(name, 1.0))
        if number is None or not 0 <= number <= 1:
            problems.append(f"{name!r} is {state.get(name)!r}, expected a number in [0, 1]")
    return problems


def state_ok(
    param: torch.Tensor, state: dict[str, Any], capturable: bool = False, master: bool = False
) -> bool:
    """The common case of :func:`state_problems`, quickly: the state as step() leaves it.
    ``capturable``: the beta powers are one-element float32 tensors on the parameter's device
    (their values are not read: that would wait for the device). ``master``: the parameter is
    updated through a float32 master copy (torch_mixed)."""
    step = state.get("step")
    if type(step) is not int or step < 0:
        return False
    for name in ("beta1_power", "beta2_power"):
        power = state.get(name)
        if capturable:
            if not is_device_power(power, param.device):
                return False
        elif type(power) is not float or not 0 <= power <= 1:
            return False
    shape, dtype, device = param.shape, param.dtype, param.device
    kind = torch.Tensor if type(param) is torch.nn.Parameter else type(param.data)
    tensors = [state.get("m"), state.get("v"), state.get("vhat")]
    if master:
        dtype = torch.float32
        tensors.append(state.get(MASTER))
    elif MASTER in state:
        return False
    for tensor in tensors:
        if (
            type(tensor) is not kind
            or tensor.dtype is not dtype
            or tensor.shape != shape
            or tensor.device != device
            or tensor.is_neg()
            or tensor.is_conj()
        ):
            return False
    return True


def is_device_power(power: Any, device: torch.device) -> bool:
    """A beta power as the capturable mode keeps it: a one-element float32 tensor on
    ``device``."""
    return (
        isinstance(power, torch.Tensor)
        and power.dtype == torch.float32
        and power.numel() == 1
        and power.device == device
    )


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether Triton can be imported (looked up once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


def check_state(
    where: Any, param: torch.Tensor, state: Any, loaded: bool, master: bool = False
) -> None:
    """Raise ValueError naming the parameter when its state is not AMSGradV2's."""
    problems = state_problems(param, state, loaded, master)
    if not problems:
        return
    text = f"{where}: the optimizer state is not AMSGradV2's: {'; '.join(problems)}"
    if isinstance(state, dict) and any(key in state for key in ADAM_KEYS):
        text += (
            f" (it holds {', '.join(k for k in ADAM_KEYS if k in state)}: this is a "
            "torch.optim.Adam state dict; load_state_dict converts one of "
            "torch.optim.Adam(amsgrad=True) whose every state holds exp_avg, exp_avg_sq, "
            "max_exp_avg_sq and step)"
        )
    raise ValueError(text)


def check_distinct(where: Any, param: torch.Tensor, state: dict[str, Any]) -> None:
    """The parameter, m, v and vhat in four distinct memories (torch-operations path; checked
    for contiguous tensors, whose memory is one interval)."""
    tensors = [("the parameter", local(param))]
    tensors += [(repr(name), local(state[name])) for name in (*MOMENTS, MASTER) if name in state]
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


def check_memory(
    members: list[tuple[Any, torch.Tensor]], states: dict[torch.Tensor, dict[str, Any]]
) -> None:
    """No parameter or state tensor of the kernel buckets shares memory with any other tensor
    of them (gradients may share memory with each other: they are only read), checked before
    the first bucket is written. Byte intervals are compared at once with NumPy; the exact
    check (and the check of strided tensors against themselves) runs only on a suspicion."""
    if not members:
        return
    roles = ("", *MOMENTS, "gradient")
    tensors: list[torch.Tensor] = []
    for _, param in members:
        state = states[param]
        tensors += (param, state["m"], state["v"], state["vhat"], grad_of(param))
    if not all(type(t) in PLAIN for t in tensors):
        tensors = [local(t) for t in tensors]
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

    arrays = [numpy_view(name(k), tensor) for k, tensor in enumerate(tensors)]
    for index, array in enumerate(arrays):
        if not is_grad[index] and not array.flags.c_contiguous and may_overlap_itself(array):
            raise ValueError(f"{name(index)}: its elements overlap in memory")
    try:
        pair = find_overlap(arrays, list(is_grad))
    except OverlapUndecidedError as error:
        raise undecided_error(name(error.pair[0]), name(error.pair[1])) from None
    if pair is not None:
        raise overlap_error(name(pair[0]), name(pair[1]))


def numpy_view(where: str, tensor: torch.Tensor) -> np.ndarray:
    """The NumPy array of a CPU tensor's memory (no copy; bfloat16 seen as int16, which NumPy
    holds: the memory is what matters)."""
    try:
        tensor = local(tensor).detach()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        return tensor.numpy()
    except RuntimeError as error:  # a negated view, a tensor that NumPy cannot see
        raise ValueError(f"{where}: the kernel cannot update it in place ({error})") from None


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2's ``fully_shard`` parameters), else the tensor.

    The update is elementwise, so updating each rank's shard of the parameter, gradient and
    state in place is the whole update; ``to_local()`` shares the shard's memory.
    """
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None and hasattr(tensor, "placements"):
        return to_local()
    return tensor


def grad_of(param: torch.Tensor) -> torch.Tensor:
    grad = param.grad
    assert grad is not None  # only parameters with a gradient are bucketed
    return grad


def to_dtype(name: str, value: Any, dtype: torch.dtype) -> torch.Tensor:
    """A 0-d CPU tensor of ``dtype`` holding ``value`` converted by the SPEC's scalar rules
    (:func:`~amsgrad.core.contract.scalar_to_dtype`, as on the kernel path; bfloat16 from the
    float32 value)."""
    if dtype == torch.bfloat16:
        return torch.from_numpy(scalar_to_dtype(name, value, F32)).to(torch.bfloat16)
    return torch.from_numpy(scalar_to_dtype(name, value, NUMPY_OF[dtype]))


def torch_scalars(
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
        to_dtype(name, value, dtype) for name, value in zip(HYPER_NAMES, given, strict=True)
    )
    lr_t = (lr_d * sqrt64(one - b2p)) / (one - b1p)
    return lr_t, one - b1, one - b2, eps_d


def sqrt64(x: torch.Tensor) -> torch.Tensor:
    """The SPEC's ``sqrt64``: the square root computed in float64, rounded to x's dtype.

    ``torch.sqrt`` is not correctly rounded on every device (on CPU, PyTorch 2.13's float32 and
    float64 square roots are off by one ULP for about 17 % and 1 % of inputs), so:

    * float16, bfloat16, float32: ``torch.sqrt`` in float64, then rounded to T. A float64
      result within one float64 ULP of the true root rounds to the correctly rounded root in
      T: the root of a float32 is never closer than 2**-50 (relative) to a midpoint of T.
    * float64: ``torch.sqrt``, then corrected by exact residuals (:func:`correct_sqrt64`).
    """
    if x.dtype == torch.float64:
        return correct_sqrt64(x)
    return torch.sqrt(x.to(torch.float64)).to(x.dtype)


_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's constant for float64
_TINY, _HUGE = 2.0**-900, 2.0**1000


def two_product_sign(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
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


def correct_sqrt64(x: torch.Tensor) -> torch.Tensor:
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
    go_up = two_product_sign(c, c_up, scaled) < 0
    go_down = two_product_sign(c, c_down, scaled) >= 0
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
    denom = sqrt64(vhat)
    denom.add_(eps)
    step = torch.mul(m, lr_t)
    step.div_(denom)
    param.sub_(step)  # param - (lr_t * m) / (sqrt(vhat) + eps)


# ---------------------------------------------------------------- the Triton path's helpers


def check_triton_param(where: Any, param: torch.Tensor) -> None:
    """A parameter that the Triton kernel can update: float16, float32 or float64, on a CUDA
    device (on the CPU under Triton's interpreter, ``TRITON_INTERPRET=1``)."""
    if not triton_available():
        raise ImportError(
            f"{where}: implementation='triton' needs Triton (pip install amsgrad[gpu]); use "
            "implementation='auto' to fall back to torch operations"
        )
    from amsgrad.adapters.triton import interpreting

    if param.dtype not in NUMPY_OF:
        raise TypeError(
            f"{where}: implementation='triton' takes float16, float32 or float64 (MindSpore's "
            f"ApplyAdamWithAmsgradV2 has no {param.dtype}); implementation='torch' updates "
            "bfloat16 tensors with torch operations"
        )
    device = local(param).device.type
    if interpreting() and device != "cpu":
        raise TypeError(
            f"{where}: with TRITON_INTERPRET=1, implementation='triton' runs Triton's "
            "interpreter on the host and needs CPU tensors"
        )
    if not interpreting() and device != "cuda":
        raise TypeError(
            f"{where}: implementation='triton' needs CUDA tensors (CPU tensors: implementation="
            "'kernel', or Triton's interpreter with TRITON_INTERPRET=1)"
        )


def check_device_lr(where: Any, lr: torch.Tensor, device: torch.device) -> None:
    """A tensor lr in capturable mode: one float32 element on the parameters' device, read by
    the kernel (its value is not checked: reading it would wait for the device)."""
    if not is_device_power(lr, device):
        raise TypeError(
            f"{where}: with capturable=True a tensor lr must hold one float32 element on the "
            f"parameters' device {device} (the kernel reads it there), got dtype {lr.dtype} "
            f"with {lr.numel()} elements on {lr.device}"
        )


def device_powers(state: dict[str, Any], device: torch.device) -> tuple[Any, Any]:
    """The state's beta powers as one-element float32 tensors on ``device`` (capturable mode):
    the state's own when they already are, else new ones holding their float32 values."""
    pair = []
    for name in ("beta1_power", "beta2_power"):
        power = state[name]
        if not is_device_power(power, device):
            number = as_tensor_number(power)
            power = torch.tensor(np.float32(number), dtype=torch.float32).to(device)
        pair.append(power)
    return pair[0], pair[1]


def powers_as_floats(state: Any) -> Any:
    """A state with its beta powers as Python floats (a copy when they were tensors)."""
    if not isinstance(state, dict) or not any(
        isinstance(state.get(name), torch.Tensor) for name in ("beta1_power", "beta2_power")
    ):
        return state
    copy = dict(state)
    for name in ("beta1_power", "beta2_power"):
        if isinstance(copy.get(name), torch.Tensor):
            copy[name] = float(copy[name].detach().reshape(()).item())
    return copy


def triton_update(
    group: dict[str, Any],
    params: list[torch.Tensor],
    states: dict[torch.Tensor, dict[str, Any]],
    powers: dict[torch.Tensor, tuple[Any, Any]],
    lr: Any,
    scalar: Any,
) -> None:
    """One bucket on the Triton kernel (:mod:`amsgrad.adapters.triton`). Non-contiguous
    tensors are updated through contiguous copies, copied back. ``scalar`` reads a
    hyper-parameter given as a tensor. Capturable: the beta powers (one-element float32
    tensors on the device) are multiplied by the betas in place, then the kernel reads them."""
    from amsgrad.adapters import triton as kernel

    dtype, device = params[0].dtype, params[0].device
    lists: list[list[torch.Tensor]] = [[], [], [], [], []]
    copies = []
    for param in params:
        state = states[param]
        grad = mindspore_grad(local(param), local(grad_of(param)), group)
        if grad.is_neg():
            grad = grad.resolve_neg()
        lists[4].append(grad.to(dtype).contiguous())
        for index, tensor in enumerate((local(param), *(local(state[n]) for n in MOMENTS))):
            tensor = tensor.detach()
            if not tensor.is_contiguous():
                copies.append((tensor, tensor.contiguous()))
                tensor = copies[-1][1]
            lists[index].append(tensor)
    beta1, beta2 = (scalar(beta) for beta in group["betas"])
    eps = scalar(group["eps"])
    if not group["capturable"]:
        beta1_power, beta2_power = powers[params[0]]
        kernel.apply_many(
            lists[0],
            lists[1],
            lists[2],
            lists[3],
            lists[4],
            beta1_power,
            beta2_power,
            scalar(lr),
            beta1,
            beta2,
            eps,
        )
    else:
        kernel.check_many(lists[0], lists[1], lists[2], lists[3], lists[4])
        firsts = [powers[param][0] for param in params]
        seconds = [powers[param][1] for param in params]
        for tensors, beta in ((firsts, beta1), (seconds, beta2)):
            for power in {id(t): t for t in tensors}.values():
                power.mul_(float(np.float32(beta)))
        if not isinstance(lr, torch.Tensor):
            lr = kernel.float32_on(scalar(lr), device)
        kernel.apply_many_capturable(
            lists[0],
            lists[1],
            lists[2],
            lists[3],
            lists[4],
            firsts,
            seconds,
            lr,
            beta1,
            beta2,
            eps,
        )
    for target, copy in copies:
        target.copy_(copy)


# ---------------------------------------------------------------- MindSpore's training step


def lr_at(lr: Any, step: Any, where: Any) -> Any:
    """The learning rate of the step after ``step`` steps: ``lr`` itself, or ``lr[step]`` for a
    list of per-step values (MindSpore's ``learning_rate=[...]``, read at ``global_step``)."""
    if not isinstance(lr, (list, tuple)):
        return lr
    index = int(step)
    if index >= len(lr):
        raise IndexError(
            f"{where}: lr is a list of {len(lr)} per-step learning rates, and step {index + 1} "
            f"(index {index}) is past its end; give a longer list"
        )
    return lr[index]


def _factor(value: float, like: torch.Tensor) -> torch.Tensor:
    """``float32(value)`` widened or rounded to ``like``'s dtype, as a 0-d tensor on its device."""
    exact = float(np.float32(value))
    return torch.tensor(exact, dtype=torch.float64).to(like.dtype).to(like.device)


def mindspore_grad(
    param: torch.Tensor, grad: torch.Tensor, group: dict[str, Any], pairs: bool = False
) -> torch.Tensor:
    """The gradient as MindSpore's ``nn.Adam`` hands it to the operator, in a new tensor (the
    given one is never written): ``grad = param * float32(wd * ls) + grad`` when
    ``wd * ls > 0``, then with ``grad_centralization`` :func:`centralized` (for gradients of
    rank >= 2 whose ``shape[1]`` is a multiple of 16), then ``grad = grad * float32(1 / ls)``
    when ``ls != 1``, each operation rounded to the parameter's dtype; with ``maximize``,
    ``-grad`` first. Without any of them: ``grad`` itself. ``pairs``: the tensors are the real
    views (``(..., 2)``) of complex ones, centralized as the complex numbers they hold."""
    weight_decay = float(group.get("weight_decay", 0.0))
    loss_scale = float(group.get("loss_scale", 1.0))
    decay = weight_decay * loss_scale
    shape = grad.shape[:-1] if pairs else grad.shape
    centralize = bool(group.get("grad_centralization")) and centralizes(shape)
    if group.get("maximize"):
        grad = torch.neg(grad)  # first, as torch.optim.Adam(maximize=True): a new tensor
    if decay <= 0 and loss_scale == 1.0 and not centralize:
        return grad
    if grad.is_neg():
        grad = grad.resolve_neg()
    grad = grad.to(param.dtype)
    if decay > 0:
        grad = torch.mul(param.detach(), _factor(decay, param)).add_(grad)
    if centralize:
        grad = centralized(grad, pairs)
    if loss_scale != 1.0:
        grad = torch.mul(grad, _factor(1.0 / loss_scale, param))
    return grad


def centralized(grad: torch.Tensor, pairs: bool = False) -> torch.Tensor:
    """MindSpore's ``Centralization`` (``y = x - mean(x)`` over every axis but the first, the
    mean kept per row), in a new tensor of ``grad``'s dtype. MindSpore has this kernel on
    Ascend only (its CPU backend raises), so its rounding is not known; here the mean is taken
    in float64 and rounded once to the dtype, and the subtraction rounds in the dtype.
    ``pairs``: ``grad`` is the real view of a complex gradient (last axis: real, imaginary),
    whose mean is complex: the two parts are averaged apart."""
    axes = tuple(range(1, grad.ndim - (1 if pairs else 0)))
    mean = grad.to(torch.float64).mean(dim=axes, keepdim=True).to(grad.dtype)
    return torch.sub(grad, mean)


def mindspore_param_groups(
    named_parameters: Any, weight_decay: float, name_map: NameMap = None
) -> list[dict[str, Any]]:
    """Parameter groups that decay as MindSpore's ``nn.Adam(params, weight_decay=wd)`` without
    groups does: parameters whose MindSpore name holds neither ``beta`` nor ``gamma`` decay by
    ``weight_decay``, the others (MindSpore's LayerNorm/BatchNorm scales and shifts) do not.
    Both groups use the optimizer's default lr. (With groups MindSpore applies no name filter.)

    ``named_parameters``: ``(name, tensor)`` pairs, as ``model.named_parameters()`` gives.
    torch calls a LayerNorm's parameters ``weight`` and ``bias``, so by torch's names they
    decay; ``name_map`` (a dict or a callable from torch names to MindSpore names, as for
    ``load_mindspore``) gives each parameter the MindSpore name the filter reads.
    """
    pairs = list(named_parameters)
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(
                f"named_parameters[{index}]: expected a (name, tensor) pair, as "
                f"model.named_parameters() gives, got {type(pair).__name__}; the filter reads "
                "each parameter's name"
            )
    names = map_names([name for name, _ in pairs], name_map)
    decayed: list[torch.Tensor] = []
    spared: list[torch.Tensor] = []
    for name, (_, param) in zip(names, pairs, strict=True):
        (spared if "beta" in name or "gamma" in name else decayed).append(param)
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    groups.append({"params": spared, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


#: The keys a parameter group may hold (``param_names``: torch's, for named parameters).
GROUP_KEYS = (
    "params",
    "param_names",
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "loss_scale",
    "grad_centralization",
    "maximize",
    "foreach",
    "fused",
    "capturable",
    "differentiable",
    "implementation",
    "master_weights",
)
#: torch.optim.Adam's flags: the values honoured, and what to use instead of the others.
_FLAGS = {
    "maximize": ((False, True), "a bool"),
    "grad_centralization": ((False, True), "a bool"),
    "master_weights": ((False, True), "a bool"),
    "foreach": (
        (None, True),
        "None or True: the update always runs on all tensors of a bucket at once (choose the "
        "arithmetic with implementation='kernel' or 'torch')",
    ),
    "fused": (
        (None, True),
        "None or True: the kernel is fused (choose the arithmetic with "
        "implementation='kernel' or 'torch')",
    ),
    "capturable": (
        (False, True),
        "a bool (True: lr and the beta powers stay on the device, implementation='triton')",
    ),
    "differentiable": ((False,), "False: the update runs under torch.no_grad()"),
}


def check_group_keys(where: str, group: dict[str, Any]) -> None:
    """Refuse unknown keys (a typo such as ``weight_decy`` must not train silently) and the
    values of torch's flags that AMSGradV2 does not honour."""
    if "order_params" in group:
        raise ValueError(
            f"{where}'order_params' is MindSpore's and is not needed here (the parameters are "
            "updated in the order of the groups and their 'params'); remove it"
        )
    unknown = [key for key in group if key not in GROUP_KEYS]
    if unknown:
        raise ValueError(
            f"{where}unknown parameter-group keys {', '.join(map(repr, unknown))}; the known "
            f"keys are {', '.join(map(repr, GROUP_KEYS))}"
        )
    for name, (allowed, instead) in _FLAGS.items():
        if name in group and not any(
            group[name] is value or (type(group[name]) is bool and group[name] == value)
            for value in allowed
        ):
            raise ValueError(f"{where}{name}={group[name]!r} is not supported; use {instead}")


def beta_powers(step: int, beta1: np.float32, beta2: np.float32) -> tuple[float, float]:
    """MindSpore's beta powers after ``step`` steps: the float32 running products of
    ``beta1`` and ``beta2``, one rounded multiplication per step."""
    power1 = power2 = np.float32(1.0)
    with np.errstate(under="ignore"):
        for _ in range(step):
            power1, power2 = np.float32(power1 * beta1), np.float32(power2 * beta2)
    return float(power1), float(power2)


def check_adam_decay(where: str, saved: dict[str, Any]) -> None:
    """Refuse a saved torch.optim group whose weight decay is AdamW's (decoupled), or may be
    (no ``decoupled_weight_decay`` key: older torch saves Adam and AdamW groups alike)."""
    decay = saved.get("weight_decay", 0)
    number = as_number(decay)
    if number is None or number == 0:
        return  # no decay (anything else is reported by the group checks)
    decoupled = saved.get("decoupled_weight_decay")
    if decoupled is None:
        raise ValueError(
            f"{where}a torch.optim.Adam-style group with weight_decay={decay!r} and no "
            "'decoupled_weight_decay' key (older torch saves Adam's and AdamW's groups alike): "
            "torch.optim.Adam's decay (L2, added to the gradient) is MindSpore's, AdamW's "
            "(decoupled) is not; set 'decoupled_weight_decay' to False in that saved group "
            "if it is torch.optim.Adam's, or 'weight_decay' to 0 to load it without the decay"
        )
    if not decoupled:
        return  # torch.optim.Adam's L2 decay: MindSpore's
    raise ValueError(
        f"{where}a torch.optim.AdamW state dict (decoupled_weight_decay={decoupled!r}, "
        f"weight_decay={decay!r}): AdamW decays the parameters apart from the gradient "
        "(param -= lr * weight_decay * param), which is not what MindSpore's Adam (and "
        "AMSGradV2) does: it adds weight_decay * param to the gradient (L2), a different "
        "update; to load the moments without the decay, set 'weight_decay' to 0 in that saved "
        "group (then set AMSGradV2's own weight_decay for L2 decay if wanted), or convert the "
        "state dict by hand"
    )


def from_torch_adam(state_dict: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``torch.optim.Adam(amsgrad=True)`` state dict as AMSGradV2's; others unchanged.

    Per parameter: ``exp_avg`` -> ``m``, ``exp_avg_sq`` -> ``v``, ``max_exp_avg_sq`` ->
    ``vhat``, ``step`` (an int), and the beta powers as MindSpore keeps them: the float32
    running product of ``float32(beta)``, ``step`` times (:func:`beta_powers`, once per
    distinct step and betas). Each saved group's ``lr``, ``betas``, ``eps``, ``weight_decay``
    and ``maximize`` replace the optimizer's group's; its other settings (``loss_scale``,
    ``implementation``) stay, and Adam's own keys (``amsgrad``, ``decoupled_weight_decay``,
    ...) are dropped. A state dict saved before any step (groups with an ``amsgrad`` key, no
    state) converts its groups only, whatever its ``amsgrad``. Raises ValueError for an Adam
    state without ``max_exp_avg_sq`` (amsgrad=False), saying how to convert it, and for a
    group with AdamW's decoupled weight decay (:func:`check_adam_decay`).
    """
    states, saved_groups = state_dict.get("state"), state_dict.get("param_groups")
    if not isinstance(states, dict) or not isinstance(saved_groups, list):
        return state_dict
    adam = [key for key, state in states.items() if isinstance(state, dict) and "exp_avg" in state]
    adam_groups = any(isinstance(saved, dict) and "amsgrad" in saved for saved in saved_groups)
    if (
        not (adam or adam_groups)
        or any("m" in states[key] for key in adam)
        or len(saved_groups) != len(groups)
    ):
        return state_dict
    converted_groups, converted = [], {}
    powers: dict[tuple[int, np.float32, np.float32], tuple[float, float]] = {}
    for group_index, (group, saved) in enumerate(zip(groups, saved_groups, strict=True)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
            return state_dict  # torch.optim.Optimizer reports it
        check_adam_decay(f"param_groups[{group_index}]: ", saved)
        new_group = {key: value for key, value in group.items() if key != "params"}
        for key in ("lr", "betas", "eps", "weight_decay", "maximize"):
            if key in saved:
                new_group[key] = tuple(saved[key]) if key == "betas" else saved[key]
        new_group["params"] = saved["params"]
        converted_groups.append(new_group)
        beta1, beta2 = (np.float32(beta) for beta in new_group["betas"])
        for key in saved["params"]:
            state = states.get(key)
            if not isinstance(state, dict) or "exp_avg" not in state:
                if state is not None:
                    converted[key] = state
                continue
            if "max_exp_avg_sq" not in state:
                raise ValueError(
                    f"state {key!r}: a torch.optim.Adam state without 'max_exp_avg_sq' "
                    "(amsgrad=False) has no vhat; to convert it, set "
                    "state['max_exp_avg_sq'] = state['exp_avg_sq'].clone() (the running maximum "
                    "restarts from the current v) or train with torch.optim.Adam(amsgrad=True)"
                )
            step = state.get("step", 0)
            step = int(step.item()) if isinstance(step, torch.Tensor) else int(step)
            if (step, beta1, beta2) not in powers:
                powers[step, beta1, beta2] = beta_powers(step, beta1, beta2)
            power1, power2 = powers[step, beta1, beta2]
            converted[key] = {
                "step": step,
                "beta1_power": power1,
                "beta2_power": power2,
                "m": state["exp_avg"],
                "v": state["exp_avg_sq"],
                "vhat": state["max_exp_avg_sq"],
            }
    return {**state_dict, "state": converted, "param_groups": converted_groups}
