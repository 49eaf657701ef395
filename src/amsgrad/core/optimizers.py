"""The checks of the optimizers built on the operator (PyTorch's AMSGradV2, Optax's amsgrad_v2).

The operator itself computes whatever MindSpore computes for any hyper-parameters; an optimizer
knows more (its hyper-parameters are fixed ranges, its parameters' dtype is known), so it refuses
values that cannot train: :func:`check_optimizer_hyper` (ranges, when it is built) and
:func:`check_hyper_in_dtype` (values that the parameters' dtype rounds to a degenerate update).
One message per mistake for every optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from amsgrad.core.contract import OPTIMIZER_NAMES, refused_scalar_error, scalar_to_dtype
from amsgrad.core.dtypes import NP_SCALAR_TYPES

__all__ = [
    "as_number",
    "centralizes",
    "check_decay",
    "check_hyper_in_dtype",
    "check_optimizer_hyper",
]


def as_number(value: Any) -> float | None:
    """A Python int or float or a NumPy integer or floating scalar (not a bool) as a float;
    None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def check_optimizer_hyper(
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    *,
    names: Sequence[str] = OPTIMIZER_NAMES,
    where: str = "",
    read: Callable[[Any], float | None] = as_number,
    finite: bool = False,
) -> None:
    """The range checks of an optimizer built on the operator: lr >= 0, beta1 and beta2 in
    [0, 1), eps >= 0 (NaN fails them all); with ``finite``, lr and eps also finite (an inf lr
    or eps makes every update inf, NaN or 0).

    ``names`` are how the optimizer's own signature spells (lr, beta1, beta2, eps), e.g.
    ``("learning_rate", "b1", "b2", "eps")``; ``where`` prefixes them (``"param_groups[1]: "``);
    ``read`` turns a value into a float, None when it is not a number (default
    :func:`as_number`; an adapter passes one that also reads its one-element tensors). Raises
    ValueError ``"{where}{name}: expected a number >= 0, got {value!r}"`` (``a finite number
    >= 0`` for an inf refused by ``finite``; ``a number in [0, 1)`` for the betas), one message
    for every optimizer, or TypeError for a NumPy scalar kind that the operator refuses (as
    :func:`scalar_to_dtype` would at the first update).
    """
    for index, value in enumerate((lr, beta1, beta2, eps)):
        shown = f"{where}{names[index]}"
        if isinstance(value, np.generic) and type(value) not in NP_SCALAR_TYPES:
            raise refused_scalar_error(shown, value)
        number = read(value)
        if index in (1, 2):
            if number is None or not 0 <= number < 1:
                raise ValueError(f"{shown}: expected a number in [0, 1), got {value!r}")
        elif number is None or not number >= 0:
            raise ValueError(f"{shown}: expected a number >= 0, got {value!r}")
        elif finite and number == float("inf"):
            raise ValueError(f"{shown}: expected a finite number >= 0, got {value!r}")


