"""The benchmark suite: amsgrad's kernel side by side with its peers and the memory roofline.

Run it as ``amsgrad bench``, ``python -m amsgrad.apps.bench`` or ``python benchmarks/run.py``
(``--help`` lists the options; ``benchmarks/README.md`` explains every column).

What is timed, per call of one optimizer step (var, m, v, vhat updated in place from grad):

* ``amsgrad``: :func:`amsgrad.apply_adam_with_amsgrad_v2` (one tensor) or
  :func:`amsgrad.apply_adam_with_amsgrad_v2_many` (many tensors in one call);
* ``roofline``: ``amsgrad.apps._roofline.roofline`` (an optional extension of its own), a loop
  with the five reads and four writes and no arithmetic, with the kernel's vectorization and
  threading: the memory-bandwidth ceiling;
* ``numpy``: the update written naively as NumPy expressions (single-threaded);
* ``torch``: ``torch.optim.Adam(amsgrad=True, fused=True)``, ``opt.step()`` with grads set;
* ``tensorflow``: ``tf.raw_ops.ResourceApplyAdamWithAmsgrad`` on resource variables, eager for
  one tensor, one ``tf.function`` holding all the ops for many tensors;
* ``jax``: ``optax.amsgrad`` under ``jax.jit`` with the parameters and the state donated;
* ``mindspore``: ``mindspore.ops.ApplyAdamWithAmsgradV2`` (PyNative), in its own interpreter
  given by ``--mindspore-python`` when MindSpore is not importable here.

Every peer runs in a worker subprocess that executes this very file (only the standard library
and NumPy are imported at its top level, so it runs in any interpreter with NumPy: MindSpore's
virtual environment needs nothing from this package). The worker times each case with the same
harness: warm-up, then ``repeat`` rounds of N back-to-back calls timed with
``time.perf_counter`` (N chosen so a round lasts at least ``--min-time`` seconds); the reported
time per call is the median over rounds (the best round is kept in results.json).

Bandwidth counts 9 arrays x itemsize bytes per element: 5 reads (var, m, v, vhat, grad) and
4 writes (var, m, v, vhat).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

PEERS = ("amsgrad", "roofline", "numpy", "torch", "tensorflow", "jax", "mindspore")
DTYPES = ("float16", "float32", "float64")
ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}
ARRAYS_MOVED = 9  # 5 reads + 4 writes per element

# beta1_power, beta2_power, lr, beta1, beta2, epsilon (Python floats, as a user passes them)
HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000, 100_000, 1_000_000)
QUICK_DTYPES = ("float32",)
QUICK_THREADS = (1,)
# Building a graph of 1000 ops (tf.function), compiling a 1000-leaf jit (XLA) or 1000 PyNative
# calls per step (MindSpore) takes 5 to 15 s: --quick leaves these peers out of the many case.
QUICK_MANY_SKIP = ("tensorflow", "jax", "mindspore")
DEFAULT_MANY = (1000, 1000)

# Peak memory of a case per peer, in arrays of (elements x itemsize) bytes (state, grad,
# temporaries, framework copies); checked against MemAvailable before allocating.
MEMORY_FACTOR = {
    "amsgrad": 6,
    "roofline": 6,
    "numpy": 9,
    "torch": 7,
    "tensorflow": 9,
    "jax": 11,
    "mindspore": 11,
}
MEMORY_MARGIN = 512 * 2**20

LABELS = {
    "amsgrad": "amsgrad",
    "roofline": "roofline (memory bound)",
    "numpy": "NumPy, naive",
    "torch": "torch Adam fused",
    "tensorflow": "TF ResourceApplyAdamWithAmsgrad",
    "jax": "optax.amsgrad + jax.jit",
    "mindspore": "MindSpore ApplyAdamWithAmsgradV2",
}

# What exactly each peer runs, for the notes of results.md.
DESCRIPTIONS = {
    "amsgrad": "amsgrad.apply_adam_with_amsgrad_v2 (one tensor) / "
    "apply_adam_with_amsgrad_v2_many (many tensors, one call); amsgrad.set_num_threads(n)",
    "roofline": "amsgrad.apps._roofline.roofline(a, b, c, d, e): the same 5 reads and 4 writes, no "
    "arithmetic, same vectorization and threading (many tensors: one call on the same total "
    "number of elements)",
    "numpy": "the update as NumPy expressions (in-place m +=, v +=, np.maximum(out=), var -=); "
    "NumPy ufuncs are single-threaded, so it runs at 1 thread only; many tensors: a Python loop",
    "torch": "torch.optim.Adam(params, amsgrad=True, fused=True); opt.step() with .grad set; "
    "torch.set_num_threads(n)",
    "tensorflow": "tf.raw_ops.ResourceApplyAdamWithAmsgrad on tf.Variable resource handles; one "
    "tensor: eager (faster than a tf.function call for one op); many tensors: one "
    "tf.function(autograph=False) holding one op per tensor (fairer than a Python loop of eager "
    "ops); n threads: intra/inter-op threads = n and CPU affinity to n cores",
    "jax": "optax.amsgrad + optax.apply_updates under jax.jit(donate_argnums=(params, state)); "
    "jax.block_until_ready after each round; n threads: CPU affinity to n cores (XLA sizes its "
    "pool from it)",
    "mindspore": "mindspore.ops.ApplyAdamWithAmsgradV2 on Parameters, PyNative mode (many "
    "tensors: a Python loop, there is no multi-tensor form); synchronized after each round; "
    "n threads: device_context.cpu.op_tuning.threads_num(n) and CPU affinity to n cores",
}

_TICK = "@@amsgrad-bench-tick@@"


# ---------------------------------------------------------------------------------------------
# Small helpers (used by the driver and the workers)


def _mem_available() -> int | None:
    """Bytes of memory available now (Linux MemAvailable, else free pages), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _format_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def _format_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _format_size(count: int) -> str:
    """1000 -> '1e3', 2500 -> '2500'."""
    if count > 0:
        exponent = round(math.log10(count))
        if 10**exponent == count and exponent >= 3:
            return f"1e{exponent}"
    return str(count)


