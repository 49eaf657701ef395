"""The native kernel's persistent thread pool (core/native/pool.c).

Results must not depend on the split: every size around the thresholds is compared bit for bit
across thread counts. The pool must survive set_num_threads (resizing), concurrent callers and
fork() (a child starts with an empty pool and must still run multi-threaded calls).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

_native = pytest.importorskip("amsgrad.core._native")

DTYPES = (np.float16, np.float32, np.float64)
HYPER = (0.9**3, 0.999**3, 1e-3, 0.9, 0.999, 1e-8)


def state(rng: np.random.Generator, n: int, dtype) -> list[np.ndarray]:
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
    arrays[2] = np.abs(arrays[2])
    arrays[3] = np.abs(arrays[3])
    return arrays


def run(arrays: list[np.ndarray], threads: int) -> list[bytes]:
    work = [a.copy() for a in arrays]
    hyper = np.array(HYPER, dtype=np.float32).astype(arrays[0].dtype)
    _native.set_num_threads(threads)
    assert _native.apply(*work, hyper, 1) is None
    return [a.tobytes() for a in work[:4]]


@pytest.fixture
def restore_threads():
    before = _native.get_num_threads()
    yield
    _native.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_never_changes_bits(dtype, restore_threads):
    rng = np.random.default_rng(1)
    for n in (4095, 4096, 8193, 16383, 16384, 16385, 20000, 65537, 100_000, 262_147):
        arrays = state(rng, n, dtype)
        one = run(arrays, 1)
        for threads in (2, 3, 7, 16):
            assert run(arrays, threads) == one, (n, threads)


def test_resize_down_and_up(restore_threads):
    rng = np.random.default_rng(2)
    arrays = state(rng, 300_000, np.float32)
    one = run(arrays, 1)
    for threads in (8, 2, 1, 5, 3, 8, 1):
        assert run(arrays, threads) == one


def test_concurrent_callers_share_the_pool(restore_threads):
    rng = np.random.default_rng(3)
    inputs = [state(rng, 50_000 + 17 * i, np.float32) for i in range(6)]
    want = [run(arrays, 1) for arrays in inputs]
    _native.set_num_threads(2)
    got: list = [None] * 6

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = run(inputs[i], 2)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert got == want


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_child_gets_a_working_pool():
    code = """
        import os, sys, warnings
        import numpy as np
        from amsgrad.core import _native
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        _native.set_num_threads(4)
        hyper = np.array([0.5, 0.5, 1e-3, 0.9, 0.999, 1e-8], np.float32)
        def step():
            a = [np.full(400_000, 0.5, np.float32) for _ in range(5)]
            assert _native.apply(*a, hyper, 1) is None
            return a[0].tobytes()
        want = step()  # the pool's workers are running now
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                os._exit(0 if step() == want and step() == want else 3)
            _, status = os.waitpid(pid, 0)
            assert os.WEXITSTATUS(status) == 0, status
        assert step() == want
        print("ok")
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
