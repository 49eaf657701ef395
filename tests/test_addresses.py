"""kernel.apply_addresses: the multi-tensor update on memory given by address (the torch
optimizer's fast step calls it). Bits equal to the checked multi-tensor call, overlap found
before anything is written, every malformed argument refused; run on every native level."""

from __future__ import annotations

import numpy as np
import pytest

import amsgrad
from amsgrad.core import kernel
from amsgrad.core.contract import fast_hyper
from helpers import assert_bits_equal

HYPERS = [(0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8), (0.5, 0.25, 0.1, 0.75, 0.875, 1e-3)]
NATIVE = [name for name in kernel.available_backends() if name.startswith("native")]

pytestmark = pytest.mark.skipif(not NATIVE, reason="no native kernel")


@pytest.fixture(params=NATIVE)
def level(request):
    previous = kernel.selected_backend()
    kernel.select_backend(request.param)
    yield request.param
    kernel.select_backend(previous)


def _lists(dtype, sizes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for role in range(5):
        items = []
        for size in sizes:
            values = rng.standard_normal(size).astype(dtype)
            items.append(np.abs(values) if role in (2, 3) else values)
        out.append(items)
    return out


def _table(lists):
    count = len(lists[0])
    return np.array(
        [[lists[role][i].ctypes.data for role in range(5)] for i in range(count)], np.int64
    ).reshape(-1)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_equals_the_checked_call_with_several_sets(level, dtype):
    sizes = [7, 0, 1000, 33, 1]
    sets = np.array([0, 1, 1, 0, 1], np.int64)
    ours = _lists(dtype, sizes)
    theirs = [[a.copy() for a in items] for items in ours]
    hyper = np.ascontiguousarray(
        np.concatenate([fast_hyper(h, np.dtype(dtype)) for h in HYPERS], axis=1)
    )
    found = kernel.apply_addresses(_table(ours), np.array(sizes, np.int64), hyper, sets)
    assert found is None
    for which, h in enumerate(HYPERS):
        chosen = [i for i in range(len(sizes)) if sets[i] == which]
        amsgrad.apply_adam_with_amsgrad_v2_many(
            *([theirs[role][i] for i in chosen] for role in range(4)),
            *h,
            [theirs[4][i] for i in chosen],
        )
    for role in range(5):
        for a, b in zip(ours[role], theirs[role], strict=True):
            assert_bits_equal(a, b)


def test_shared_memory_is_reported_and_nothing_written(level):
    ours = _lists(np.float32, [10, 10])
    before = [[a.copy() for a in items] for items in ours]
    table = _table(ours)
    table[5 * 1 + 3] = ours[0][0].ctypes.data + 8  # tensor 1's vhat inside tensor 0's var
    hyper = fast_hyper(HYPERS[0], np.dtype(np.float32))
    found = kernel.apply_addresses(table, np.array([10, 10], np.int64), hyper)
    assert found == (0, 0, 1, 3)
    for items, saved in zip(ours, before, strict=True):
        for a, b in zip(items, saved, strict=True):
            assert_bits_equal(a, b)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda a: a.update(addresses=a["addresses"].astype(np.int32)), TypeError, "64-bit"),
        (lambda a: a.update(sizes=a["sizes"].astype(np.float64)), TypeError, "64-bit"),
        (lambda a: a.update(addresses=a["addresses"][:-1]), ValueError, "expected 5 per size"),
        (lambda a: a.update(sizes=np.array([10, -1], np.int64)), ValueError, "sizes\\[1\\]"),
        (lambda a: a["addresses"].__setitem__(2, 0), ValueError, "addresses\\[2\\]"),
        (lambda a: a["addresses"].__setitem__(2, a["addresses"][2] + 1), ValueError, "4-byte"),
        (lambda a: a.update(hyper=a["hyper"][:5]), ValueError, "expected 6"),
        (lambda a: a.update(sets=np.array([0, 2], np.int64)), ValueError, "sets\\[1\\]"),
        (lambda a: a.update(sets=np.array([0], np.int64)), ValueError, "one per size"),
    ],
)
def test_malformed_arguments_are_refused_before_writing(level, change, error, match):
    ours = _lists(np.float32, [10, 10])
    before = [[a.copy() for a in items] for items in ours]
    args = {
        "addresses": _table(ours),
        "sizes": np.array([10, 10], np.int64),
        "hyper": fast_hyper(HYPERS[0], np.dtype(np.float32)),
        "sets": None,
    }
    change(args)
    with pytest.raises(error, match=match):
        kernel.apply_addresses(**args)
    for items, saved in zip(ours, before, strict=True):
        for a, b in zip(items, saved, strict=True):
            assert_bits_equal(a, b)


def test_the_numpy_backend_declines():
    previous = kernel.selected_backend()
    kernel.select_backend("numpy")
    try:
        ours = _lists(np.float32, [4])
        hyper = fast_hyper(HYPERS[0], np.dtype(np.float32))
        assert kernel.apply_addresses(_table(ours), np.array([4], np.int64), hyper) is False
    finally:
        kernel.select_backend(previous)