def _case_name(case: dict[str, Any]) -> str:
    if case["kind"] == "many":
        return f"{case['dtype']} {case['tensors']}x{_format_size(case['size'])}"
    return f"{case['dtype']} {_format_size(case['size'])}"


def _measure(
    fn: Callable[[], Any],
    sync: Callable[[], Any],
    repeat: int,
    min_time: float,
    warmup: float,
) -> dict[str, Any]:
    """Time ``fn``: warm up, size rounds to >= min_time, return the median per call and more."""
    clock = time.perf_counter
    start = clock()
    calls = 0
    while True:  # warm-up: at least 2 calls (1 if a call is slow) and ``warmup`` seconds
        fn()
        calls += 1
        sync()
        elapsed = clock() - start
        if elapsed >= warmup and (calls >= 2 or elapsed >= max(0.25, 20 * min_time)):
            break
    per_round = 1
    while True:  # calibration: calls per round so that a round lasts at least min_time
        t0 = clock()
        for _ in range(per_round):
            fn()
        sync()
        elapsed = clock() - t0
        if elapsed >= min_time or per_round >= 1_000_000:
            break
        grow = 1.25 * min_time / max(elapsed, 1e-9)
        per_round = min(1_000_000, max(2 * per_round, int(per_round * grow) + 1))
    rounds = [elapsed / per_round]
    for _ in range(repeat - 1):
        t0 = clock()
        for _ in range(per_round):
            fn()
        sync()
        rounds.append((clock() - t0) / per_round)
    return {
        "seconds": statistics.median(rounds),
        "best": min(rounds),
        "rounds": rounds,
        "calls_per_round": per_round,
    }


def _noop() -> None:
    return None


# ---------------------------------------------------------------------------------------------
# Worker: one peer (or a group), run in a subprocess through runpy on this file


class _Skip(Exception):
    """A case (or a whole peer) that cannot run here; the message says why."""


def _host_state(case: dict[str, Any], seed: int = 0) -> list[list[Any]]:
    """[[var...], [m...], [v...], [vhat...], [grad...]] as NumPy arrays, one per tensor."""
    import numpy as np

    dtype = np.dtype(case["dtype"])
    rng = np.random.default_rng(seed)
    work = np.float64 if dtype == np.float64 else np.float32
    out: list[list[Any]] = [[], [], [], [], []]
    for _ in range(case["tensors"]):
        n = case["size"]
        out[0].append(rng.standard_normal(n, dtype=work).astype(dtype, copy=False))
        out[1].append(np.full(n, 0.01, dtype))
        out[2].append(np.full(n, 0.02, dtype))
        out[3].append(np.full(n, 0.03, dtype))
        out[4].append(rng.standard_normal(n, dtype=work).astype(dtype, copy=False))
    return out


class _Bench:
    """A ready-to-time step: ``fn()`` runs one step, ``sync()`` waits for it, ``threads(n)``."""

    def __init__(
        self,
        fn: Callable[[], Any],
        sync: Callable[[], Any] = _noop,
        threads: Callable[[int], Any] | None = None,
        note: str = "",
    ) -> None:
        self.fn = fn
        self.sync = sync
        self.threads = threads
        self.note = note


def _setup_amsgrad(case: dict[str, Any]) -> _Bench:
    import amsgrad

    var, m, v, vhat, grad = _host_state(case)
    fn: Callable[[], Any]
    if case["kind"] == "many":
        fn = functools.partial(
            amsgrad.apply_adam_with_amsgrad_v2_many, var, m, v, vhat, *HYPER[:6], grad
        )
    else:
        fn = functools.partial(
            amsgrad.apply_adam_with_amsgrad_v2, var[0], m[0], v[0], vhat[0], *HYPER, grad[0]
        )
    return _Bench(fn, threads=amsgrad.set_num_threads, note=f"backend {amsgrad.backend()}")


def _setup_roofline(case: dict[str, Any]) -> _Bench:
    import amsgrad

    try:
        from amsgrad.apps import _roofline  # type: ignore[attr-defined]
    except ImportError as error:
        raise _Skip(f"amsgrad.apps._roofline is not built ({error}): no roofline") from None
    total = dict(case, tensors=1, size=case["tensors"] * case["size"])
    arrays = [items[0] for items in _host_state(total, seed=1)]

    def threads(count: int) -> None:
        amsgrad.set_num_threads(count)
        _roofline.set_num_threads(amsgrad.get_num_threads())

    threads(amsgrad.get_num_threads())
    return _Bench(functools.partial(_roofline.roofline, *arrays), threads=threads)


def _naive_numpy_step(var: Any, m: Any, v: Any, vhat: Any, grad: Any) -> None:
    import numpy as np

    beta1_power, beta2_power, lr, beta1, beta2, epsilon = HYPER
    lr_t = lr * math.sqrt(1 - beta2_power) / (1 - beta1_power)
    m += (grad - m) * (1 - beta1)
    v += (grad * grad - v) * (1 - beta2)
    np.maximum(vhat, v, out=vhat)
    var -= lr_t * m / (np.sqrt(vhat) + epsilon)


