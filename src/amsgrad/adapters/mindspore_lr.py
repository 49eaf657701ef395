"""MindSpore's learning-rate helpers without MindSpore: ``amsgrad.nn.dynamic_lr`` and the
``LearningRateSchedule`` cells, as values an optimizer of this package takes.

* The seven functions of ``mindspore.nn.dynamic_lr`` (``piecewise_constant_lr``,
  ``exponential_decay_lr``, ``natural_exp_decay_lr``, ``inverse_decay_lr``,
  ``cosine_decay_lr``, ``polynomial_decay_lr``, ``warmup_lr``) return the same lists of Python
  floats, bit for bit (the same operations in the same order, in Python floats), for
  ``AMSGradV2(lr=[...])`` or ``amsgrad_v2(learning_rate=[...])``, which read ``float32(lr[t])``
  at step t as MindSpore does.
* :func:`schedule_values` evaluates a ``LearningRateSchedule`` cell (``ExponentialDecayLR``,
  ``NaturalExpDecayLR``, ``InverseDecayLR``, ``CosineDecayLR``, ``PolynomialDecayLR``,
  ``WarmUpLR``) at steps 0..n-1 in float32, each operation rounded to float32 as MindSpore's
  CPU graph does (a number divided by a tensor is a multiplication by its reciprocal there).
  ``pow`` and ``sin`` are the C library's ``powf`` and ``sinf`` where it can be loaded (the
  functions MindSpore's CPU kernels call; glibc's ``powf`` is not correctly rounded, and the
  golden data catches the difference), else float64 rounded once to float32.

``tests/golden/lr_schedules.json`` holds MindSpore 2.10's own values for many argument sets;
``tests/test_mindspore_lr.py`` compares every one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "SCHEDULES",
    "cosine_decay_lr",
    "exponential_decay_lr",
    "inverse_decay_lr",
    "natural_exp_decay_lr",
    "piecewise_constant_lr",
    "polynomial_decay_lr",
    "schedule_values",
    "warmup_lr",
]

_F32 = np.float32


def _positive_int(name: str, value: Any) -> int:
    """An int > 0 (not a bool): TypeError for another type, ValueError for a value <= 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int > 0, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: expected an int > 0, got {value!r}")
    return value


def _float(name: str, value: Any, low: float | None = 0.0, strict: bool = True) -> float:
    """A finite Python float (MindSpore refuses ints and bools here) above ``low`` (or at it,
    not ``strict``; no bound with None): TypeError for another type, ValueError otherwise."""
    bound = "" if low is None else f" {'>' if strict else '>='} {low}"
    if not isinstance(value, float):
        raise TypeError(f"{name}: expected a float{bound}, got {value!r}")
    if not math.isfinite(value) or (low is not None and (value < low or (strict and value == low))):
        raise ValueError(f"{name}: expected a finite float{bound}, got {value!r}")
    return value


def _non_negative(name: str, value: Any) -> float:
    return _float(name, value, strict=False)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return value


def _lr_range(min_lr: float, max_lr: float) -> None:
    if min_lr >= max_lr:
        raise ValueError(f"max_lr: expected a float > min_lr ({min_lr}), got {max_lr!r}")


def _decay_args(
    learning_rate: Any,
    decay_rate: Any,
    total_step: Any,
    step_per_epoch: Any,
    decay_epoch: Any,
    is_stair: Any,
) -> tuple[float, float, int, int, int, bool]:
    return (
        _float("learning_rate", learning_rate),
        _float("decay_rate", decay_rate),
        _positive_int("total_step", total_step),
        _positive_int("step_per_epoch", step_per_epoch),
        _positive_int("decay_epoch", decay_epoch),
        _bool("is_stair", is_stair),
    )


