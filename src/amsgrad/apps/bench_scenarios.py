"""Benchmark scenarios: what users run, each timed side by side with its peer in one process.

The peer table of :mod:`amsgrad.apps.bench` times one kernel call per peer. A scenario times
what a user of the library runs (an optimizer step over many parameters, a single small call, a
jitted optax step, a compiled torch training step) next to the thing it should be compared
with, in one process, with the contenders interleaved round by round so that both see the same
machine. Each scenario yields a goal: a ratio between two contenders (or, for torch.compile,
counts) with a threshold; :func:`goals` turns the results into the report's speed goals.

Run by the bench driver as ``python -m amsgrad.apps.bench_scenarios SPEC OUT`` (one process
for the torch and NumPy scenarios, one for JAX: its thread pool is fixed at start).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from amsgrad.apps.bench_worker import format_time

__all__ = ["SCENARIOS", "goals", "run"]

#: Scenario name -> what it times (the report's wording).
SCENARIOS = {
    "optimizer-step": "AMSGradV2.step() over 1000 float32 parameters of 1000 elements, against "
    "torch.optim.Adam(amsgrad=True, fused=True).step() and one "
    "apply_adam_with_amsgrad_v2_many call on NumPy arrays of the same sizes",
    "optimizer-step-small": "AMSGradV2.step() over 1000 float32 parameters of 10 elements, "
    "against torch.optim.Adam(amsgrad=True, fused=True).step()",
    "per-tensor": "apply_adam_with_amsgrad_v2_many over 1000 float32 arrays of 1000 elements "
    "(allocated role by role, and tensor by tensor), against one apply_adam_with_amsgrad_v2 "
    "call on an array of 1e6; and over 1000 arrays of 1 element (the cost per tensor)",
    "single-call": "apply_adam_with_amsgrad_v2 on 1000 float32 elements, against "
    "np.add(a, b, out=c) on arrays of the same size",
    "torch-compile": "a training step (2-layer MLP, backward, AMSGradV2.step(), zero_grad) "
    "under torch.compile(backend='aot_eager'), 20 steps: recompiles, graph-break warnings, "
    "bits against the same steps run eagerly, compile time and step time against eager",
    "jax-step": "a jitted amsgrad.optax.amsgrad_v2 update + apply_updates on an MLP (4 layers "
    "of 512x512 float32), against optax.amsgrad; step time and compile time",
}
TORCH_SCENARIOS = ("optimizer-step", "optimizer-step-small", "per-tensor", "single-call")
HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)


def _interleaved(
    contenders: dict[str, Callable[[], Any]], repeat: int, min_time: float
) -> dict[str, float]:
    """Seconds per call of each contender: N calls per round (a round lasts >= min_time),
    ``repeat`` rounds taken in turn, the median round."""
    counts = {}
    for name, call in contenders.items():
        call()
        call()
        began, count = time.perf_counter(), 0
        while time.perf_counter() - began < max(min_time / 4, 1e-3):
            call()
            count += 1
        per_call = (time.perf_counter() - began) / count
        counts[name] = max(1, int(min_time / max(per_call, 1e-9)))
    rounds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, call in contenders.items():
            began = time.perf_counter()
            for _ in range(counts[name]):
                call()
            rounds[name].append((time.perf_counter() - began) / counts[name])
    return {name: statistics.median(values) for name, values in rounds.items()}


def _arrays(count: int, size: int, seed: int = 0, by_role: bool = False) -> list[list[np.ndarray]]:
    """Five lists of ``count`` float32 arrays (var, m, v, vhat, grad; v and vhat >= 0).
    Allocated tensor by tensor (each tensor's five arrays next to each other, as an optimizer
    that creates a parameter's state at once), or with ``by_role`` role by role."""
    rng = np.random.default_rng(seed)
    lists: list[list[np.ndarray]] = [[] for _ in range(5)]
    order = (
        [(role, i) for role in range(5) for i in range(count)]
        if by_role
        else [(role, i) for i in range(count) for role in range(5)]
    )
    for role, _ in order:
        values = rng.standard_normal(size).astype(np.float32)
        lists[role].append(np.abs(values) if role in (2, 3) else values)
    return lists


def _many_call(lists: list[list[np.ndarray]]) -> None:
    """One multi-tensor call over the five lists (a single array per list: one tensor)."""
    import amsgrad

    var, m, v, vhat, grad = lists
    if len(var) == 1:
        amsgrad.apply_adam_with_amsgrad_v2(var[0], m[0], v[0], vhat[0], *HYPER, grad[0])
    else:
        amsgrad.apply_adam_with_amsgrad_v2_many(var, m, v, vhat, *HYPER, grad)


def _torch_params(count: int, size: int) -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(size, generator=gen)) for _ in range(count)]
    for param in params:
        param.grad = torch.randn(size, generator=gen)
    return params


