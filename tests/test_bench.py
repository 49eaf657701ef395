"""The benchmark suite runs end to end and writes its three files (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amsgrad.apps import bench, bench_report, bench_worker


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


@pytest.mark.parametrize(
    ("text", "sizes"), [("1e3,1e4", [1000, 10000]), ("1000, 2_500", [1000, 2500])]
)
def test_sizes_parse(text: str, sizes: list[int]) -> None:
    assert bench._parse_sizes(text) == sizes


@pytest.mark.parametrize("argv", [["--sizes", "1.5"], ["--dtypes", "int8"], ["--threads", "0"]])
def test_bad_arguments_exit(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench.main([*argv, "--out", str(tmp_path)])


def test_jax_step_case_runs_and_reports(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    out = tmp_path / "results"
    argv = ["--quick", "--out", str(out), "--sizes", "1e3", "--many", "none", "--peers", "jax",
            "--jax-step", "2x16", "--repeat", "2", "--min-time", "0.001", "--no-plot"]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    result = report["jax_step"]
    assert (result["layers"], result["width"], result["parameters"]) == (2, 16, 2 * (16 * 16 + 16))
    assert result["repeat"] >= 5  # the case keeps at least 5 interleaved rounds
    for row in result["peers"].values():
        assert len(row["step_rounds"]) == len(row["compile_rounds"]) == result["repeat"]
        assert row["step_seconds"] > 0 and row["compile_seconds"] > 0
    names = [t["target"] for t in report["targets"]]
    assert any("JAX MLP 2x16" in name and "step time" in name for name in names)
    assert "## JAX: the jitted optimizer step" in (out / "results.md").read_text(encoding="utf-8")


def test_jax_step_targets_and_option() -> None:
    assert bench_report.jax_step_targets(None) == []
    result = {"layers": 4, "width": 512, "repeat": 5, "step_ratio": 1.05, "compile_ratio": 1.6}
    status = {
        t["target"].split(": ")[1]: t["status"] for t in bench_report.jax_step_targets(result)
    }
    assert status == {
        "amsgrad_v2 step time <= 1.1x optax.amsgrad": "met",
        "amsgrad_v2 compile time <= 1.5x optax.amsgrad": "not met",
    }
    with pytest.raises(SystemExit):
        bench.main(["--jax-step", "4by512"])