def piecewise_constant_lr(milestone: Sequence[int], learning_rates: Sequence[float]) -> list[float]:
    """``learning_rates[k]`` for the steps from ``milestone[k-1]`` (0 for k = 0) up to
    ``milestone[k]``; ``milestone`` increasing ints > 0, one per learning rate."""
    if not isinstance(milestone, (list, tuple)) or not isinstance(learning_rates, (list, tuple)):
        raise TypeError("milestone and learning_rates: expected lists or tuples")
    if len(milestone) != len(learning_rates):
        raise ValueError(
            f"milestone has {len(milestone)} items and learning_rates {len(learning_rates)}: "
            "expected one learning rate per milestone"
        )
    values: list[float] = []
    previous = 0
    for index, (end, rate) in enumerate(zip(milestone, learning_rates, strict=True)):
        _positive_int(f"milestone[{index}]", end)
        _float(f"learning_rates[{index}]", rate, low=None)
        if end < previous:
            raise ValueError(
                f"milestone[{index}] = {end} is below milestone[{index - 1}] = {previous}: "
                "expected increasing milestones"
            )
        values.extend([rate] * (end - previous))
        previous = end
    return values


def exponential_decay_lr(
    learning_rate: float,
    decay_rate: float,
    total_step: int,
    step_per_epoch: int,
    decay_epoch: int,
    is_stair: bool = False,
) -> list[float]:
    """``learning_rate * decay_rate ** (epoch / decay_epoch)`` per step, with
    ``epoch = floor(step / step_per_epoch)`` (the exponent floored too with ``is_stair``)."""
    lr, rate, total, per_epoch, epochs, stair = _decay_args(
        learning_rate, decay_rate, total_step, step_per_epoch, decay_epoch, is_stair
    )
    values = []
    for step in range(total):
        epoch = math.floor(step / per_epoch)
        exponent = math.floor(epoch / epochs) if stair else epoch / epochs
        values.append(lr * rate**exponent)
    return values


def natural_exp_decay_lr(
    learning_rate: float,
    decay_rate: float,
    total_step: int,
    step_per_epoch: int,
    decay_epoch: int,
    is_stair: bool = False,
) -> list[float]:
    """``learning_rate * e ** (-decay_rate * epoch)`` per step, with
    ``epoch = floor(step / step_per_epoch)`` (rounded down to a multiple of ``decay_epoch``
    with ``is_stair``)."""
    lr, rate, total, per_epoch, epochs, stair = _decay_args(
        learning_rate, decay_rate, total_step, step_per_epoch, decay_epoch, is_stair
    )
    values = []
    for step in range(total):
        epoch = math.floor(step / per_epoch)
        if stair:
            epoch = math.floor(epoch / epochs) * epochs
        values.append(lr * math.e ** (-rate * epoch))
    return values


def inverse_decay_lr(
    learning_rate: float,
    decay_rate: float,
    total_step: int,
    step_per_epoch: int,
    decay_epoch: int,
    is_stair: bool = False,
) -> list[float]:
    """``learning_rate / (1 + decay_rate * epoch / decay_epoch)`` per step, with
    ``epoch = floor(step / step_per_epoch)`` (``epoch / decay_epoch`` floored with
    ``is_stair``)."""
    lr, rate, total, per_epoch, epochs, stair = _decay_args(
        learning_rate, decay_rate, total_step, step_per_epoch, decay_epoch, is_stair
    )
    values = []
    for step in range(total):
        epoch = math.floor(step / per_epoch)
        if stair:
            values.append(lr / (1 + rate * math.floor(epoch / epochs)))
        else:
            values.append(lr / (1 + rate * epoch / epochs))
    return values


def cosine_decay_lr(
    min_lr: float, max_lr: float, total_step: int, step_per_epoch: int, decay_epoch: int
) -> list[float]:
    """``min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * epoch / decay_epoch))`` per step,
    with ``epoch = min(floor(step / step_per_epoch), decay_epoch)``."""
    low = _non_negative("min_lr", min_lr)
    high = _float("max_lr", max_lr)
    total = _positive_int("total_step", total_step)
    per_epoch = _positive_int("step_per_epoch", step_per_epoch)
    epochs = _positive_int("decay_epoch", decay_epoch)
    _lr_range(low, high)
    delta = 0.5 * (high - low)
    values = []
    for step in range(total):
        epoch = min(math.floor(step / per_epoch), epochs)
        values.append(low + delta * (1 + math.cos(math.pi * epoch / epochs)))
    return values