def _optimizer_step(count: int, size: int, repeat: int, min_time: float) -> dict[str, Any]:
    import torch

    from amsgrad.torch import AMSGradV2

    ours = AMSGradV2(_torch_params(count, size), lr=1e-3)
    peer = torch.optim.Adam(_torch_params(count, size), lr=1e-3, amsgrad=True, fused=True)
    contenders: dict[str, Callable[[], Any]] = {
        "AMSGradV2.step()": ours.step,
        "torch fused Adam step": peer.step,
    }
    if size >= 1000:
        lists = _arrays(count, size)
        contenders["one _many call"] = lambda: _many_call(lists)
    return {"seconds": _interleaved(contenders, repeat, min_time)}


def _per_tensor(repeat: int, min_time: float) -> dict[str, Any]:
    by_role = _arrays(1000, 1000, by_role=True)
    adjacent = _arrays(1000, 1000, seed=2)
    tiny = _arrays(1000, 1, seed=3)
    one = _arrays(1, 1_000_000, seed=1)
    contenders = {
        "_many 1000 x 1000": lambda: _many_call(by_role),
        "one call on 1e6": lambda: _many_call(one),
        "_many 1000 x 1000, each tensor's arrays adjacent": lambda: _many_call(adjacent),
        "_many 1000 x 1": lambda: _many_call(tiny),
    }
    return {"seconds": _interleaved(contenders, repeat, min_time)}


def _single_call(repeat: int, min_time: float) -> dict[str, Any]:
    import amsgrad

    var, m, v, vhat, grad = (items[0] for items in _arrays(1, 1000))
    a, b, c = (np.ones(1000, np.float32) for _ in range(3))
    single = amsgrad.apply_adam_with_amsgrad_v2
    contenders = {
        "apply_adam_with_amsgrad_v2": lambda: single(var, m, v, vhat, *HYPER, grad),
        "np.add(a, b, out=c)": lambda: np.add(a, b, out=c),
    }
    return {"seconds": _interleaved(contenders, repeat, min_time)}


