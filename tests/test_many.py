"""The multi-tensor call equals one single-tensor call per quintuple and checks all first."""

from __future__ import annotations

import numpy as np
import pytest

import amsgrad
from helpers import assert_bits_equal

# Each test runs on every backend: native at each instruction-set level, and NumPy.
pytestmark = pytest.mark.usefixtures("each_backend")

HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)


def _tensors(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        out.append(
            [
                np.asarray(rng.standard_normal(shape)).astype(dtype),
                np.asarray(rng.standard_normal(shape)).astype(dtype),
                np.asarray(np.abs(rng.standard_normal(shape))).astype(dtype),
                np.asarray(np.abs(rng.standard_normal(shape))).astype(dtype),
                np.asarray(rng.standard_normal(shape)).astype(dtype),
            ]
        )
    return out


def _lists(tensors):
    return [[t[k] for t in tensors] for k in range(5)]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_many_equals_single_calls(dtype):
    shapes = [(3,), (0,), (4, 5), (), (1000,), (2, 3, 4), (70000,)]
    many = _tensors(shapes, dtype)
    single = [[a.copy() for a in t] for t in many]
    vars_, ms, vs, vhats, grads = _lists(many)
    out = amsgrad.apply_adam_with_amsgrad_v2_many(vars_, ms, vs, vhats, *HYPER, grads)
    assert out[0] is vars_
    for t in single:
        amsgrad.apply_adam_with_amsgrad_v2(*t[:4], *HYPER, t[4])
    for got, want in zip(many, single, strict=True):
        for a, b in zip(got[:4], want[:4], strict=True):
            assert_bits_equal(a, b)


def test_many_with_strided_and_converted_inputs():
    many = _tensors([(4, 6), (8,)], np.float32)
    many[0] = [a[:, ::2] for a in many[0]]
    many[1][4] = many[1][4].astype(np.float16)
    single = [[a.copy() for a in t] for t in many]
    amsgrad.apply_adam_with_amsgrad_v2_many(*_lists(many)[:4], *HYPER, _lists(many)[4])
    for t in single:
        amsgrad.apply_adam_with_amsgrad_v2(*t[:4], *HYPER, t[4])
    for got, want in zip(many, single, strict=True):
        for a, b in zip(got[:4], want[:4], strict=True):
            assert_bits_equal(a, b)


def _check_nothing_written(lists, call):
    before = [[a.copy() for a in items] for items in lists[:4]]
    call()
    for items, olds in zip(lists[:4], before, strict=True):
        for a, b in zip(items, olds, strict=True):
            assert_bits_equal(a, b)


@pytest.mark.parametrize(
    ("mutate", "error", "pattern"),
    [
        (lambda L: L[1].__setitem__(2, np.zeros(5, np.float32)), ValueError, r"ms\[2\].*shape"),
        (lambda L: L[0].__setitem__(1, L[0][1].astype(np.float64)), TypeError, r"vars\[1\]"),
        (lambda L: L[4].__setitem__(0, np.ones(3, np.float64)), TypeError, r"grads\[0\]"),
        (lambda L: L[4].pop(), ValueError, "grads"),
        (
            lambda L: L[3].__setitem__(2, L[2][2]),
            ValueError,
            r"vs\[2\] and vhats\[2\] share memory",
        ),
        (lambda L: L[2].__setitem__(0, L[1][2].reshape(3, 4)[0, :3]), ValueError, "share memory"),
        (lambda L: L[0][2].setflags(write=False), ValueError, r"vars\[2\].*read-only"),
    ],
)
def test_many_errors_name_the_list_and_index_and_write_nothing(mutate, error, pattern):
    lists = _lists(_tensors([(3,), (3,), (3, 4)], np.float32))
    mutate(lists)

    def call():
        with pytest.raises(error, match=pattern):
            amsgrad.apply_adam_with_amsgrad_v2_many(*lists[:4], *HYPER, lists[4])

    _check_nothing_written(lists, call)


def test_many_refuses_batched_hyper_parameters_and_non_lists():
    lists = _lists(_tensors([(3,)], np.float32))
    with pytest.raises(ValueError, match="lr"):
        amsgrad.apply_adam_with_amsgrad_v2_many(
            *lists[:4], 0.9, 0.999, np.ones(3, np.float32), 0.9, 0.999, 1e-8, lists[4]
        )
    with pytest.raises(TypeError, match="vars"):
        amsgrad.apply_adam_with_amsgrad_v2_many(lists[0][0], *lists[1:4], *HYPER, lists[4])
    assert amsgrad.apply_adam_with_amsgrad_v2_many([], [], [], [], *HYPER, []) == ([], [], [], [])


class _Tagged(np.ndarray):
    """An ndarray subclass: the unchecked native path must leave it to the checked one."""


@pytest.mark.parametrize(
    ("mutate", "error", "pattern"),
    [
        # same number of elements, another shape: only a shape check tells them apart
        (lambda L: L[1].__setitem__(1, L[1][1].reshape(5, 4).copy()), ValueError, r"ms\[1\]"),
        (lambda L: L[4].__setitem__(1, L[4][1].reshape(20).copy()), ValueError, r"grads\[1\]"),
        (lambda L: L[3].__setitem__(0, [0.0, 0.0, 0.0]), TypeError, r"vhats\[0\]"),
        (lambda L: L[2].__setitem__(1, np.repeat(L[2][1], 2, axis=1)[:, ::2]), None, None),
        (lambda L: L[0].__setitem__(0, L[0][0].view(_Tagged)), None, None),
    ],
)
def test_unchecked_fast_path_falls_back(mutate, error, pattern):
    tensors = _tensors([(3,), (4, 5)], np.float32, seed=3)
    lists = _lists(tensors)
    mutate(lists)
    before = [[np.array(a, copy=True) for a in items] for items in lists]
    if error is not None:
        with pytest.raises(error, match=pattern):
            amsgrad.apply_adam_with_amsgrad_v2_many(*lists[:4], *HYPER, lists[4])
        for items, saved in zip(lists, before, strict=True):
            for a, b in zip(items, saved, strict=True):
                assert_bits_equal(np.asarray(a), b)
        return
    amsgrad.apply_adam_with_amsgrad_v2_many(*lists[:4], *HYPER, lists[4])
    for i, saved in enumerate(zip(*before, strict=True)):
        want = [a.copy() for a in saved]
        amsgrad.apply_adam_with_amsgrad_v2(*want[:4], *HYPER, want[4])
        for a, b in zip([items[i] for items in lists[:4]], want[:4], strict=True):
            assert_bits_equal(np.asarray(a), b)
