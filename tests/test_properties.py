"""Property tests: the operator equals a reference written straight from the SPEC's formula.

The reference here converts the hyper-parameters itself (Python floats through float32, ints
exactly, arrays by astype) and evaluates the formula with NumPy, one rounding per operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import amsgrad
from helpers import assert_bits_equal

# Each test runs on every backend: native at each instruction-set level, and NumPy.
pytestmark = pytest.mark.usefixtures("each_backend")

# How many examples each property test draws, as a multiple of its default (the slow test below
# reruns this file with a larger one).
SCALE = int(os.environ.get("AMSGRAD_PROPERTY_SCALE", "1"))

DTYPES = [np.float16, np.float32, np.float64]
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 6e-8, 1e30, 65504.0, 1e300]


def _sqrt64(x, dtype):
    return np.sqrt(np.asarray(x, np.float64)).astype(dtype)


def spec_formula(var, m, v, vhat, b1p, b2p, lr, b1, b2, eps, grad):
    """SPEC.md, 'Arithmetic', line by line; every input already of var's dtype."""
    t = var.dtype.type
    with np.errstate(all="ignore"):
        lr_t = t(t(lr * _sqrt64(t(t(1) - b2p), var.dtype)) / t(t(1) - b1p))
        m = m + (grad - m) * t(t(1) - b1)
        v = v + (grad * grad - v) * t(t(1) - b2)
        vhat = np.where(vhat < v, v, vhat)
        var = var - (lr_t * m) / (_sqrt64(vhat, var.dtype) + eps)
    return var, m, v, vhat


def convert_scalar(value, dtype):
    with np.errstate(over="ignore"):
        if isinstance(value, (bool, int)):
            return np.float64(value).astype(dtype)
        return np.float32(value).astype(dtype)


def special(dtype):
    """SPECIAL as an array of ``dtype`` holds them (1e300 is inf in float16): converted here, on
    purpose, rather than by an overflowing assignment inside Hypothesis."""
    with np.errstate(over="ignore", under="ignore"):
        return [dtype(x) for x in SPECIAL]


def arrays(dtype, shape):
    return hnp.arrays(
        dtype,
        shape,
        elements=st.one_of(
            st.floats(-10, 10, width=16 if dtype == np.float16 else 32),
            st.sampled_from(special(dtype)),
        ),
    )


hyper_scalar = st.one_of(
    st.floats(0, 1, exclude_max=True, width=32),
    st.floats(-2, 2),
    st.sampled_from([0, 1, True, False, 0.1, 1e-8, 1e-3, np.inf, np.nan, 1e39]),
)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    state = [draw(arrays(dtype, shape)) for _ in range(5)]
    hypers = [draw(hyper_scalar) for _ in range(6)]
    return dtype, state, hypers


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_operator_equals_spec_formula(case):
    dtype, (var, m, v, vhat, grad), hypers = case
    expected = spec_formula(var, m, v, vhat, *(convert_scalar(h, dtype) for h in hypers), grad)
    result = amsgrad.apply_adam_with_amsgrad_v2(var, m, v, vhat, *hypers, grad)
    assert result[0] is var
    for name, got, want in zip(("var", "m", "v", "vhat"), result, expected, strict=True):
        assert_bits_equal(got, np.asarray(want, dtype), name)


@settings(max_examples=150 * SCALE, deadline=None)
@given(
    st.sampled_from(DTYPES),
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    st.data(),
)
def test_batched_hyper_parameters_equal_row_by_row_calls(dtype, shape, data):
    depth = data.draw(st.integers(1, len(shape)))
    rows_shape = shape[:depth]
    state = [data.draw(arrays(dtype, shape)) for _ in range(5)]
    hypers = []
    for _ in range(6):
        if data.draw(st.booleans()):
            hypers.append(
                data.draw(hnp.arrays(dtype, rows_shape, elements=st.floats(0, 0.5, width=16)))
            )
        else:
            hypers.append(data.draw(st.floats(0, 0.5, width=32)))
    batched = [a.copy() for a in state]
    amsgrad.apply_adam_with_amsgrad_v2(*batched[:4], *hypers, batched[4])
    for index in np.ndindex(*rows_shape):
        row = [a[(*index, ...)].copy() for a in state]
        row_hypers = [h[index] if isinstance(h, np.ndarray) else h for h in hypers]
        amsgrad.apply_adam_with_amsgrad_v2(*row[:4], *row_hypers, row[4])
        for got, want in zip(batched[:4], row[:4], strict=True):
            assert_bits_equal(got[(*index, ...)], want)


@settings(max_examples=100 * SCALE, deadline=None)
@given(
    st.sampled_from(DTYPES),
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7),
    st.data(),
)
def test_strided_views_equal_contiguous_copies(dtype, shape, data):
    big = [data.draw(arrays(dtype, tuple(2 * s for s in shape))) for _ in range(5)]
    expected = [a.copy() for a in big]
    every_other = tuple(slice(None, None, 2) for _ in shape)
    views = [a[every_other] for a in big]
    copies = [np.ascontiguousarray(v) for v in views]
    hypers = (0.9, 0.99, 0.01, 0.9, 0.999, 1e-8)
    amsgrad.apply_adam_with_amsgrad_v2(*views[:4], *hypers, views[4])
    amsgrad.apply_adam_with_amsgrad_v2(*copies[:4], *hypers, copies[4])
    for whole, want, copy in zip(big[:4], expected[:4], copies[:4], strict=True):
        want[every_other] = copy  # the strided elements updated, every other one untouched
        assert_bits_equal(whole, want)


@pytest.mark.slow
def test_long_property_run():
    """This file's property tests with three times the examples, on every backend (CI runs it)."""
    env = dict(os.environ, AMSGRAD_PROPERTY_SCALE="3")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            __file__,
        ],
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