def check_hyper_in_dtype(
    beta1: Any,
    beta2: Any,
    eps: Any,
    dtype: Any,
    *,
    names: Sequence[str] = OPTIMIZER_NAMES,
    where: str = "",
    rounded: Callable[[str, Any], float] | None = None,
    read: Callable[[Any], float | None] = as_number,
    lr: Any = None,
    advice: str | None = None,
) -> None:
    """Refuse hyper-parameters that the parameters' dtype turns into a degenerate update.

    An optimizer knows its parameters' dtype (the operator does not judge: it computes what
    MindSpore computes). A beta below 1 that rounds to 1 makes ``1 - beta`` zero, so that moment
    never moves (with beta2, v stays 0 and the steps blow up); an eps above 0 that rounds to 0
    divides by zero wherever vhat is 0 (NaN on the first step for a zero gradient). ``rounded``
    converts a value to ``dtype`` and back to a float (default: :func:`scalar_to_dtype`, for the
    NumPy dtypes); ``names``, ``where`` and ``read`` are those of :func:`check_optimizer_hyper`.
    An ``lr`` or eps that overflows to inf in ``dtype`` (``lr=1e5`` in float16) makes every
    update inf or NaN; ``lr`` is checked when given (a number; a schedule is not).
    ``advice``: what the message tells the user to do (default: keep float32 master weights).
    Raises ValueError naming the hyper-parameter, its value and the dtype.
    """
    if rounded is None:
        convert = np.dtype(dtype)

        def rounded(name: str, value: Any) -> float:
            return float(scalar_to_dtype(name, value, convert))

    if advice is None:
        advice = (
            f"keep float32 master weights (let the optimizer update a float32 copy of the "
            f"parameters and cast it to {dtype} for the model)"
        )
    for index, value in ((1, beta1), (2, beta2)):
        number = read(value)
        if number is not None and number < 1 and rounded(names[index], number) >= 1:
            raise ValueError(
                f"{where}{names[index]}: {value!r} rounds to 1 in {dtype}, so 1 - beta is 0 and "
                f"the {'first' if index == 1 else 'second'} moment never changes (the updates "
                f"diverge); {advice}, or pass a value below 1 in {dtype}"
            )
    for index, value in ((0, lr), (3, eps)):
        number = None if value is None else read(value)
        if number is not None and np.isfinite(number) and np.isinf(rounded(names[index], number)):
            raise ValueError(
                f"{where}{names[index]}: {value!r} overflows {dtype} (to inf), so every update "
                f"is inf or NaN; {advice}, or pass a value that {dtype} can hold"
            )
    number = read(eps)
    if number is not None and number > 0 and rounded(names[3], number) == 0:
        raise ValueError(
            f"{where}{names[3]}: {eps!r} rounds to 0 in {dtype}, so the update divides by zero "
            f"where vhat is 0 (NaN at the first step for a zero gradient); {advice}, or pass "
            f"an eps that {dtype} can hold"
        )


def check_decay(where: str, weight_decay: Any, loss_scale: Any) -> None:
    """``weight_decay`` a finite number >= 0 and ``loss_scale`` a finite number > 0 (plain
    numbers: MindSpore builds its float32 factors from them once), whose float32 factors
    (``loss_scale``, ``1 / loss_scale`` and ``weight_decay * loss_scale``) are finite and the
    reciprocal not 0: otherwise every update is inf or NaN, or the gradients vanish."""
    checks = (("weight_decay", weight_decay, True), ("loss_scale", loss_scale, False))
    for name, value, low_ok in checks:
        number = as_number(value)
        if (
            isinstance(value, bool)
            or number is None
            or not np.isfinite(number)
            or number < 0
            or (number == 0 and not low_ok)
        ):
            bound = ">= 0" if low_ok else "> 0"
            raise ValueError(f"{where}{name}: expected a finite number {bound}, got {value!r}")
    decay, scale = float(weight_decay), float(loss_scale)
    with np.errstate(over="ignore", under="ignore"):
        factors = (
            ("loss_scale", np.float32(scale), f"{loss_scale!r}"),
            ("loss_scale", np.float32(1.0 / scale), f"1 / {loss_scale!r}"),
            ("weight_decay", np.float32(decay * scale), f"{weight_decay!r} * {loss_scale!r}"),
        )
    for name, factor, shown in factors:
        if not np.isfinite(factor) or (factor == 0 and shown.startswith("1 /")):
            raise ValueError(
                f"{where}{name}: {shown} is {'0' if factor == 0 else 'inf'} in float32, the "
                "dtype MindSpore computes the loss scale and decay factors in; expected a "
                "loss_scale whose reciprocal float32 holds, and weight_decay * loss_scale "
                f"below {float(np.finfo(np.float32).max):.7g}"
            )


def centralizes(shape: Sequence[int]) -> bool:
    """Whether MindSpore's gradient centralization (the ``grad_centralization`` group option)
    changes a gradient of this shape: rank >= 2 and ``shape[1]`` a multiple of 16 (others pass
    unchanged)."""
    return len(shape) >= 2 and shape[1] % 16 == 0