def _setup_numpy(case: dict[str, Any]) -> _Bench:
    state = _host_state(case)
    if case["kind"] == "many":
        quintuples = list(zip(*state, strict=True))

        def fn() -> None:
            for arrays in quintuples:
                _naive_numpy_step(*arrays)

    else:
        fn = functools.partial(_naive_numpy_step, *(items[0] for items in state))
    return _Bench(fn, threads=lambda n: None)


def _setup_torch(case: dict[str, Any]) -> _Bench:
    import torch

    state = _host_state(case)
    params = []
    for i in range(case["tensors"]):
        param = torch.nn.Parameter(torch.from_numpy(state[0][i]))
        param.grad = torch.from_numpy(state[4][i])
        params.append(param)
    _, _, lr, beta1, beta2, epsilon = HYPER
    opt = torch.optim.Adam(
        params, lr=lr, betas=(beta1, beta2), eps=epsilon, amsgrad=True, fused=True
    )
    return _Bench(opt.step, threads=torch.set_num_threads)


def _setup_tensorflow(case: dict[str, Any]) -> _Bench:
    import tensorflow as tf

    dtype = getattr(tf, case["dtype"])
    state = _host_state(case)
    variables = [[tf.Variable(array) for array in items] for items in state[:4]]
    grads = [tf.constant(array) for array in state[4]]
    del state
    hyper = [tf.constant(value, dtype) for value in HYPER]
    apply = tf.raw_ops.ResourceApplyAdamWithAmsgrad

    def step() -> None:
        for var, m, v, vhat, grad in zip(*variables, grads, strict=True):
            apply(
                var=var.handle,
                m=m.handle,
                v=v.handle,
                vhat=vhat.handle,
                beta1_power=hyper[0],
                beta2_power=hyper[1],
                lr=hyper[2],
                beta1=hyper[3],
                beta2=hyper[4],
                epsilon=hyper[5],
                grad=grad,
            )

    if case["kind"] == "many":
        return _Bench(tf.function(step, autograph=False), note="tf.function")
    return _Bench(step, note="eager")


def _setup_jax(case: dict[str, Any]) -> _Bench:
    import jax
    import jax.numpy as jnp
    import optax

    state = _host_state(case)
    params = [jnp.array(array) for array in state[0]]
    grads = [jnp.array(array) for array in state[4]]
    del state
    _, _, lr, beta1, beta2, epsilon = HYPER
    tx = optax.amsgrad(learning_rate=lr, b1=beta1, b2=beta2, eps=epsilon)
    tree: Any = params[0] if case["kind"] == "single" else params
    grad_tree: Any = grads[0] if case["kind"] == "single" else grads
    opt_state = tx.init(tree)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params: Any, opt_state: Any, grads: Any) -> Any:
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    box = [tree, opt_state]

    def fn() -> None:
        box[0], box[1] = step(box[0], box[1], grad_tree)

    return _Bench(fn, sync=lambda: jax.block_until_ready(box))


def _setup_mindspore(case: dict[str, Any]) -> _Bench:
    import mindspore
    from mindspore import Parameter, Tensor, ops

    state = _host_state(case)
    roles = ("var", "m", "v", "vhat")
    params = [
        [Parameter(Tensor(array), name=f"{role}{i}") for i, array in enumerate(items)]
        for role, items in zip(roles, state[:4], strict=True)
    ]
    grads = [Tensor(array) for array in state[4]]
    del state
    op = ops.ApplyAdamWithAmsgradV2()

    def step() -> None:
        for var, m, v, vhat, grad in zip(*params, grads, strict=True):
            op(var, m, v, vhat, *HYPER, grad)

    def sync() -> None:
        try:
            from mindspore.common.api import _pynative_executor

            _pynative_executor.sync()
        except (ImportError, AttributeError):
            params[0][-1][:1].asnumpy()

    return _Bench(step, sync=sync, note=f"mindspore {mindspore.__version__}")


_SETUPS: dict[str, Callable[[dict[str, Any]], _Bench]] = {
    "amsgrad": _setup_amsgrad,
    "roofline": _setup_roofline,
    "numpy": _setup_numpy,
    "torch": _setup_torch,
    "tensorflow": _setup_tensorflow,
    "jax": _setup_jax,
    "mindspore": _setup_mindspore,
}


def _peer_import(peer: str, threads: Sequence[int]) -> dict[str, str]:
    """Import a peer's framework (ImportError when missing); returns version strings."""
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    if peer in ("amsgrad", "roofline"):
        import amsgrad

        versions["amsgrad"] = f"{amsgrad.__version__} ({amsgrad.backend()})"
    elif peer == "torch":
        import torch

        versions["torch"] = torch.__version__
    elif peer == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(max(threads))
        tf.config.threading.set_inter_op_parallelism_threads(max(threads))
        versions["tensorflow"] = tf.__version__
    elif peer == "jax":
        import jax
        import jaxlib
        import optax

        jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64
        versions["jax"] = (
            f"{jax.__version__} (jaxlib {jaxlib.__version__}), optax {optax.__version__}"
        )
    elif peer == "mindspore":
        os.environ.setdefault("GLOG_v", "3")
        import mindspore

        with contextlib.suppress(Exception):
            mindspore.set_device("CPU")
        with contextlib.suppress(Exception):
            mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        try:  # MindSpore >= 2.5; set_context(runtime_num_threads=) is its deprecated spelling
            from mindspore.device_context.cpu import op_tuning

            op_tuning.threads_num(max(threads))
        except (ImportError, AttributeError):
            with contextlib.suppress(Exception):
                mindspore.set_context(runtime_num_threads=max(threads))
        versions["mindspore"] = mindspore.__version__
    return versions


