"""Many threads at once: locked calls on one shared state (views made in several ways) and
unlocked calls on states of their own, with thread-count changes and deletes in between. Locked
results equal the same number of sequential steps; the private states equal their own."""

from __future__ import annotations

import threading

import numpy as np

import amsgrad
from helpers import assert_bits_equal

HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)
SIZE = 300_000  # above the threshold at which the kernel splits a call over threads


def _state(seed):
    rng = np.random.default_rng(seed)
    return [rng.random(SIZE, dtype=np.float32) for _ in range(5)]


def _sequential(state, steps):
    copies = [a.copy() for a in state]
    for _ in range(steps):
        amsgrad.apply_adam_with_amsgrad_v2(*copies[:4], *HYPER, copies[4])
    return copies


def test_locked_and_unlocked_threads_with_thread_count_changes():
    shared = _state(0)
    buffers = [bytearray(a.tobytes()) for a in shared]
    expected_shared = _sequential(shared, 4 * 10)
    privates = [_state(seed) for seed in range(1, 4)]
    expected_private = [_sequential(state, 10) for state in privates]
    before = amsgrad.get_num_threads()
    errors = []

    def locked(kind):
        try:
            for step in range(10):
                if kind == 0:  # views through np.frombuffer, made anew each step
                    arrays = [np.frombuffer(b, np.float32) for b in buffers]
                else:  # slices of one frombuffer view per buffer
                    arrays = [np.frombuffer(b, np.float32)[:] for b in buffers]
                amsgrad.apply_adam_with_amsgrad_v2(*arrays[:4], *HYPER, arrays[4], use_locking=True)
                del arrays
                if step % 3 == kind:
                    amsgrad.set_num_threads(1 + step % 2)
        except Exception as error:  # reported below
            errors.append(error)

    def unlocked(state):
        try:
            for step in range(10):
                amsgrad.apply_adam_with_amsgrad_v2(*state[:4], *HYPER, state[4])
                if step == 5:
                    scratch = [a.copy() for a in state]
                    del scratch
        except Exception as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=locked, args=(k % 2,)) for k in range(4)]
    workers += [threading.Thread(target=unlocked, args=(state,)) for state in privates]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        amsgrad.set_num_threads(before)
    assert errors == []
    got = [np.frombuffer(b, np.float32) for b in buffers]
    for name, a, b in zip(("var", "m", "v", "vhat"), got, expected_shared, strict=False):
        assert_bits_equal(a, b, f"shared {name}")
    for state, expected in zip(privates, expected_private, strict=True):
        for a, b in zip(state[:4], expected[:4], strict=True):
            assert_bits_equal(a, b, "private")
