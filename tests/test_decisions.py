"""Our decisions where MindSpore 2.10 is wrong or silent (SPEC, last table)."""

from __future__ import annotations

import numpy as np
import pytest

from amsgrad import apply_adam_with_amsgrad_v2 as apply_op
from helpers import DOC_HYPER, assert_bits_equal

# Each test runs on every backend: native at each instruction-set level, and NumPy.
pytestmark = pytest.mark.usefixtures("each_backend")

DTYPES = [np.float16, np.float32, np.float64]


def _state(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    var, m, grad = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    v, vhat = (np.abs(rng.standard_normal(shape)).astype(dtype) for _ in range(2))
    return [var, m, v, vhat, grad]


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_dimensional_var_works_elementwise(dtype):
    zero_d = [a.reshape(()) for a in _state((1,), dtype)]
    one_d = [a.reshape(1).copy() for a in zero_d]
    apply_op(*zero_d[:4], *DOC_HYPER, zero_d[4])
    apply_op(*one_d[:4], *DOC_HYPER, one_d[4])
    for got, want in zip(zero_d[:4], one_d[:4], strict=True):
        assert got.shape == ()
        assert_bits_equal(got.reshape(1), want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("position", range(6))
def test_single_element_arrays_are_scalars(dtype, position):
    scalar_call = _state((3, 4), dtype)
    array_call = [a.copy() for a in scalar_call]
    hypers = [np.asarray(h, dtype) for h in DOC_HYPER]
    shaped = list(hypers)
    shaped[position] = hypers[position].reshape((1,) * (position % 3 + 1))
    apply_op(*scalar_call[:4], *hypers, scalar_call[4])
    apply_op(*array_call[:4], *shaped, array_call[4])
    for got, want in zip(array_call[:4], scalar_call[:4], strict=True):
        assert_bits_equal(got, want)


@pytest.mark.parametrize("position", range(6))
def test_every_hyper_parameter_can_be_batched_per_row(position):
    shape = (3, 5)
    state = _state(shape, np.float32)
    per_row = np.array([0.3, 0.6, 0.9], np.float32)
    hypers = list(DOC_HYPER)
    hypers[position] = per_row
    batched = [a.copy() for a in state]
    apply_op(*batched[:4], *hypers, batched[4])
    for row in range(3):
        single = [a[row].copy() for a in state]
        row_hypers = list(DOC_HYPER)
        row_hypers[position] = per_row[row : row + 1]
        apply_op(*single[:4], *row_hypers, single[4])
        for got, want in zip(batched[:4], single[:4], strict=True):
            assert_bits_equal(got[row], want)
    # the rows really differ: the batch is not silently reduced to its first row
    first_row_only = [a.copy() for a in state]
    hypers[position] = per_row[0]
    apply_op(*first_row_only[:4], *hypers, first_row_only[4])
    assert not np.array_equal(first_row_only[0][1:], batched[0][1:])


def test_multi_element_hyper_parameter_that_is_not_a_batch_is_refused():
    state = _state((5,), np.float32)
    before = [a.copy() for a in state]
    with pytest.raises(ValueError, match=r"beta1 .*prefix"):
        apply_op(
            *state[:4], 0.9, 0.999, 0.01, np.array([0.9, 0.8], np.float32), 0.999, 1e-8, state[4]
        )
    for got, want in zip(state, before, strict=True):
        assert_bits_equal(got, want)


def test_python_float_goes_through_float32_and_int_is_exact():
    one = [np.zeros(1, np.float64) for _ in range(4)]
    grad = np.ones(1, np.float64)
    # lr enters only as lr_t * m: with m = 1 - beta1 = 1 after one step, var = -lr / (1 + eps)
    apply_op(*one, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, grad)
    assert one[0][0] == -float(np.float32(0.1))
    exact = [np.zeros(1, np.float64) for _ in range(4)]
    apply_op(*exact, 0.0, 0.0, 2**40 + 1, 0.0, 0.0, 0.0, grad)
    assert exact[0][0] == -(2.0**40 + 1)


def test_float16_scalar_double_rounding_rule():
    state = [np.zeros(1, np.float16) for _ in range(4)]
    apply_op(*state, 0.0, 0.0, 1 + 2**-11 + 2**-40, 0.0, 0.0, 0.0, np.ones(1, np.float16))
    assert state[0][0] == np.float16(-1.0)


def test_size_zero_is_accepted_and_checked():
    state = [np.zeros((3, 0), np.float32) for _ in range(5)]
    apply_op(*state[:4], *DOC_HYPER, state[4])
    with pytest.raises(ValueError, match="grad"):
        apply_op(*state[:4], *DOC_HYPER, np.zeros((0, 3), np.float32))