def _worker_main(spec_path: str) -> int:
    """Entry point of a worker process: run the cases in the spec file, write the results."""
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    threads: list[int] = spec["threads"]
    affinity = spec.get("affinity")
    notes: list[str] = []
    if affinity and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < affinity:
            notes.append(f"asked for {affinity} cores, only {len(cpus)} available")
        os.sched_setaffinity(0, cpus[:affinity])
    results: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    usable: list[str] = []
    for peer in spec["peers"]:
        try:
            versions.update(_peer_import(peer, threads))
            usable.append(peer)
        except Exception as exc:  # ImportError, or a framework that fails to initialize
            notes.append(f"{peer}: not available ({type(exc).__name__}: {exc})".strip())
            for case in spec["cases"]:
                for count in threads:
                    _tick(peer, case, count)
    for case in spec["cases"]:
        for peer in usable:
            if case["kind"] == "many" and peer in spec.get("skip_many", ()):
                for count in threads:
                    _tick(peer, case, count)
                continue
            results.extend(_run_case(peer, case, threads, spec))
            gc.collect()
    payload = {
        "results": results,
        "versions": versions,
        "notes": notes,
        "unavailable": [peer for peer in spec["peers"] if peer not in usable],
    }
    with open(spec["out"], "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    return 0


def _tick(peer: str, case: dict[str, Any], threads: int) -> None:
    print(f"{_TICK} {peer} {_case_name(case)} t{threads}", flush=True)


def _record(peer: str, case: dict[str, Any], threads: int, **fields: Any) -> dict[str, Any]:
    elements = case["tensors"] * case["size"]
    row = {
        "peer": peer,
        "kind": case["kind"],
        "dtype": case["dtype"],
        "size": case["size"],
        "tensors": case["tensors"],
        "elements": elements,
        "threads": threads,
        "status": "ok",
        "note": "",
    }
    row.update(fields)
    seconds = row.get("seconds")
    if row["status"] == "ok" and seconds:
        row["ns_per_element"] = seconds / elements * 1e9
        row["gb_per_s"] = ARRAYS_MOVED * ITEMSIZE[case["dtype"]] * elements / seconds / 1e9
    return row


def _run_case(
    peer: str, case: dict[str, Any], threads: list[int], spec: dict[str, Any]
) -> list[dict[str, Any]]:
    counts = threads
    if peer == "numpy":  # single-threaded: timed once, reported at 1 thread
        counts = [1]
        for count in threads[1:]:
            _tick(peer, case, count)
    need = MEMORY_FACTOR[peer] * case["tensors"] * case["size"] * ITEMSIZE[case["dtype"]]
    available = _mem_available()
    if available is not None and need + MEMORY_MARGIN > available:
        note = f"skipped: needs about {_format_bytes(need)}, {_format_bytes(available)} available"
        for count in counts:
            _tick(peer, case, count)
        return [_record(peer, case, count, status="skipped", note=note) for count in counts]
    rows = []
    try:
        bench = _SETUPS[peer](case)
    except _Skip as exc:
        for count in counts:
            _tick(peer, case, count)
        return [_record(peer, case, count, status="skipped", note=str(exc)) for count in counts]
    except Exception as exc:
        for count in counts:
            _tick(peer, case, count)
        note = f"setup failed: {type(exc).__name__}: {exc}"[:300]
        return [_record(peer, case, count, status="error", note=note) for count in counts]
    for count in counts:
        try:
            if bench.threads is not None:
                bench.threads(count)
            timing = _measure(
                bench.fn, bench.sync, spec["repeat"], spec["min_time"], spec["warmup"]
            )
            rows.append(_record(peer, case, count, note=bench.note, **timing))
        except Exception as exc:
            note = f"failed: {type(exc).__name__}: {exc}"[:300]
            rows.append(_record(peer, case, count, status="error", note=note))
        _tick(peer, case, count)
    del bench
    return rows


# ---------------------------------------------------------------------------------------------
# Driver

_BOOT = (
    "import runpy, sys; "
    "g = runpy.run_path(sys.argv[1], run_name='amsgrad_bench_worker'); "
    "sys.exit(g['_worker_main'](sys.argv[2]))"
)


class _Group:
    """Peers that one worker process runs, with its interpreter and thread settings."""

    def __init__(
        self,
        peers: list[str],
        python: str,
        threads: list[int],
        affinity: int | None = None,
        needs_package: bool = True,
    ) -> None:
        self.peers = peers
        self.python = python
        self.threads = threads
        self.affinity = affinity
        self.needs_package = needs_package


def _plan_groups(peers: list[str], threads: list[int], ms_python: str | None) -> list[_Group]:
    """Workers in run order. Peers with a run-time thread knob cover every thread count in one
    process; TensorFlow, JAX and MindSpore fix their pools at start: one process per count."""
    here = sys.executable
    groups: list[_Group] = []
    local: list[str] = [peer for peer in ("amsgrad", "roofline", "numpy") if peer in peers]
    if local:
        groups.append(_Group(local, here, threads))
    if "torch" in peers:
        groups.append(_Group(["torch"], here, threads, needs_package=False))
    for peer in ("tensorflow", "jax"):
        if peer in peers:
            groups.extend(
                _Group([peer], here, [n], affinity=n, needs_package=False) for n in threads
            )
    if "mindspore" in peers:
        python = ms_python or here
        groups.extend(
            _Group(["mindspore"], python, [n], affinity=n, needs_package=False) for n in threads
        )
    return groups


def _worker_env(group: _Group) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("GLOG_v", "3")
    if group.needs_package:
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_parent, *filter(None, [env.get("PYTHONPATH", "")])]
        )
    if group.affinity:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(group.affinity)
    return env


