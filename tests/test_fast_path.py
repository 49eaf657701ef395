"""The native fast path of the functional API (``_native.apply_fast``) against the full contract.

For many random argument sets, valid and invalid (shapes, dtypes, layouts, read-only and
overlapping arrays, scalar kinds: Python and NumPy floats, ints, bools, arrays, out-of-range and
non-finite values), the fast path either declines (returns False, writes nothing, raises
nothing) or gives exactly the bits of the full path, which must then accept the call without an
exception or a warning.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import amsgrad
from amsgrad.core import kernel

_native = pytest.importorskip("amsgrad.core._native")

DTYPES = (np.float16, np.float32, np.float64)


class Sub(np.ndarray):
    pass


class FloatSub(float):
    pass


def scalar(rng: np.random.Generator, dtype) -> object:
    value = float(rng.choice([0.9, 0.999, 1e-3, 0.5, 1e-8, 0.1, 3.0, -0.0, 1e-30, 7e4]))
    kind = int(rng.integers(0, 24))
    if kind < 8:
        return value
    options = [
        lambda: np.float64(value),
        lambda: np.float32(value),
        lambda: np.float16(value),
        lambda: 1,
        lambda: True,
        lambda: np.int64(2),
        lambda: np.bool_(False),
        lambda: np.array(value, dtype),
        lambda: np.array([value], np.float32),
        lambda: 1e39,
        lambda: float("nan"),
        lambda: float("inf"),
        lambda: np.float32("inf"),
        lambda: FloatSub(value),
        lambda: np.longdouble(value),
        lambda: 3.4028235e38,
    ]
    return options[kind - 8]()


def arrays(rng: np.random.Generator, dtype, shape) -> list[np.ndarray]:
    out = [rng.standard_normal(shape).astype(dtype) for _ in range(5)]
    out[2] = np.abs(out[2])
    out[3] = np.abs(out[3])
    return out


def perturb(rng: np.random.Generator, items: list[np.ndarray], dtype) -> None:
    """Maybe make one or two of the five arrays invalid or unusual for the fast path."""
    for _ in range(int(rng.integers(0, 3))):
        i = int(rng.integers(0, 5))
        a = items[i]
        if not isinstance(a, np.ndarray):
            continue
        kind = int(rng.integers(0, 10))
        if kind == 0:
            items[i] = a.astype(DTYPES[(DTYPES.index(dtype) + 1) % 3])
        elif kind == 1 and a.ndim:
            items[i] = np.repeat(a, 2, axis=-1)[..., ::2]  # strided view of the same shape
        elif kind == 2:
            a.flags.writeable = False
        elif kind == 3:
            items[i] = a.view(Sub)
        elif kind == 4 and a.size:
            items[i] = a.reshape(-1)[: a.size - 1] if a.ndim == 1 else a.reshape(-1)
        elif kind == 5:
            items[i] = items[int(rng.integers(0, 5))]  # shares memory with another
        elif kind == 6:
            items[i] = a.astype(a.dtype.newbyteorder(">"))
        elif kind == 7 and a.ndim == 2:
            items[i] = np.asfortranarray(a)
        elif kind == 8:
            items[i] = a.astype(np.int32)
        elif kind == 9:
            items[i] = a.tolist()


def full_path(args: list) -> None:
    saved = kernel.fast_apply
    kernel.fast_apply = None
    try:
        amsgrad.apply_adam_with_amsgrad_v2(*args)
    finally:
        kernel.fast_apply = saved


def snapshot(args: list) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in (args[0], args[1], args[2], args[3])]


def copy_args(args: list) -> list:
    # copies keep each array's layout and flags, and which arrays are the same object
    memo: dict[int, object] = {}

    def one(a: object) -> object:
        if not isinstance(a, np.ndarray):
            return a
        if id(a) not in memo:
            c = np.empty_like(a, order="K")
            if isinstance(a, Sub):
                c = c.view(Sub)
            c[...] = a
            if not a.flags.c_contiguous and a.ndim == 1 and a.size:
                c = np.repeat(c, 2)[::2]
            c.flags.writeable = a.flags.writeable
            memo[id(a)] = c
        return memo[id(a)]

    return [one(a) for a in args]


@pytest.mark.parametrize("level", [lv for lv in kernel.available_backends() if lv != "numpy"])
def test_fast_path_declines_or_equals_full_path(level):
    previous = kernel.selected_backend()
    kernel.select_backend(level)
    try:
        rng = np.random.default_rng(20240601)
        taken = declined = 0
        for trial in range(1500):
            dtype = DTYPES[trial % 3]
            shape = [(), (0,), (1,), (7,), (33,), (4, 5), (2, 3, 4), (300,)][trial % 8]
            items = arrays(rng, dtype, shape)
            if trial % 3 == 0:
                perturb(rng, items, dtype)
            scalars = [scalar(rng, dtype) for _ in range(6)] if trial % 2 else [0.5] * 6
            args = [*items[:4], *scalars, items[4]]
            before = snapshot(args)
            other = copy_args(args)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                ok = _native.apply_fast(*args)
            assert ok in (True, False)
            if not ok:
                declined += 1
                assert snapshot(args) == before, "declined but wrote"
                continue
            taken += 1
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                full_path(other)  # must accept the call: no exception, no warning
            assert snapshot(args) == snapshot(other), (trial, dtype, shape, scalars)
        assert taken > 300 and declined > 300, (taken, declined)
    finally:
        kernel.select_backend(previous)


def test_functional_call_takes_the_fast_path_and_falls_back_with_the_same_error():
    var, m, v, vhat, grad = arrays(np.random.default_rng(1), np.float32, (10,))
    assert _native.apply_fast(var, m, v, vhat, 0.5, 0.5, 1e-3, 0.9, 0.999, 1e-8, grad) is True
    with pytest.raises(ValueError, match=r"share memory|overlap"):
        amsgrad.apply_adam_with_amsgrad_v2(
            var, var, v, vhat, 0.5, 0.5, 1e-3, 0.9, 0.999, 1e-8, grad
        )
    with pytest.raises(TypeError, match="use_locking"):
        amsgrad.apply_adam_with_amsgrad_v2(
            var, m, v, vhat, 0.5, 0.5, 1e-3, 0.9, 0.999, 1e-8, grad, use_locking=1
        )
    assert _native.apply_fast(var, m, v, vhat, 0.5, 0.5, 1e-3, 0.9, 0.999, 1e-8) is False


def test_unpickled_float16_arrays_take_the_float16_rules():
    """An unpickled array's dtype equals float16 without being NumPy's float16 object (as
    arrays that come from another process): the same bits, and no FloatingPointError under
    np.errstate(all='raise') from eps = 1e-8 rounding to 0 (the SPEC's conversion, no error)."""
    rng = np.random.default_rng(5)
    start = [np.abs(rng.standard_normal(9)).astype(np.float16) for _ in range(5)]
    moved = pickle.loads(pickle.dumps(start))
    assert moved[0].dtype == np.float16 and moved[0].dtype is not np.dtype(np.float16)
    hyper = (0.5, 0.25, 1e-3, 0.9, 0.999, 1e-8)
    want = [a.copy() for a in start]
    amsgrad.apply_adam_with_amsgrad_v2(*want[:4], *hyper, want[4])
    calls = {
        "single": lambda a: amsgrad.apply_adam_with_amsgrad_v2(*a[:4], *hyper, a[4]),
        "locked": lambda a: amsgrad.apply_adam_with_amsgrad_v2(
            *a[:4], *hyper, a[4], use_locking=True
        ),
        "many": lambda a: amsgrad.apply_adam_with_amsgrad_v2_many(
            *([x] for x in a[:4]), *hyper, [a[4]]
        ),
    }
    for name, call in calls.items():
        got = pickle.loads(pickle.dumps(start))
        with np.errstate(all="raise"):
            call(got)
        for g, w in zip(got[:4], want[:4], strict=True):
            assert np.array_equal(g.view(np.uint16), w.view(np.uint16)), name
