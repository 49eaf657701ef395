"""The functional NumPy API: the operator on NumPy arrays, updated in place."""

from __future__ import annotations

from typing import Any

import numpy as np

from amsgrad.core import contract as _contract
from amsgrad.core import kernel as _kernel

__all__ = ["apply_adam_with_amsgrad_v2", "apply_adam_with_amsgrad_v2_many"]


def apply_adam_with_amsgrad_v2(
    var: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    vhat: np.ndarray,
    beta1_power: Any,
    beta2_power: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    epsilon: Any,
    grad: np.ndarray,
    *,
    use_locking: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One AMSGrad step of MindSpore's ApplyAdamWithAmsgradV2, in place; returns (var, m, v, vhat).

    var, m, v, vhat: writeable arrays of one dtype (float16, float32 or float64) and shape.
    grad: an array of var's shape (lower-precision float, int and bool dtypes are converted).
    Hyper-parameters: Python or NumPy scalars (floats rounded through float32), single-element
    arrays, or arrays whose shape is a leading prefix of var's shape (one value per row).
    use_locking: when True, calls whose vars overlap in memory are serialized (the lock is keyed
    on var's bytes, so views made separately over one buffer share it).

    Raises TypeError, :class:`amsgrad.DtypeConversionError` or ValueError naming the argument;
    nothing is written when it raises. The result is bit-exact to MindSpore 2.10 CPU.
    """
    hypers = (beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    fast = _kernel.fast_apply  # the common call checked in C, or declined (False)
    if fast is not None and use_locking is False and fast(var, m, v, vhat, *hypers, grad):
        return var, m, v, vhat
    locking = _contract.check_use_locking(use_locking)
    plan = _contract.resolve(var, m, v, vhat, hypers, grad)
    try:
        if locking:
            with _contract.lock_for(plan.var):
                _kernel.execute(plan)
        else:
            _kernel.execute(plan)
    except _contract.OverlapUndecidedError as error:
        first, second = (_contract.ARRAY_ROLES[k] for k in error.pair)
        raise _contract.undecided_error(first, second) from None
    return var, m, v, vhat


def apply_adam_with_amsgrad_v2_many(
    vars: list[np.ndarray],
    ms: list[np.ndarray],
    vs: list[np.ndarray],
    vhats: list[np.ndarray],
    beta1_power: Any,
    beta2_power: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    epsilon: Any,
    grads: list[np.ndarray],
    *,
    use_locking: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The operator on lists of arrays (each its own shape, all one dtype) in one call.

    Equivalent to calling :func:`apply_adam_with_amsgrad_v2` on each quintuple with the same
    scalar hyper-parameters, with one argument check and one pass into the native kernel. Every
    list is checked before any array is written. Grads are only read: several tensors may share
    one. With ``use_locking``, the memory of all vars is locked at once for the whole call.
    Returns (vars, ms, vs, vhats).
    """
    locking = _contract.check_use_locking(use_locking)
    hypers = (beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    if not locking and _kernel.try_many_unchecked((vars, ms, vs, vhats, grads), hypers):
        return vars, ms, vs, vhats
    plan = _contract.resolve_many(vars, ms, vs, vhats, hypers, grads)
    if locking:
        with _contract.lock_many(plan.vars):  # all at once: no deadlock between calls
            _run_many(plan)
    else:
        _run_many(plan)
    return vars, ms, vs, vhats


def _run_many(plan: _contract.ManyPlan) -> None:
    """Run a multi-tensor call checked by :func:`amsgrad.core.contract.resolve_many`.

    Grads that share memory with each other (one gradient for several tensors) are allowed: the
    kernels refuse any sharing, so such grads are copied and the call is run again (the kernels
    write nothing when they refuse)."""
    count = len(plan.vars)
    try:
        _kernel.execute_many(plan)
    except _contract.OverlapUndecidedError as error:
        first, second = (_contract.many_names(count, k) for k in error.pair)
        raise _contract.undecided_error(first, second) from None
    except ValueError:
        separated = _contract.separate_grads(plan)  # raises the error of a state array
        if separated is None:
            raise
        _kernel.execute_many(separated)
