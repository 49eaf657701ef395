"""The benchmark suite runs end to end and writes its three files (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amsgrad.apps import bench, bench_report, bench_scenarios, bench_worker


def test_quick_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [
        "--quick",
        "--out",
        str(out),
        "--sizes",
        "1e3,2000",
        "--many",
        "3x50",
        "--peers",
        "amsgrad,roofline,numpy",
        "--repeat",
        "2",
        "--min-time",
        "0.001",
        "--scenarios",
        "single-call",
    ]
    assert bench.main(argv) == 0

    markdown = (out / "results.md").read_text(encoding="utf-8")
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    table = [line for line in markdown.splitlines() if line.startswith("| float32")]
    assert any("| amsgrad |" in line for line in table)
    assert any("| roofline (memory bound) |" in line for line in table)
    assert "## Speed goals" in markdown

    rows = report["results"]
    ours = [row for row in rows if row["peer"] == "amsgrad"]
    assert {(row["kind"], row["size"]) for row in ours} == {
        ("single", 1000),
        ("single", 2000),
        ("many", 50),
    }
    assert all(row["status"] == "ok" and row["gb_per_s"] > 0 for row in ours)
    assert any(row["peer"] == "roofline" for row in rows)  # measured, or skipped with a note
    assert report["targets"], "the targets section is always there"
    (scenario,) = report["scenarios"]
    assert scenario["scenario"] == "single-call"
    assert set(scenario["seconds"]) == {"apply_adam_with_amsgrad_v2", "np.add(a, b, out=c)"}
    assert all(value > 0 for value in scenario["seconds"].values())
    assert "| single-call | np.add(a, b, out=c) |" in markdown
    text = bench_report.readme(report)
    assert text.startswith("| case | threads | amsgrad |")
    assert "| single-call | np.add(a, b, out=c) |" in text and "Speed goals" in text
    single = [t for t in report["targets"] if "np.add" in t["target"]]
    assert single and single[0]["status"] in ("met", "not met")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any("matplotlib" in note for note in report["notes"])
    else:
        assert (out / "results.png").stat().st_size > 0


def _row(peer: str, kind: str, dtype: str, size: int, seconds: float, tensors: int = 1) -> dict:
    elements = size * tensors
    return {
        "peer": peer,
        "kind": kind,
        "dtype": dtype,
        "size": size,
        "tensors": tensors,
        "elements": elements,
        "threads": 1,
        "status": "ok",
        "note": "",
        "seconds": seconds,
        "ns_per_element": seconds / elements * 1e9,
        "gb_per_s": 9 * bench_worker.ITEMSIZE[dtype] * elements / seconds / 1e9,
    }


def test_targets_are_computed_from_the_results() -> None:
    results = [
        _row("amsgrad", "single", "float32", 10**7, 1.0e-2),
        _row("torch", "single", "float32", 10**7, 1.0e-2),
        _row("roofline", "single", "float32", 10**7, 0.9e-2),
        _row("amsgrad", "single", "float16", 10**7, 1.3e-2),
        _row("torch", "single", "float16", 10**7, 1.0e-2),
        _row("amsgrad", "many", "float32", 1000, 1e-3, tensors=1000),
        _row("torch", "many", "float32", 1000, 6e-3, tensors=1000),
        _row("amsgrad", "single", "float32", 1000, 4e-6),
    ]
    status = {
        t["target"].split(": ", 1)[1]: t["status"] for t in bench_report.targets(results, [1])
    }
    assert status["amsgrad time <= 1.1x torch fused"] == "met"
    assert status["amsgrad bandwidth >= 80% of the roofline"] == "met"
    assert status["functional API <= 5 us per call"] == "met"
    assert status["amsgrad (one _many call) >= 5x faster than torch fused"] == "met"
    texts = {t["target"]: t["status"] for t in bench_report.targets(results, [1])}
    assert texts["float16 1e7, 1 thread: amsgrad time <= 1.2x torch fused"] == "not met"
    assert texts["float64 1e7, 1 thread: amsgrad time <= 1.2x torch fused"] == "not measured"


def test_scenario_goals_are_ratios_within_the_run() -> None:
    scenarios = [
        {
            "scenario": "optimizer-step",
            "seconds": {
                "AMSGradV2.step()": 1.2e-3,
                "torch fused Adam step": 6e-3,
                "one _many call": 1e-3,
            },
        },
        {
            "scenario": "per-tensor",
            "seconds": {"_many 1000 x 1000": 2e-3, "one call on 1e6": 1e-3, "_many 1000 x 1": 1e-4},
        },
        {"scenario": "jax-step", "error": "not installed: jax"},
        {
            "scenario": "torch-compile",
            "seconds": {"compiled step": 1e-3, "eager step": 1e-3},
            "compile_seconds": 1.0,
            "recompiles": 3,
            "graph_break_warnings": [],
            "same_bits": True,
        },
    ]
    status = {g["target"]: g["status"] for g in bench_scenarios.goals(scenarios)}
    assert status == {
        "optimizer step, 1000 x 1000 float32: AMSGradV2.step() <= 1.3x one _many call": "met",
        "optimizer step, 1000 x 1000 float32: AMSGradV2.step() >= 3x faster than torch fused": (
            "met"
        ),
        "_many over 1000 x 1000 float32 (arrays allocated role by role) <= 1.5x one call on 1e6": (
            "not met"
        ),
        "_many: cost per tensor <= 0.3 us (1000 tensors of 1 element)": "met",
        "jitted optax step on a 4 x 512 x 512 MLP: amsgrad_v2 <= 1.1x optax.amsgrad": (
            "not measured"
        ),
        "compile of that step: amsgrad_v2 <= 1.5x optax.amsgrad": "not measured",
        "torch.compile of a training step: no recompiles, no graph-break warnings, same bits": (
            "not met"
        ),
    }


def test_float16_goal_follows_the_instruction_set() -> None:
    results = [
        _row("amsgrad", "single", "float16", 10**7, 1.3e-2),
        _row("torch", "single", "float16", 10**7, 1.0e-2),
    ]
    cases = (("native (avx512f+avx2+f16c)", "not met"), ("native (avx2+f16c)", "met"))
    for simd, expected in cases:
        goals = bench_report.targets(results, [1], {"amsgrad": f"0.1.0 ({simd})"})
        (f16,) = [g for g in goals if g["target"].startswith("float16 1e7")]
        assert f16["status"] == expected, simd


@pytest.mark.parametrize(
    ("text", "sizes"), [("1e3,1e4", [1000, 10000]), ("1000, 2_500", [1000, 2500])]
)
def test_sizes_parse(text: str, sizes: list[int]) -> None:
    assert bench._parse_sizes(text) == sizes


@pytest.mark.parametrize("argv", [["--sizes", "1.5"], ["--dtypes", "int8"], ["--threads", "0"]])
def test_bad_arguments_exit(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench.main([*argv, "--out", str(tmp_path)])


def test_jax_step_scenario_reports_step_and_compile_medians() -> None:
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    (result,) = bench_scenarios.run(["jax-step"], repeat=2, min_time=0.001)
    assert "error" not in result, result.get("error")
    labels = {"amsgrad.optax.amsgrad_v2", "optax.amsgrad"}
    assert set(result["seconds"]) == set(result["compile"]) == labels
    assert all(value > 0 for value in (*result["seconds"].values(), *result["compile"].values()))
    statuses = [g["status"] for g in bench_scenarios.goals([result]) if "optax" in g["target"]]
    assert len(statuses) == 2 and set(statuses) <= {"met", "not met"}


def test_cases_that_were_not_measured_say_why(tmp_path: Path, capsys) -> None:
    """A size beyond this machine's memory is skipped, and the console says so (not an empty
    table)."""
    argv = ["--sizes", "1e13", "--dtypes", "float32", "--threads", "1", "--many", "none"]
    argv += ["--peers", "amsgrad", "--scenarios", "none", "--no-plot", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "No case was measured." in out
    assert "- float32 1e13, amsgrad, threads 1: skipped: needs about" in out
