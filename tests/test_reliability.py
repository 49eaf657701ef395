"""Reliability: memory stays flat over a million calls; arrays of more than 2**31 elements."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import amsgrad
from amsgrad.core import kernel as _kernel
from helpers import assert_bits_equal

HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memory_is_flat_over_a_million_calls():
    rng = np.random.default_rng(0)
    var, m, grad = (rng.standard_normal(8).astype(np.float32) for _ in range(3))
    v, vhat = np.abs(rng.standard_normal(8)).astype(np.float32), np.zeros(8, np.float32)
    lists = [[a] + [a.copy() for _ in range(3)] for a in (var, m, v, vhat, grad)]
    strided = [np.repeat(a, 2)[::2] for a in (var, m, v, vhat, grad)]
    bad_grad = np.zeros(8, np.float64)
    apply = amsgrad.apply_adam_with_amsgrad_v2

    def calls(count: int) -> None:
        for k in range(count):
            apply(var, m, v, vhat, *HYPER, grad)
            if k % 10 == 0:
                amsgrad.apply_adam_with_amsgrad_v2_many(*lists[:4], *HYPER, lists[4])
                apply(*strided[:4], *HYPER, strided[4])
                apply(var, m, v, vhat, 0.9, 0.999, np.full(8, 1e-3, np.float32), 0.9,
                      0.999, 1e-8, grad)  # fmt: skip
                with pytest.raises(TypeError):
                    apply(var, m, v, vhat, *HYPER, bad_grad)

    calls(20_000)  # warm-up: caches, allocator pools
    before = _resident_bytes()
    calls(1_000_000)
    grown = _resident_bytes() - before
    # A leak of one small object per call would be tens of MB here.
    assert grown < 4 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB"


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(
    os.environ.get("AMSGRAD_BIG_TESTS") != "1",
    reason="needs 18 GiB of memory and about a minute: set AMSGRAD_BIG_TESTS=1 to run it",
)
def test_more_than_2_31_elements():
    # float16 var, m, v, vhat of 2**31 + 100 elements (4 GiB each) and a gradient that is a
    # stride-0 view (no memory): the checks, the blocked copies of the strided path and the
    # kernel's indexing beyond 2**31. Every element starts equal, so every element must end
    # as the one-element update does.
    n = 2**31 + 100
    if _available_bytes() < 18 * 2**30:
        pytest.skip("less than 18 GiB of memory available")
    values = (0.5, 0.1, 0.2, 0.15)
    expected = [np.array([x], np.float16) for x in values]
    amsgrad.apply_adam_with_amsgrad_v2(*expected, *HYPER, np.array([0.4], np.float16))
    state = [np.full(n, x, np.float16) for x in values]
    grad = np.broadcast_to(np.float16(0.4), (n,))
    amsgrad.apply_adam_with_amsgrad_v2(*state, *HYPER, grad)
    picks = np.r_[0:1000, 2**31 - 1000 : n]
    for got, want in zip(state, expected, strict=True):
        assert_bits_equal(got[picks], np.broadcast_to(want, picks.shape))
        assert np.count_nonzero(got != want[0]) == 0


def test_state_whose_elements_overlap_is_refused():
    # A view whose stride is 0 (or any layout where two elements share memory) cannot be
    # updated element by element: ValueError naming it, nothing written.
    start = [np.array([x], np.float32) for x in (0.5, 0.1, 0.2, 0.15)]
    before = [a.copy() for a in start]
    shaped = [np.repeat(a, 5) for a in start]
    shaped[2] = as_strided(start[2], shape=(5,), strides=(0,), writeable=True)  # v: one float
    with pytest.raises(ValueError, match=r"^v \(the 3rd input\): its elements overlap"):
        amsgrad.apply_adam_with_amsgrad_v2(*shaped, *HYPER, np.ones(5, np.float32))
    for got, want in zip(start, before, strict=True):
        assert_bits_equal(got, want)
    base = np.zeros(12, np.float32)
    overlapping = as_strided(base, shape=(3, 3), strides=(8, 4), writeable=True)  # rows share
    fresh = [np.zeros((3, 3), np.float32) for _ in range(3)]
    with pytest.raises(ValueError, match="overlap in memory"):
        amsgrad.apply_adam_with_amsgrad_v2(overlapping, *fresh, *HYPER, np.ones((3, 3), np.float32))
    assert not base.any()


@pytest.mark.skipif(amsgrad.backend() == "numpy", reason="the blocked copies are the native path")
@pytest.mark.parametrize("batched", [False, True])
def test_blocked_copies_equal_one_contiguous_call(monkeypatch, batched):
    # Small blocks, so that a strided 3-D state is cut into many blocks along axis 0, with
    # per-row hyper-parameters sliced along.
    monkeypatch.setattr(_kernel, "COPY_BLOCK_ELEMENTS", 7)
    rng = np.random.default_rng(5)
    shape = (9, 4, 3)
    base = [rng.standard_normal((9, 4, 6)) for _ in range(5)]
    base[2], base[3] = np.abs(base[2]), np.abs(base[3])
    strided = [a[:, :, ::2] for a in base]
    contiguous = [a.copy() for a in strided]
    lr = rng.uniform(0, 0.1, shape[:2]) if batched else 1e-3
    hyper = (0.9, 0.999, lr, 0.9, 0.999, 1e-8)
    amsgrad.apply_adam_with_amsgrad_v2(*strided[:4], *hyper, strided[4])
    amsgrad.apply_adam_with_amsgrad_v2(*contiguous[:4], *hyper, contiguous[4])
    for got, want in zip(strided[:4], contiguous[:4], strict=True):
        assert_bits_equal(got, want)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("many", [False, True])
def test_a_signal_during_a_strided_update_does_not_leave_it_half_done(each_backend, many):
    """A KeyboardInterrupt raised by a signal handler mid-update leaves all four arrays updated
    (it is held until the update is written) or none (it arrived before the first write)."""
    rng = np.random.default_rng(5)
    wide = [rng.random((4000, 2000), dtype=np.float32) for _ in range(5)]
    views = [array[:, ::2] for array in wide]  # strided: the blocked (or NumPy) path
    original = [np.ascontiguousarray(view) for view in views]
    expected = [array.copy() for array in original]
    amsgrad.apply_adam_with_amsgrad_v2(*expected[:4], *HYPER, expected[4])

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    # No garbage collection meanwhile: a handler that runs inside a gc callback (other libraries
    # register some) has its exception swallowed as unraisable, and the test would see nothing.
    gc.disable()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.005)
        with pytest.raises(KeyboardInterrupt):
            if many:
                amsgrad.apply_adam_with_amsgrad_v2_many(
                    *([view] for view in views[:4]), *HYPER, [views[4]]
                )
            else:
                amsgrad.apply_adam_with_amsgrad_v2(*views[:4], *HYPER, views[4])
            time.sleep(1)  # the update was faster than the timer: the signal arrives here
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        gc.enable()
    untouched = all(np.array_equal(got, was) for got, was in zip(views, original, strict=False))
    if not untouched:
        for name, got, want in zip(("var", "m", "v", "vhat"), views, expected, strict=False):
            assert_bits_equal(got, want, name)