def _torch_compile(repeat: int, min_time: float) -> dict[str, Any]:
    import torch
    from torch._dynamo.utils import counters

    from amsgrad.torch import AMSGradV2

    def setup() -> tuple[Any, Any, Callable[[Any, Any], Any]]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 1)
        )
        opt = AMSGradV2(model.parameters(), lr=1e-3)

        def train_step(x: Any, y: Any) -> Any:
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return model, opt, train_step

    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(32, 64, generator=gen), torch.randn(32, 1, generator=gen))] * 4
    torch._dynamo.reset()
    counters.clear()
    model, _, step = setup()
    compiled = torch.compile(step, backend="aot_eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        began = time.perf_counter()
        compiled(*data[0])
        compile_seconds = time.perf_counter() - began
        graphs_after_first = counters["stats"]["unique_graphs"]
        for index in range(1, 20):
            compiled(*data[index % len(data)])
        recompiles = counters["stats"]["unique_graphs"] - graphs_after_first
    reference, _, eager = setup()
    for index in range(20):
        eager(*data[index % len(data)])
    same = all(
        torch.equal(a.detach(), b.detach())
        for a, b in zip(model.parameters(), reference.parameters(), strict=True)
    )
    timed = _interleaved(
        {"compiled step": lambda: compiled(*data[0]), "eager step": lambda: eager(*data[0])},
        repeat,
        min_time,
    )
    graph_warnings = [
        str(w.message)[:200]
        for w in caught
        if "dynamo" in str(w.message).lower() or "graph" in str(w.message).lower()
    ]
    return {
        "seconds": timed,
        "compile_seconds": compile_seconds,
        "recompiles": recompiles,
        "graph_break_warnings": graph_warnings,
        "same_bits": same,
    }


def _jax_mlp() -> tuple[Any, Any]:
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    params = {
        f"layer{i}": {
            "w": jnp.asarray(rng.standard_normal((512, 512)).astype(np.float32) * 0.05),
            "b": jnp.zeros(512, jnp.float32),
        }
        for i in range(4)
    }
    grads = {
        name: {
            key: jnp.asarray(rng.standard_normal(leaf.shape).astype(np.float32))
            for key, leaf in layer.items()
        }
        for name, layer in params.items()
    }
    return params, grads


def _jax_step(repeat: int, min_time: float) -> dict[str, Any]:
    import jax
    import optax

    from amsgrad.optax import amsgrad_v2

    params, grads = _jax_mlp()
    contenders: dict[str, Callable[[], Any]] = {}
    for label, tx in (
        ("amsgrad.optax.amsgrad_v2", amsgrad_v2(1e-3)),
        ("optax.amsgrad", optax.amsgrad(1e-3, eps=1e-8)),
    ):

        def step(params: Any, state: Any, grads: Any, tx: Any = tx) -> Any:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        jitted = jax.jit(step)
        state = tx.init(params)
        compiled = jitted.lower(params, state, grads).compile()
        box = [params, state]

        def call(compiled: Any = compiled, box: list[Any] = box) -> None:
            box[0], box[1] = compiled(box[0], box[1], grads)
            jax.block_until_ready(box[0])

        contenders[label] = call
    seconds = _interleaved(contenders, repeat, min_time)
    return {"seconds": seconds, "compile": _jax_compile_medians(params, grads, repeat)}


def _jax_compile_medians(params: Any, grads: Any, repeat: int) -> dict[str, float]:
    """Seconds to trace, lower and compile each optimizer's step: a fresh function each time
    (so nothing is cached), ``max(repeat, 5)`` rounds taken in turn with the order swapped
    every round, the median round (one compile on a shared machine varies by tens of %)."""
    import jax
    import optax

    from amsgrad.optax import amsgrad_v2

    makers: dict[str, Callable[[], Any]] = {
        "amsgrad.optax.amsgrad_v2": lambda: amsgrad_v2(1e-3),
        "optax.amsgrad": lambda: optax.amsgrad(1e-3, eps=1e-8),
    }
    rounds: dict[str, list[float]] = {label: [] for label in makers}
    for index in range(max(repeat, 5)):
        order = list(makers) if index % 2 == 0 else list(makers)[::-1]
        for label in order:
            tx = makers[label]()

            def step(params: Any, state: Any, grads: Any, tx: Any = tx) -> Any:
                updates, state = tx.update(grads, state, params)
                return optax.apply_updates(params, updates), state

            state = tx.init(params)
            began = time.perf_counter()
            jax.jit(step).lower(params, state, grads).compile()
            rounds[label].append(time.perf_counter() - began)
    return {label: statistics.median(values) for label, values in rounds.items()}


def run(names: list[str], repeat: int, min_time: float) -> list[dict[str, Any]]:
    """Run the named scenarios on one thread; each result holds its name and measurements,
    or ``error`` when it could not run here."""
    try:
        import amsgrad

        amsgrad.set_num_threads(1)
    except ImportError:
        pass
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "optimizer-step": lambda: _optimizer_step(1000, 1000, repeat, min_time),
        "optimizer-step-small": lambda: _optimizer_step(1000, 10, repeat, min_time),
        "per-tensor": lambda: _per_tensor(repeat, min_time),
        "single-call": lambda: _single_call(repeat, min_time),
        "torch-compile": lambda: _torch_compile(repeat, min_time),
        "jax-step": lambda: _jax_step(repeat, min_time),
    }
    if any(name in names for name in (*TORCH_SCENARIOS, "torch-compile")):
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
    results = []
    for name in names:
        try:
            result = runners[name]()
        except ImportError as error:
            result = {"error": f"not installed: {error.name or error}"}
        except Exception as error:  # a scenario that fails is reported, not fatal
            result = {"error": f"{type(error).__name__}: {error}"[:300]}
        results.append({"scenario": name, **result})
    return results


def _ratio_goal(
    name: str, result: dict[str, Any] | None, top: str, bottom: str, limit: float, faster: bool
) -> dict[str, Any]:
    """``top / bottom <= limit`` (or, with ``faster``, ``bottom / top >= limit``)."""
    seconds = (result or {}).get("seconds") or {}
    if top not in seconds or bottom not in seconds:
        why = (result or {}).get("error") or f"no result for {top} or {bottom}"
        return {"target": name, "status": "not measured", "detail": why}
    a, b = seconds[top], seconds[bottom]
    value = b / a if faster else a / b
    met = value >= limit if faster else value <= limit
    word = f"{value:.2f}x faster" if faster else f"{value:.2f}x"
    return {
        "target": name,
        "status": "met" if met else "not met",
        "value": value,
        "detail": f"{top} {format_time(a)}, {bottom} {format_time(b)}: {word}",
    }


