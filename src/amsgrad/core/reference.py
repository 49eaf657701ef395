"""Reference arithmetic of ApplyAdamWithAmsgradV2, written straight from the SPEC in NumPy.

This module is the readable statement of what the operator computes. It is slow (one temporary
array per operation) and it is the judge the native kernel is tested against. Every input must
already be of the target dtype T (float16, float32 or float64) and broadcastable to var's shape;
argument checking and dtype resolution live in :mod:`amsgrad.core.contract`.

Rounding: NumPy evaluates each float16 operation in float32 and rounds the result to float16,
which is exactly the per-operation rounding the SPEC asks for; nothing is fused.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sqrt64", "step"]


def sqrt64(x: np.ndarray) -> np.ndarray:
    """Square root computed in float64 and rounded back to the dtype of ``x``."""
    x = np.asarray(x)
    return np.sqrt(x.astype(np.float64)).astype(x.dtype)


def step(
    var: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    vhat: np.ndarray,
    grad: np.ndarray,
    beta1_power: np.ndarray,
    beta2_power: np.ndarray,
    lr: np.ndarray,
    beta1: np.ndarray,
    beta2: np.ndarray,
    epsilon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One AMSGrad step; returns new ``(var, m, v, vhat)`` and leaves the inputs untouched.

    All arguments are arrays of one floating dtype T. Hyper-parameters are 0-d or shaped to
    broadcast against ``var`` (a per-row batch).
    """
    dtype = np.asarray(var).dtype
    one = np.asarray(1, dtype=dtype)
    with np.errstate(all="ignore"):
        lr_t = (lr * sqrt64(one - beta2_power)) / (one - beta1_power)
        m_new = m + (grad - m) * (one - beta1)
        v_new = v + (grad * grad - v) * (one - beta2)
        # A NaN in v keeps the old vhat (the comparison is false); a NaN in vhat stays.
        vhat_new = np.where(vhat < v_new, v_new, vhat)
        var_new = var - (lr_t * m_new) / (sqrt64(vhat_new) + epsilon)
    return (
        np.asarray(var_new, dtype=dtype),
        np.asarray(m_new, dtype=dtype),
        np.asarray(v_new, dtype=dtype),
        np.asarray(vhat_new, dtype=dtype),
    )