def polynomial_decay_lr(
    learning_rate: float,
    end_learning_rate: float,
    total_step: int,
    step_per_epoch: int,
    decay_epoch: int,
    power: float,
    update_decay_epoch: bool = False,
) -> list[float]:
    """``(learning_rate - end_learning_rate) * (1 - epoch / decay_epoch) ** power +
    end_learning_rate`` per step, with ``epoch = min(floor(step / step_per_epoch),
    decay_epoch)``; with ``update_decay_epoch`` the epoch is not clamped and ``decay_epoch``
    grows to the next multiple of itself instead."""
    lr = _float("learning_rate", learning_rate)
    end = _non_negative("end_learning_rate", end_learning_rate)
    exponent = _float("power", power)
    total = _positive_int("total_step", total_step)
    per_epoch = _positive_int("step_per_epoch", step_per_epoch)
    epochs = _positive_int("decay_epoch", decay_epoch)
    grow = _bool("update_decay_epoch", update_decay_epoch)
    delta = lr - end
    values = []
    for step in range(total):
        epoch = math.floor(step / per_epoch)
        if grow:
            span = epochs * max(math.ceil(epoch / epochs), 1)
        else:
            span, epoch = epochs, min(epochs, epoch)
        values.append(delta * (1 - epoch / span) ** exponent + end)
    return values


def warmup_lr(
    learning_rate: float, total_step: int, step_per_epoch: int, warmup_epoch: int
) -> list[float]:
    """``learning_rate * epoch / warmup_epoch`` per step, with
    ``epoch = min(floor(step / step_per_epoch), warmup_epoch)``; ``learning_rate`` may be 0."""
    lr = _non_negative("learning_rate", learning_rate)
    total = _positive_int("total_step", total_step)
    per_epoch = _positive_int("step_per_epoch", step_per_epoch)
    epochs = _positive_int("warmup_epoch", warmup_epoch)
    return [lr * min(math.floor(step / per_epoch), epochs) / epochs for step in range(total)]


# --------------------------------------------------------------------------- schedules


def _f32(value: float) -> np.float32:
    return _F32(value)


def _libm_float_function(name: str, arity: int) -> Callable[..., float] | None:
    """The C library's float function ``name`` (``powf``, ``sinf``), or None."""
    path = ctypes.util.find_library("m")
    if path is None:
        return None
    try:
        function = getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_float
    function.argtypes = [ctypes.c_float] * arity
    return function


_POWF = _libm_float_function("powf", 2)
_SINF = _libm_float_function("sinf", 1)


def _pow32(base: np.float32, exponent: np.float32) -> np.float32:
    if _POWF is not None:
        return _F32(_POWF(float(base), float(exponent)))
    return _F32(float(base) ** float(exponent))


def _sin32(angle: np.float32) -> np.float32:
    if _SINF is not None:
        return _F32(_SINF(float(angle)))
    return _F32(math.sin(float(angle)))


def _exponential(step: int, kw: dict[str, Any]) -> np.float32:
    p = _F32(step) / _f32(kw["decay_steps"])
    if kw.get("is_stair", False):
        p = np.floor(p)
    return _f32(kw["learning_rate"]) * _pow32(_f32(kw["decay_rate"]), p)


def _natural_exp(step: int, kw: dict[str, Any]) -> np.float32:
    p = _F32(step)
    if kw.get("is_stair", False):
        steps = _f32(kw["decay_steps"])
        p = np.floor(p / steps) * steps
    return _f32(kw["learning_rate"]) * _pow32(_f32(math.e), -_f32(kw["decay_rate"]) * p)


def _inverse(step: int, kw: dict[str, Any]) -> np.float32:
    p = _F32(step) / _f32(kw["decay_steps"])
    if kw.get("is_stair", False):
        p = np.floor(p)
    return _f32(kw["learning_rate"]) * (_F32(1) / (_F32(1) + _f32(kw["decay_rate"]) * p))


