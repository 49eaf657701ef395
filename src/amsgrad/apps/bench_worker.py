"""The benchmark suite's worker: times one peer (or a group of peers) on the benchmark cases.

The driver (:mod:`amsgrad.apps.bench`, ``amsgrad bench``) starts it in a subprocess for each
group of peers.

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

Every peer runs in a worker subprocess that executes this file (only the standard library
and NumPy are imported at its top level, so it runs in any interpreter with NumPy: MindSpore's
virtual environment needs nothing from this package). The worker times each case with the same
harness: warm-up, then ``repeat`` rounds of N back-to-back calls timed with
``time.perf_counter`` (N chosen so a round lasts at least ``--min-time`` seconds); the reported
time per call is the median over rounds (the best round is kept in results.json).

Bandwidth counts 9 arrays x itemsize bytes per element: 5 reads (var, m, v, vhat, grad) and
4 writes (var, m, v, vhat).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["DTYPES", "LABELS", "PEERS", "case_name", "format_time"]

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

TICK = "@@amsgrad-bench-tick@@"


# ---------------------------------------------------------------------------------------------
# Small helpers (used by the driver and the workers)


def mem_available() -> int | None:
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


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def format_time(seconds: float | None) -> str:
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


def case_name(case: dict[str, Any]) -> str:
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
    print(f"{TICK} {peer} {case_name(case)} t{threads}", flush=True)


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
    available = mem_available()
    if available is not None and need + MEMORY_MARGIN > available:
        note = f"skipped: needs about {format_bytes(need)}, {format_bytes(available)} available"
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
