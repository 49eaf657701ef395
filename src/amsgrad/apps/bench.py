"""The benchmark suite: amsgrad's kernel side by side with its peers and the memory roofline.

Run it as ``amsgrad bench``, ``python -m amsgrad.apps.bench`` or ``python benchmarks/run.py``
(``--help`` lists the options; ``benchmarks/README.md`` explains every column). This module is
the driver: it parses the options, starts one worker process per group of peers
(:mod:`amsgrad.apps.bench_worker`, run as a file so that it needs nothing of this package in
MindSpore's own interpreter), gathers their results and writes the report
(:mod:`amsgrad.apps.bench_report`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from amsgrad.apps.bench_report import console, markdown, plot, targets
from amsgrad.apps.bench_scenarios import SCENARIOS, goals
from amsgrad.apps.bench_worker import (
    ARRAYS_MOVED,
    DEFAULT_MANY,
    DEFAULT_SIZES,
    DESCRIPTIONS,
    DTYPES,
    PEERS,
    QUICK_DTYPES,
    QUICK_MANY_SKIP,
    QUICK_SIZES,
    QUICK_THREADS,
    TICK,
    format_bytes,
    mem_available,
)
from amsgrad.apps.files import folder_problem

__all__ = ["main"]

WORKER = Path(__file__).resolve().with_name("bench_worker.py")

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
        package_parent = str(Path(__file__).resolve().parents[2])  # the folder holding amsgrad/
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
    command = [group.python, "-c", _BOOT, str(WORKER), str(spec_path)]
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
                if line.startswith(TICK):
                    ticks += 1
                    on_tick(line[len(TICK) :].strip())
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
    parser.add_argument(
        "--scenarios",
        type=_parse_scenarios,
        default=None,
        help="what users run, timed beside its peer: "
        f"{','.join(SCENARIOS)} (the default: all; quick: the first four), or 'none'",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write results.png")
    return parser


def _parse_scenarios(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    return _parse_choices(tuple(SCENARIOS))(text)


def _scenario_batches(names: list[str]) -> list[list[str]]:
    return [[name for name in names if name != "jax-step"], [n for n in names if n == "jax-step"]]


def _run_scenarios(
    names: list[str], settings: dict[str, Any], workdir: Path, on_tick: Callable[[str], None]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The scenarios in worker processes (JAX apart: its thread pool is fixed at start)."""
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    for index, batch in enumerate(filter(None, _scenario_batches(names))):
        spec = workdir / f"scenarios{index}.json"
        out = workdir / f"scenarios{index}.out.json"
        spec.write_text(
            json.dumps(
                {"scenarios": batch, "repeat": settings["repeat"], "min_time": settings["min_time"]}
            ),
            encoding="utf-8",
        )
        on_tick(f"scenarios: {', '.join(batch)}")
        env = _worker_env(_Group([], sys.executable, [1], affinity=1))
        done = subprocess.run(
            [sys.executable, "-m", "amsgrad.apps.bench_scenarios", str(spec), str(out)],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        if done.returncode == 0 and out.exists():
            results.extend(json.loads(out.read_text(encoding="utf-8")))
        else:
            notes.append(
                f"scenarios {', '.join(batch)}: worker exited with code {done.returncode}: "
                f"{done.stderr.strip()[-600:]}"
            )
    return results, notes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark suite; returns the exit status (0 on success)."""

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
    scenario_names = (
        args.scenarios
        if args.scenarios is not None
        else list(SCENARIOS)[: 4 if args.quick else len(SCENARIOS)]
    )
    total = sum(len(cases) * len(group.peers) * len(group.threads) for group in groups)
    total += sum(bool(batch) for batch in _scenario_batches(scenario_names))

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
        scenarios, scenario_notes = _run_scenarios(scenario_names, settings, Path(tmp), on_tick)
        notes.extend(scenario_notes)
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
        "targets": targets(results, args.threads, versions) + goals(scenarios),
        "scenarios": scenarios,
        "scenario_descriptions": {name: SCENARIOS[name] for name in scenario_names},
        "notes": notes,
        "wall_seconds": wall,
        "workers": workers,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_plot:
        report["notes"].append("plot: not written (--no-plot)")
    else:
        plot_note = plot(report, out / "results.png")
        if plot_note:
            report["notes"].append(plot_note)
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(console(report, out))
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
    available = mem_available()
    return {
        "cpu": cpu,
        "cores_available": cores,
        "system": f"{platform.system()} {platform.release()}",
        "memory_available": format_bytes(available) if available else "unknown",
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


if __name__ == "__main__":
    sys.exit(main())
