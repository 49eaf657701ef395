"""Helpers shared by the test files: bit comparison and the documentation example's state."""

from __future__ import annotations

import numpy as np

UINT_OF = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits_equal(actual: np.ndarray, expected: np.ndarray) -> bool:
    """True when the arrays have one dtype and shape and equal bits, any NaN equal to any NaN."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.dtype != expected.dtype or actual.shape != expected.shape:
        return False
    both_nan = np.isnan(actual) & np.isnan(expected)
    uint = UINT_OF[actual.dtype.itemsize]
    same = actual.view(uint) == expected.view(uint)
    return bool(np.all(same | both_nan))


def assert_bits_equal(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    assert bits_equal(actual, expected), (
        f"{what}: bits differ\nactual={np.asarray(actual)!r}\nexpected={np.asarray(expected)!r}"
    )


def doc_state(dtype=np.float32):
    """The documentation example's var, m, v, vhat and grad."""
    var = np.array([[0.2, 0.2], [0.2, 0.2]], dtype)
    m = np.array([[0.1, 0.2], [0.4, 0.3]], dtype)
    v = np.array([[0.2, 0.1], [0.3, 0.4]], dtype)
    vhat = np.array([[0.1, 0.2], [0.6, 0.2]], dtype)
    grad = np.array([[0.4, 0.2], [0.2, 0.3]], dtype)
    return var, m, v, vhat, grad


DOC_HYPER = (0.9, 0.999, 0.01, 0.8, 0.999, 1e-8)  # beta1_power, beta2_power, lr, beta1, beta2, eps