def goals(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The speed goals of the scenarios (1 thread), for the report."""
    by_name = {item["scenario"]: item for item in scenarios}
    out = []
    if "optimizer-step" in by_name:
        step = by_name["optimizer-step"]
        out.append(
            _ratio_goal(
                "optimizer step, 1000 x 1000 float32: AMSGradV2.step() <= 1.3x one _many call",
                step,
                "AMSGradV2.step()",
                "one _many call",
                1.3,
                False,
            )
        )
        out.append(
            _ratio_goal(
                "optimizer step, 1000 x 1000 float32: AMSGradV2.step() >= 3x faster than torch "
                "fused",
                step,
                "AMSGradV2.step()",
                "torch fused Adam step",
                3.0,
                True,
            )
        )
    if "optimizer-step-small" in by_name:
        out.append(
            _ratio_goal(
                "optimizer step, 1000 x 10 float32: AMSGradV2.step() >= 1.5x faster than torch "
                "fused",
                by_name["optimizer-step-small"],
                "AMSGradV2.step()",
                "torch fused Adam step",
                1.5,
                True,
            )
        )
    if "per-tensor" in by_name:
        per_tensor = by_name["per-tensor"]
        out.append(
            _ratio_goal(
                "_many over 1000 x 1000 float32 (arrays allocated role by role) <= 1.5x one call "
                "on 1e6",
                per_tensor,
                "_many 1000 x 1000",
                "one call on 1e6",
                1.5,
                False,
            )
        )
        seconds = per_tensor.get("seconds") or {}
        name = "_many: cost per tensor <= 0.3 us (1000 tensors of 1 element)"
        if "_many 1000 x 1" in seconds:
            cost = seconds["_many 1000 x 1"] / 1000
            out.append(
                {
                    "target": name,
                    "status": "met" if cost <= 0.3e-6 else "not met",
                    "value": cost,
                    "detail": f"{format_time(cost)} per tensor",
                }
            )
        else:
            out.append({"target": name, "status": "not measured", "detail": "no result"})
    if "single-call" in by_name:
        out.append(
            _ratio_goal(
                "one call on 1000 float32 elements <= 3x one np.add on the same arrays",
                by_name["single-call"],
                "apply_adam_with_amsgrad_v2",
                "np.add(a, b, out=c)",
                3.0,
                False,
            )
        )
    if "jax-step" in by_name:
        jax_step = by_name["jax-step"]
        out.append(
            _ratio_goal(
                "jitted optax step on a 4 x 512 x 512 MLP: amsgrad_v2 <= 1.1x optax.amsgrad",
                jax_step,
                "amsgrad.optax.amsgrad_v2",
                "optax.amsgrad",
                1.1,
                False,
            )
        )
        out.append(
            _ratio_goal(
                "compile of that step: amsgrad_v2 <= 1.5x optax.amsgrad",
                {"seconds": jax_step.get("compile"), "error": jax_step.get("error")},
                "amsgrad.optax.amsgrad_v2",
                "optax.amsgrad",
                1.5,
                False,
            )
        )
    if "torch-compile" in by_name:
        item = by_name["torch-compile"]
        name = "torch.compile of a training step: no recompiles, no graph-break warnings, same bits"
        if "error" in item:
            out.append({"target": name, "status": "not measured", "detail": item["error"]})
        else:
            ok = not item["recompiles"] and not item["graph_break_warnings"] and item["same_bits"]
            compiled, eager = item["seconds"]["compiled step"], item["seconds"]["eager step"]
            out.append(
                {
                    "target": name,
                    "status": "met" if ok else "not met",
                    "detail": f"{item['recompiles']} recompiles after the first step, "
                    f"{len(item['graph_break_warnings'])} warnings, same bits as eager: "
                    f"{item['same_bits']}; compile {format_time(item['compile_seconds'])}, step "
                    f"{format_time(compiled)} compiled, {format_time(eager)} eager",
                }
            )
    return out


def _main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as handle:
        spec = json.load(handle)
    results = run(spec["scenarios"], spec["repeat"], spec["min_time"])
    with open(argv[1], "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