def _run_group(
    group: _Group,
    cases: list[dict[str, Any]],
    settings: dict[str, Any],
    on_tick: Callable[[str], None],
    workdir: Path,
    index: int,
) -> dict[str, Any]:
    spec_path = workdir / f"spec{index}.json"
    out_path = workdir / f"out{index}.json"
    err_path = workdir / f"err{index}.txt"
    spec = dict(
        settings,
        peers=group.peers,
        threads=group.threads,
        cases=cases,
        affinity=group.affinity,
        out=str(out_path),
    )
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    ticks_expected = len(cases) * len(group.peers) * len(group.threads)
    ticks = 0
    began = time.perf_counter()
    command = [group.python, "-c", _BOOT, str(Path(__file__).resolve()), str(spec_path)]
    try:
        with open(err_path, "w", encoding="utf-8") as err:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=_worker_env(group),
                text=True,
                errors="replace",
            )
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith(_TICK):
                    ticks += 1
                    on_tick(line[len(_TICK) :].strip())
            code = process.wait()
    except OSError as exc:
        code, tail = -1, f"{type(exc).__name__}: {exc}"
    else:
        tail = err_path.read_text(encoding="utf-8", errors="replace").strip()[-600:]
    for _ in range(ticks_expected - ticks):
        on_tick("")
    seconds = time.perf_counter() - began
    if code == 0 and out_path.exists():
        payload = json.loads(out_path.read_text(encoding="utf-8"))
        payload["seconds"] = seconds
        return payload
    what = ", ".join(group.peers)
    note = f"{what} (threads {group.threads}): worker exited with code {code}: {tail}"
    return {
        "results": [],
        "versions": {},
        "notes": [note],
        "unavailable": group.peers,
        "seconds": seconds,
    }


def _parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in text.split(","):
        item = item.strip().lower().replace("_", "")
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {item!r}") from None
        if value < 1 or value != int(value):
            raise argparse.ArgumentTypeError(f"not a positive whole size: {item!r}")
        sizes.append(int(value))
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def _parse_choices(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        wrong = [item for item in items if item not in choices]
        if wrong or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}; got {text!r}"
            )
        return items

    return parse


def _parse_threads(text: str) -> list[int]:
    try:
        counts = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of thread counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1: {text!r}")
    return sorted(set(counts))


def _parse_many(text: str) -> tuple[int, int] | None:
    if text.strip().lower() in ("", "0", "none", "off"):
        return None
    try:
        tensors, size = (int(float(part)) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TENSORSxELEMENTS like 1000x1000: {text!r}"
        ) from None
    if tensors < 1 or size < 1:
        raise argparse.ArgumentTypeError(f"expected positive counts: {text!r}")
    return tensors, size