def _cosine(step: int, kw: dict[str, Any]) -> np.float32:
    steps = kw["decay_steps"]
    p = _F32(min(step, steps))
    delta = _f32(0.5 * (kw["max_lr"] - kw["min_lr"]))
    angle = _f32(math.pi) * (p / _f32(steps) + _F32(0.5))
    return _f32(kw["min_lr"]) + delta * (_F32(1) + _sin32(angle))


def _polynomial(step: int, kw: dict[str, Any]) -> np.float32:
    now, steps = _F32(step), _f32(kw["decay_steps"])
    if kw.get("update_decay_steps", False):
        steps = steps * max(np.ceil(now / steps), _F32(1))
    else:
        now = min(now, steps)
    p = now / steps
    diff = _f32(kw["learning_rate"] - kw["end_learning_rate"])
    return diff * _pow32(_F32(1) - p, _f32(kw["power"])) + _f32(kw["end_learning_rate"])


def _warmup(step: int, kw: dict[str, Any]) -> np.float32:
    steps = kw["warmup_steps"]
    return _f32(kw["learning_rate"]) * (_F32(min(step, steps)) / _f32(steps))


_Check = Callable[[str, Any], Any]
_DECAY: dict[str, _Check] = {
    "learning_rate": _float,
    "decay_rate": _float,
    "decay_steps": _positive_int,
}
#: Per schedule: its function, its required arguments and their checks, its optional ones
#: (MindSpore 2.10's validators in ``nn/learning_rate_schedule.py``).
_SPECS: dict[
    str, tuple[Callable[[int, dict[str, Any]], np.float32], dict[str, _Check], dict[str, _Check]]
] = {
    "ExponentialDecayLR": (_exponential, _DECAY, {"is_stair": _bool}),
    "NaturalExpDecayLR": (_natural_exp, _DECAY, {"is_stair": _bool}),
    "InverseDecayLR": (_inverse, _DECAY, {"is_stair": _bool}),
    "CosineDecayLR": (
        _cosine,
        {"min_lr": _non_negative, "max_lr": _float, "decay_steps": _positive_int},
        {},
    ),
    "PolynomialDecayLR": (
        _polynomial,
        {
            "learning_rate": _float,
            "end_learning_rate": _non_negative,
            "decay_steps": _positive_int,
            "power": _float,
        },
        {"update_decay_steps": _bool},
    ),
    "WarmUpLR": (_warmup, {"learning_rate": _non_negative, "warmup_steps": _positive_int}, {}),
}
#: The ``LearningRateSchedule`` cells :func:`schedule_values` evaluates, with their arguments.
SCHEDULES = {name: (spec[0], tuple(spec[1])) for name, spec in _SPECS.items()}


def _check_schedule_arguments(schedule: str, kwargs: dict[str, Any]) -> None:
    """Refuse missing, unknown or invalid arguments of ``schedule`` as MindSpore does."""
    _, required, optional = _SPECS[schedule]
    missing = [name for name in required if name not in kwargs]
    unknown = [name for name in kwargs if name not in required and name not in optional]
    if missing or unknown:
        accepted = ", ".join(required) + "".join(f", optionally {name}" for name in optional)
        raise TypeError(
            f"{schedule}: expected the arguments {accepted}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    checks = {**required, **optional}
    for name, value in kwargs.items():
        checks[name](name, value)
    if schedule == "CosineDecayLR":
        _lr_range(kwargs["min_lr"], kwargs["max_lr"])


def schedule_values(schedule: str, steps: int, **kwargs: Any) -> list[float]:
    """The learning rates of MindSpore's ``nn.<schedule>(**kwargs)`` at steps 0..steps-1, as
    Python floats holding float32 values (for ``lr=[...]``). The arguments are checked first,
    by MindSpore's rules (TypeError or ValueError naming the argument)."""
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    _positive_int("steps", steps)
    _check_schedule_arguments(schedule, kwargs)
    function = SCHEDULES[schedule][0]
    with np.errstate(over="ignore", under="ignore"):
        return [float(function(step, kwargs)) for step in range(steps)]
