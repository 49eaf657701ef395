"""use_locking=True: one lock per variable, so concurrent steps on one state are serialized."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import amsgrad
from amsgrad.core.contract import lock_for
from helpers import assert_bits_equal

HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)
N_THREADS, K_STEPS, SIZE = 4, 25, 200_000


def _state(seed=1):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal(SIZE).astype(np.float32),
        np.zeros(SIZE, np.float32),
        np.zeros(SIZE, np.float32),
        np.zeros(SIZE, np.float32),
    ], rng.standard_normal(SIZE).astype(np.float32)


def test_threads_with_locking_equal_sequential_steps():
    (var, m, v, vhat), grad = _state()
    expected = [a.copy() for a in (var, m, v, vhat)]
    for _ in range(N_THREADS * K_STEPS):
        amsgrad.apply_adam_with_amsgrad_v2(*expected, *HYPER, grad)

    barrier = threading.Barrier(N_THREADS)
    errors = []

    def worker():
        try:
            barrier.wait()
            for _ in range(K_STEPS):
                amsgrad.apply_adam_with_amsgrad_v2(var, m, v, vhat, *HYPER, grad, use_locking=True)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip((var, m, v, vhat), expected, strict=True):
        assert_bits_equal(got, want)


def test_same_var_waits_for_its_lock_and_other_vars_do_not():
    (var_a, *rest_a), grad = _state(2)
    (var_b, *rest_b), _ = _state(3)
    before_a = var_a.copy()
    done = {}

    def step(name, var, rest):
        amsgrad.apply_adam_with_amsgrad_v2(var, *rest, *HYPER, grad, use_locking=True)
        done[name] = True

    lock = lock_for(var_a)
    with lock:
        t_a = threading.Thread(target=step, args=("a", var_a, rest_a))
        t_b = threading.Thread(target=step, args=("b", var_b, rest_b))
        t_a.start()
        t_b.start()
        t_b.join(timeout=30)
        assert done.get("b"), "a call on another var must not wait for var_a's lock"
        t_a.join(timeout=0.5)
        assert "a" not in done, "a call on var_a must wait while its lock is held"
        assert_bits_equal(var_a, before_a)
    t_a.join(timeout=30)
    assert done.get("a")


def test_views_of_one_buffer_share_a_lock_and_without_locking_no_lock_is_taken():
    # Locks are keyed on memory: while base is locked, its views are busy, other arrays not.
    base = np.zeros(10, np.float32)
    with lock_for(base):
        assert not lock_for(base[:5]).acquire(blocking=False)
        assert not lock_for(base[5:]).acquire(blocking=False)
        other = lock_for(np.zeros(3, np.float32))
        assert other.acquire(blocking=False)
        other.release()
    (var, m, v, vhat), grad = _state(4)
    with lock_for(var):  # a non-reentrant lock: use_locking=False must not try to take it
        amsgrad.apply_adam_with_amsgrad_v2(var, m, v, vhat, *HYPER, grad, use_locking=False)


@pytest.mark.parametrize("value", [True, False])
def test_use_locking_accepts_python_bools(value):
    (var, m, v, vhat), grad = _state(5)
    amsgrad.apply_adam_with_amsgrad_v2(var, m, v, vhat, *HYPER, grad, use_locking=value)


@pytest.mark.parametrize("value", [np.True_, 1, "yes", None])
def test_use_locking_refuses_other_types(value):
    # MindSpore 2.10 refuses NumPy's bool_ as well as ints: only a Python bool is a bool.
    (var, m, v, vhat), grad = _state(5)
    before = var.copy()
    with pytest.raises(TypeError, match="use_locking"):
        amsgrad.apply_adam_with_amsgrad_v2(var, m, v, vhat, *HYPER, grad, use_locking=value)
    assert np.array_equal(var, before)