def _parse_repeat(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _parse_min_time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    """Errors as one line on stderr and exit status 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="amsgrad bench",
        description="Time amsgrad's ApplyAdamWithAmsgradV2 kernel against NumPy, PyTorch, "
        "TensorFlow, JAX/optax, MindSpore and the memory roofline; write results.md, "
        "results.png and results.json.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small fast run (< 30 s): float32, 1 thread, sizes 1e3,1e5,1e6, "
        "3 rounds of >= 10 ms",
    )
    parser.add_argument(
        "--out",
        default=os.path.join("benchmarks", "results"),
        help="output folder (default: benchmarks/results)",
    )
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="elements of the single-tensor cases, e.g. 1e3,1e4,1e5,1e6,1e7 "
        "(the default); 1e8 is opt-in (memory is checked first)",
    )
    parser.add_argument(
        "--dtypes",
        type=_parse_choices(DTYPES),
        default=None,
        help="float16,float32,float64 (the default; quick: float32)",
    )
    parser.add_argument(
        "--threads",
        type=_parse_threads,
        default=None,
        help="thread counts, e.g. 1,2 (the default; quick: 1)",
    )
    parser.add_argument(
        "--many",
        type=_parse_many,
        default=DEFAULT_MANY,
        help="the multi-tensor case TENSORSxELEMENTS (default 1000x1000; 'none' to skip)",
    )
    parser.add_argument(
        "--peers",
        type=_parse_choices(PEERS),
        default=list(PEERS),
        help=f"what to time (default: all of {','.join(PEERS)}); peers that are "
        "not installed are skipped with a note",
    )
    parser.add_argument(
        "--repeat",
        type=_parse_repeat,
        default=None,
        help="timed rounds per case; the median is reported (default 7, quick 3)",
    )
    parser.add_argument(
        "--min-time",
        type=_parse_min_time,
        default=None,
        help="seconds a timed round lasts at least (default 0.2, quick 0.01)",
    )
    parser.add_argument(
        "--mindspore-python",
        default=None,
        metavar="PATH",
        help="a Python interpreter with mindspore installed (its own virtual "
        "environment); without it MindSpore is timed only if importable here",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write results.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark suite; returns the exit status (0 on success)."""
    from amsgrad.apps.files import folder_problem  # here: workers run this file without amsgrad

    parser = _build_parser()
    args = parser.parse_args(argv)
    problem = folder_problem(args.out, create=True)
    if problem:
        parser.error(f"argument --out: {problem}")
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.dtypes = args.dtypes or list(QUICK_DTYPES if args.quick else DTYPES)
    args.threads = args.threads or list(QUICK_THREADS if args.quick else (1, 2))
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    min_time = args.min_time if args.min_time is not None else (0.01 if args.quick else 0.2)
    settings: dict[str, Any] = {
        "repeat": repeat,
        "min_time": min_time,
        "warmup": min(0.1, 5 * min_time),
        "skip_many": list(QUICK_MANY_SKIP) if args.quick else [],
    }
    cases: list[dict[str, Any]] = []
    for dtype in args.dtypes:
        cases.extend(
            {"kind": "single", "dtype": dtype, "size": size, "tensors": 1} for size in sizes
        )
        if args.many is not None:
            cases.append(
                {"kind": "many", "dtype": dtype, "size": args.many[1], "tensors": args.many[0]}
            )
    peers = [peer for peer in PEERS if peer in args.peers]
    groups = _plan_groups(peers, args.threads, args.mindspore_python)
    total = sum(len(cases) * len(group.peers) * len(group.threads) for group in groups)

    from amsgrad.apps.progress import Progress

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    notes: list[str] = []
    unavailable: set[str] = set()
    workers: list[dict[str, Any]] = []
    with (
        Progress(total, "bench") as bar,
        tempfile.TemporaryDirectory(prefix="amsgrad-bench-") as tmp,
    ):
        done = 0

        def on_tick(label: str) -> None:
            nonlocal done
            done += 1
            if label:
                bar.label = f"bench {label:<28.28}"
            bar.update(done)

        bar.label = f"bench {'starting':<28}"
        bar.update(0)
        for index, group in enumerate(groups):
            if all(peer in unavailable for peer in group.peers):
                for _ in range(len(cases) * len(group.peers) * len(group.threads)):
                    on_tick("")
                continue
            payload = _run_group(group, cases, settings, on_tick, Path(tmp), index)
            workers.append(
                {
                    "peers": group.peers,
                    "threads": group.threads,
                    "seconds": round(payload["seconds"], 2),
                }
            )
            results.extend(payload["results"])
            versions.update(payload["versions"])
            notes.extend(note for note in payload["notes"] if note not in notes)
            unavailable.update(payload["unavailable"])
    wall = time.perf_counter() - started

    skipped = [peer for peer in settings["skip_many"] if peer in peers and peer not in unavailable]
    if skipped and args.many is not None:
        notes.append(
            f"--quick: the {args.many[0]}-tensor case leaves out {', '.join(skipped)} "
            "(graph build / compile / per-op calls take 5-15 s); run without --quick"
        )
    if "mindspore" in unavailable and not args.mindspore_python:
        notes.append("mindspore: pass --mindspore-python PATH (a Python with mindspore installed)")
    report: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
        "versions": versions,
        "config": {
            "quick": args.quick,
            "sizes": sizes,
            "dtypes": args.dtypes,
            "threads": args.threads,
            "many": list(args.many) if args.many else None,
            "peers": peers,
            **settings,
        },
        "method": _method(settings),
        "descriptions": {peer: DESCRIPTIONS[peer] for peer in peers},
        "results": results,
        "targets": _targets(results, args.threads),
        "notes": notes,
        "wall_seconds": wall,
        "workers": workers,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_plot:
        report["notes"].append("plot: not written (--no-plot)")
    else:
        plot_note = _plot(report, out / "results.png")
        if plot_note:
            report["notes"].append(plot_note)
    markdown = _markdown(report)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(_console(report, out))
    return 0


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle,
    ):
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    available = _mem_available()
    return {
        "cpu": cpu,
        "cores_available": cores,
        "system": f"{platform.system()} {platform.release()}",
        "memory_available": _format_bytes(available) if available else "unknown",
    }


def _method(settings: dict[str, Any]) -> str:
    return (
        f"Each case runs in a worker process: warm-up (>= 2 calls and {settings['warmup']:g} s), "
        f"then {settings['repeat']} rounds of N back-to-back calls timed with time.perf_counter, N "
        f"chosen so that a round lasts >= {settings['min_time']:g} s (asynchronous peers are "
        "synchronized at the end of each round); time per call = median over rounds. "
        f"GB/s = {ARRAYS_MOVED} arrays x itemsize x elements / time (5 reads + 4 writes). "
        "The state evolves from call to call (real optimizer steps on the same arrays)."
    )


# ---------------------------------------------------------------------------------------------
# Report


def _lookup(
    results: list[dict[str, Any]], peer: str, kind: str, dtype: str, size: int | None, threads: int
) -> dict[str, Any] | None:
    for row in results:
        if (
            row["peer"] == peer
            and row["kind"] == kind
            and row["dtype"] == dtype
            and (size is None or row["size"] == size)
            and row["threads"] == threads
            and row["status"] == "ok"
        ):
            return row
    return None


