"""Bad input: the right exception, a message naming the argument, and nothing written."""

from __future__ import annotations

import numpy as np
import pytest

import amsgrad
from amsgrad import apply_adam_with_amsgrad_v2 as apply_op
from helpers import DOC_HYPER, assert_bits_equal, doc_state

# Each test runs on every backend: native at each instruction-set level, and NumPy.
pytestmark = pytest.mark.usefixtures("each_backend")

NAMES = (
    "var",
    "m",
    "v",
    "vhat",
    "beta1_power",
    "beta2_power",
    "lr",
    "beta1",
    "beta2",
    "epsilon",
    "grad",
)


def _args(dtype=np.float32):
    var, m, v, vhat, grad = doc_state(dtype)
    return dict(zip(NAMES, (var, m, v, vhat, *DOC_HYPER, grad), strict=True))


def _call_and_check_untouched(args, expected_type, must_name):
    state = [args[name] for name in ("var", "m", "v", "vhat")]
    before = [np.array(a, copy=True) for a in state if isinstance(a, np.ndarray)]
    with pytest.raises(expected_type) as info:
        apply_op(*(args[name] for name in NAMES))
    message = str(info.value)
    assert must_name in message, message
    after = [a for a in state if isinstance(a, np.ndarray)]
    for old, new in zip(before, after, strict=True):
        assert_bits_equal(new, old, "state written on error")
    return message


@pytest.mark.parametrize(
    ("name", "value", "expected_type"),
    [
        ("lr", "0.01", TypeError),
        ("lr", None, TypeError),
        ("beta1", [0.9], TypeError),
        ("beta2", (0.9,), TypeError),
        ("epsilon", 1e-8 + 0j, TypeError),
        ("beta1_power", np.complex64(1), TypeError),
        ("grad", [[0.1, 0.2], [0.3, 0.4]], TypeError),
        ("grad", np.ones((2, 2), np.complex64), TypeError),
        ("lr", np.array(0.1, dtype=object), TypeError),
        ("var", np.ones((2, 2), np.int32), TypeError),
        ("var", [[0.2, 0.2], [0.2, 0.2]], TypeError),
        ("m", np.ones((2, 2), np.int32), TypeError),
    ],
)
def test_type_errors_name_the_argument(name, value, expected_type):
    args = _args()
    args[name] = value
    message = _call_and_check_untouched(args, expected_type, name)
    assert "expected" in message and "got" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("grad", np.ones((2, 2), np.float64)),
        ("lr", np.array(0.01, np.float64)),
        ("epsilon", np.array([1e-8], np.float64)),
        ("m", np.ones((2, 2), np.float64)),
        ("vhat", np.ones((2, 2), np.float16)),
    ],
)
def test_forbidden_conversion(name, value):
    args = _args()
    args[name] = value
    _call_and_check_untouched(args, amsgrad.DtypeConversionError, name)
    assert issubclass(amsgrad.DtypeConversionError, TypeError)
    assert issubclass(amsgrad.DtypeConversionError, RuntimeError)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("m", np.ones((2, 3), np.float32)),
        ("v", np.ones((4,), np.float32)),
        ("vhat", np.ones((2, 2, 1), np.float32)),
        ("grad", np.ones((1, 2), np.float32)),
        ("beta1", np.array([0.9, 0.8, 0.7], np.float32)),
        ("lr", np.ones((2, 2, 2), np.float32)),
        ("epsilon", np.ones((3,), np.float32)),
    ],
)
def test_shape_errors(name, value):
    args = _args()
    args[name] = value
    message = _call_and_check_untouched(args, ValueError, name)
    assert "shape" in message


@pytest.mark.parametrize(
    ("first", "second"),
    [("var", "m"), ("m", "v"), ("v", "vhat"), ("vhat", "grad"), ("var", "grad")],
)
@pytest.mark.parametrize("contiguous", [True, False])
def test_shared_memory_is_refused(first, second, contiguous):
    args = _args()
    if contiguous:
        shared = np.full((2, 2), 0.25, np.float32)
        args[first], args[second] = shared, shared[:]
    else:
        base = np.full((2, 4), 0.25, np.float32)
        args[first], args[second] = base[:, 0:2], base[:, 1:3]  # both strided, column 1 shared
    message = _call_and_check_untouched(args, ValueError, first)
    assert second in message and "share memory" in message


def test_interleaved_views_do_not_count_as_shared():
    base = np.full((2, 4), 0.2, np.float32)
    var, m = base[:, 0::2], base[:, 1::2]
    m[...] = 0.1
    _, _, v, vhat, grad = doc_state()
    apply_op(var, m, v, vhat, *DOC_HYPER, grad)
    expected_var, expected_m, *_ = doc_state()
    expected_m[...] = 0.1
    apply_op(expected_var, expected_m, *doc_state()[2:4], *DOC_HYPER, doc_state()[4])
    assert_bits_equal(var, expected_var)
    assert_bits_equal(m, expected_m)


@pytest.mark.parametrize("name", ["var", "m", "v", "vhat"])
def test_read_only_state_is_refused(name):
    args = _args()
    args[name].flags.writeable = False
    message = _call_and_check_untouched(args, ValueError, name)
    assert "read-only" in message


def test_read_only_grad_is_fine():
    args = _args()
    args["grad"].flags.writeable = False
    apply_op(*(args[name] for name in NAMES))


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_use_locking_must_be_bool(value):
    args = _args()
    before = args["var"].copy()
    with pytest.raises(TypeError, match="use_locking"):
        apply_op(*(args[name] for name in NAMES), use_locking=value)
    assert_bits_equal(args["var"], before)
    with pytest.raises(TypeError, match="use_locking"):
        amsgrad.ops.ApplyAdamWithAmsgradV2(value)


def test_error_in_late_argument_writes_nothing_even_for_large_arrays():
    n = 100_000
    var, m, v, vhat = (np.full(n, 0.5, np.float32) for _ in range(4))
    grad = np.ones(n + 1, np.float32)
    with pytest.raises(ValueError, match="grad"):
        apply_op(var, m, v, vhat, *DOC_HYPER, grad)
    assert np.all(var == np.float32(0.5)) and np.all(m == np.float32(0.5))