def _threads_word(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _targets(results: list[dict[str, Any]], threads: list[int]) -> list[dict[str, Any]]:
    """The project's speed goals as ratios within this run; each says met, not met or missing."""
    targets: list[dict[str, Any]] = []

    def missing(name: str, what: list[tuple[str, dict[str, Any] | None]]) -> bool:
        absent = [label for label, row in what if row is None]
        if absent:
            targets.append(
                {
                    "target": name,
                    "status": "not measured",
                    "detail": "no result for " + ", ".join(absent),
                }
            )
        return bool(absent)

    big = 10_000_000
    for count in threads:
        word = _threads_word(count)
        ours = _lookup(results, "amsgrad", "single", "float32", big, count)
        torch = _lookup(results, "torch", "single", "float32", big, count)
        name = f"float32 1e7, {word}: amsgrad time <= 1.1x torch fused"
        if not missing(name, [("amsgrad", ours), ("torch", torch)]):
            assert ours is not None and torch is not None
            ratio = ours["seconds"] / torch["seconds"]
            targets.append(
                {
                    "target": name,
                    "status": "met" if ratio <= 1.1 else "not met",
                    "value": ratio,
                    "detail": f"amsgrad {_format_time(ours['seconds'])}, "
                    f"torch {_format_time(torch['seconds'])}: {ratio:.2f}x",
                }
            )
        roof = _lookup(results, "roofline", "single", "float32", big, count)
        name = f"float32 1e7, {word}: amsgrad bandwidth >= 80% of the roofline"
        if not missing(name, [("amsgrad", ours), ("roofline", roof)]):
            assert ours is not None and roof is not None
            share = ours["gb_per_s"] / roof["gb_per_s"]
            targets.append(
                {
                    "target": name,
                    "status": "met" if share >= 0.8 else "not met",
                    "value": share,
                    "detail": f"amsgrad {ours['gb_per_s']:.1f} GB/s, "
                    f"roofline {roof['gb_per_s']:.1f} GB/s: {100 * share:.0f}%",
                }
            )
        for dtype in ("float16", "float64"):
            ours = _lookup(results, "amsgrad", "single", dtype, big, count)
            torch = _lookup(results, "torch", "single", dtype, big, count)
            name = f"{dtype} 1e7, {word}: amsgrad time <= 1.2x torch fused"
            if not missing(name, [("amsgrad", ours), ("torch", torch)]):
                assert ours is not None and torch is not None
                ratio = ours["seconds"] / torch["seconds"]
                targets.append(
                    {
                        "target": name,
                        "status": "met" if ratio <= 1.2 else "not met",
                        "value": ratio,
                        "detail": f"amsgrad {_format_time(ours['seconds'])}, "
                        f"torch {_format_time(torch['seconds'])}: {ratio:.2f}x",
                    }
                )
        ours = _lookup(results, "amsgrad", "many", "float32", None, count)
        torch = _lookup(results, "torch", "many", "float32", None, count)
        name = (
            f"float32 1000 tensors x 1000, {word}: "
            "amsgrad (one _many call) >= 5x faster than torch fused"
        )
        if ours is not None and (ours["tensors"], ours["size"]) != (1000, 1000):
            targets.append(
                {
                    "target": name,
                    "status": "not measured",
                    "detail": f"this run's multi-tensor case is {ours['tensors']}x{ours['size']}",
                }
            )
        elif not missing(name, [("amsgrad", ours), ("torch", torch)]):
            assert ours is not None and torch is not None
            speedup = torch["seconds"] / ours["seconds"]
            targets.append(
                {
                    "target": name,
                    "status": "met" if speedup >= 5 else "not met",
                    "value": speedup,
                    "detail": f"amsgrad {_format_time(ours['seconds'])}, "
                    f"torch {_format_time(torch['seconds'])}: {speedup:.1f}x faster",
                }
            )
    count = threads[0]
    ours = _lookup(results, "amsgrad", "single", "float32", 1000, count)
    name = f"float32 one tensor of 1000, {_threads_word(count)}: functional API <= 5 us per call"
    if not missing(name, [("amsgrad", ours)]):
        assert ours is not None
        torch = _lookup(results, "torch", "single", "float32", 1000, count)
        extra = f" (torch fused step: {_format_time(torch['seconds'])})" if torch else ""
        targets.append(
            {
                "target": name,
                "status": "met" if ours["seconds"] <= 5e-6 else "not met",
                "value": ours["seconds"],
                "detail": f"amsgrad {_format_time(ours['seconds'])} per call{extra}",
            }
        )
    return targets


def _case_key(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return (DTYPES.index(row["dtype"]), row["kind"] == "many", row["size"], row["threads"])


def _summary_table(report: dict[str, Any]) -> list[str]:
    """Pivot: one row per case and thread count, one column per peer (ns per element)."""
    results = [row for row in report["results"] if row["status"] == "ok"]
    peers = [peer for peer in report["config"]["peers"] if any(r["peer"] == peer for r in results)]
    keys = sorted(
        {
            (_case_key(row), row["dtype"], row["kind"], row["size"], row["tensors"], row["threads"])
            for row in results
        }
    )
    lines = [
        "| case | threads | " + " | ".join(LABELS[peer] for peer in peers) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in peers) + " |",
    ]
    for _key, dtype, kind, size, tensors, threads in keys:
        case = {"dtype": dtype, "kind": kind, "size": size, "tensors": tensors}
        cells = []
        for peer in peers:
            row = _lookup(results, peer, kind, dtype, size, threads)
            cells.append(f"{row['ns_per_element']:.3g}" if row else "-")
        lines.append(f"| {_case_name(case)} | {threads} | " + " | ".join(cells) + " |")
    return lines


def _full_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| case | threads | implementation | time per call | ns / element | GB/s "
        "| time / amsgrad time | % of roofline GB/s | note |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    order = {peer: i for i, peer in enumerate(PEERS)}
    rows = sorted(report["results"], key=lambda r: (_case_key(r), order[r["peer"]]))
    results = report["results"]
    for row in rows:
        case = _case_name(row)
        label = LABELS[row["peer"]]
        if row["status"] != "ok":
            lines.append(
                f"| {case} | {row['threads']} | {label} | {row['status']} | | | | | "
                f"{_cell(row['note'])} |"
            )
            continue
        ours = _lookup(results, "amsgrad", row["kind"], row["dtype"], row["size"], row["threads"])
        roof = _lookup(results, "roofline", row["kind"], row["dtype"], row["size"], row["threads"])
        versus = f"{row['seconds'] / ours['seconds']:.2f}x" if ours else "-"
        share = f"{100 * row['gb_per_s'] / roof['gb_per_s']:.0f}%" if roof else "-"
        lines.append(
            f"| {case} | {row['threads']} | {label} | {_format_time(row['seconds'])} "
            f"| {row['ns_per_element']:.3g} | {row['gb_per_s']:.3g} | {versus} | {share} "
            f"| {_cell(row['note'])} |"
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _target_lines(report: dict[str, Any]) -> list[str]:
    marks = {"met": "met", "not met": "NOT MET", "not measured": "not measured"}
    return [f"- **{marks[t['status']]}**: {t['target']} ({t['detail']})" for t in report["targets"]]


def _markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    versions = ", ".join(f"{name} {value}" for name, value in sorted(report["versions"].items()))
    lines = [
        "# amsgrad benchmark",
        "",
        f"{report['date']}; {machine['cpu']}, {machine['cores_available']} cores available, "
        f"{machine['memory_available']} memory available, {machine['system']}.",
        "",
        f"Versions: {versions or 'unknown'}.",
        "",
        f"Method: {report['method']}",
        "",
        "## Speed goals",
        "",
        *_target_lines(report),
        "",
        "## Summary: ns per element (lower is better)",
        "",
        *_summary_table(report),
        "",
        "## All results",
        "",
        "time / amsgrad time: above 1 means amsgrad is faster. % of roofline GB/s: the share of",
        "the measured memory roofline (same case, same threads) this implementation reaches.",
        "",
        *_full_table(report),
        "",
        "## What each row runs",
        "",
        *(f"- {LABELS[peer]}: {text}" for peer, text in report["descriptions"].items()),
        "",
    ]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {_cell(note)}" for note in report["notes"]), ""]
    return "\n".join(lines)


def _console(report: dict[str, Any], out: Path) -> str:
    lines = [
        *_summary_table(report),
        "",
        "Speed goals:",
        *(f"  {t['status']:>12}: {t['target']} ({t['detail']})" for t in report["targets"]),
    ]
    if report["notes"]:
        lines += ["", "Notes:", *(f"  - {note}" for note in report["notes"])]
    lines += [
        "",
        f"Method: {report['method']}",
        "",
        f"Wrote {out / 'results.md'}, results.json"
        + ("" if any("plot:" in n for n in report["notes"]) else ", results.png")
        + f" ({report['wall_seconds']:.0f} s)",
    ]
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> str | None:
    """Write results.png; returns a note when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot: matplotlib is not installed, results.png not written"
    results = [row for row in report["results"] if row["status"] == "ok"]
    dtypes = [d for d in DTYPES if any(r["dtype"] == d for r in results)]
    many = [r for r in results if r["kind"] == "many"]
    panels = len(dtypes) + (1 if many else 0)
    if panels == 0:
        return "plot: nothing measured, results.png not written"
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), squeeze=False)
    colors = {peer: f"C{i}" for i, peer in enumerate(PEERS)}
    styles = ["-", "--", ":", "-."]
    threads = report["config"]["threads"]
    for ax, dtype in zip(axes[0], dtypes, strict=False):
        for peer in PEERS:
            for t_index, count in enumerate(threads):
                rows = sorted(
                    (
                        r
                        for r in results
                        if r["peer"] == peer
                        and r["dtype"] == dtype
                        and r["kind"] == "single"
                        and r["threads"] == count
                    ),
                    key=lambda r: r["size"],
                )
                if rows:
                    ax.plot(
                        [r["size"] for r in rows],
                        [r["gb_per_s"] for r in rows],
                        styles[t_index % len(styles)],
                        marker="o",
                        markersize=3,
                        color=colors[peer],
                        label=f"{LABELS[peer]}, {count}t",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{dtype}, one tensor")
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (9 arrays x itemsize per element)")
        ax.grid(True, which="both", alpha=0.3)
    if many:
        ax = axes[0][-1]
        labels, values, bar_colors = [], [], []
        for row in sorted(many, key=lambda r: (_case_key(r), PEERS.index(r["peer"]))):
            labels.append(f"{row['dtype']} {row['peer']}, {row['threads']}t")
            values.append(row["seconds"] * 1e6)
            bar_colors.append(colors[row["peer"]])
        ax.barh(range(len(values)), values, color=bar_colors)
        ax.set_yticks(range(len(values)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        sample = many[0]
        ax.set_title(f"{sample['tensors']} tensors x {sample['size']}: us per step")
        ax.set_xlabel("us per step (lower is better)")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=7)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * math.ceil(len(names) / 4), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


if __name__ == "__main__":
    sys.exit(main())
