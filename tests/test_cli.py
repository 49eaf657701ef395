"""The ``amsgrad`` command: each subcommand with small settings, and its error paths."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import amsgrad
from amsgrad.apps import cli, demo, reddi2018
from amsgrad.apps.progress import Progress

PUBLISHED_LINES = ("[[0.19886853 0.1985858 ]", " [0.19853032 0.19849943]]")
SMALL_ONLINE = [
    "reproduce", "reddi2018", "--steps", "10000", "--alphas", "0.5", "--form", "online",
    "--trajectories", "4",
]  # fmt: skip


def _run(capsys, argv):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith(("amsgrad: error: ", "amsgrad bench: error: ")), err


# --------------------------------------------------------------------------- demo


def test_demo_matches_published_output(capsys):
    status, out, err = _run(capsys, ["demo"])
    assert status == 0, out + err
    for line in PUBLISHED_LINES:
        assert out.count(line) == 2, out  # computed and published, side by side
    assert f"backend: {amsgrad.backend()}" in out
    assert "round-trip" in out
    assert "result: MATCH" in out
    assert err == ""


def test_demo_mismatch_exits_1(capsys, monkeypatch):
    def perturbed():
        values = demo.published().copy()
        values[1, 0] = np.nextafter(values[1, 0], np.float32(1))  # one ulp off
        return values

    monkeypatch.setattr(demo, "run_example", perturbed)
    status, out, _ = _run(capsys, ["demo"])
    assert status == 1
    assert "MISMATCH - 1 of 4" in out
    assert "DIFFERENT" in out


def test_published_decimals_round_trip():
    assert demo.published_round_trips()
    assert demo.published().dtype == np.float32


def test_python_m_amsgrad_demo_subprocess():
    # Import the same amsgrad that this test process uses (a source tree or an installation).
    root = str(Path(amsgrad.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "amsgrad", "demo"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: MATCH" in done.stdout
    assert PUBLISHED_LINES[0] in done.stdout
    if amsgrad.backend().startswith("numpy (native kernel not built"):  # says so, once
        assert done.stderr.count("the native kernel is not available") == 1
    else:
        assert done.stderr == ""


# --------------------------------------------------------------------------- reddi2018


def test_reddi2018_json_online_shows_the_papers_result(capsys):
    status, out, err = _run(capsys, [*SMALL_ONLINE, "--json", "--no-plot"])
    assert status == 0, err
    assert err == ""  # no progress bar off a terminal, no notes
    summary = json.loads(out)  # stdout is JSON and nothing else
    online = summary["forms"]["online"]
    assert summary["steps"] == 10000 and summary["alphas"] == [0.5]
    assert online["adam"]["final_x"]["min"] > 0.9  # Adam ends near +1, the worst point
    assert online["amsgrad"]["final_x"]["max"] < 0.0  # AMSGrad moves toward -1
    adam_regret = online["adam"]["final_avg_regret"]["mean"]
    ams_regret = online["amsgrad"]["final_avg_regret"]["mean"]
    assert 0 < ams_regret < adam_regret
    values = online["amsgrad"]["by_alpha"][0]["final_x_values"]
    assert len(values) == 4
    claims = summary["checks"]["online"]["all"]
    assert claims["adam_near_plus_one"] and claims["amsgrad_toward_minus_one"]
    assert claims["amsgrad_regret_lower"] and claims["amsgrad_regret_falls"]
    assert summary["plots"] == {"online": None}


def test_reddi2018_text_and_pngs(capsys, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    argv = ["reproduce", "reddi2018", "--steps", "3000", "--trajectories", "3",
            "--alphas", "0.5,1", "--out", str(tmp_path)]  # fmt: skip
    status, out, err = _run(capsys, argv)
    assert status == 0, err
    assert "online form:" in out and "stochastic form:" in out
    assert "AMSGrad" in out and "Adam" in out and "final x" in out
    for form in ("online", "stochastic"):
        path = tmp_path / f"reddi2018_{form}.png"
        assert f"wrote {path}" in out
        assert path.stat().st_size > 20_000
        image = plt.imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 600
        assert float(np.std(image)) > 0.01  # not a blank canvas


def test_reddi2018_out_template_and_single_file(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "picture.png"
    status, _, _ = _run(
        capsys, [*SMALL_ONLINE[:3], "200", "--form", "stochastic", "--out", str(target)]
    )
    assert status == 0
    assert target.exists()
    status, _, _ = _run(capsys, [*SMALL_ONLINE[:3], "200", "--out", str(tmp_path / "r.png")])
    assert status == 0
    assert (tmp_path / "r_online.png").exists() and (tmp_path / "r_stochastic.png").exists()


def test_reddi2018_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    status, out, err = _run(capsys, [*SMALL_ONLINE[:3], "300", "--out", str(tmp_path)])
    assert status == 0
    notes = [line for line in out.splitlines() if "matplotlib" in line]
    assert notes == ["matplotlib is not installed: no plot written (pip install 'amsgrad[plot]')"]
    assert "online form:" in out
    assert not list(tmp_path.iterdir())
    status, out, err = _run(capsys, [*SMALL_ONLINE[:3], "300", "--json", "--out", str(tmp_path)])
    assert status == 0
    assert json.loads(out)["plots"] == {"online": None, "stochastic": None}
    assert "matplotlib is not installed" in err


def test_reddi2018_library_results():
    result = reddi2018.run(steps=500, trajectories=2, alphas=(0.5, 1.0), seed=3)
    online = result.forms["online"]
    assert online.x.shape == online.avg_regret.shape == (2, len(online.t), 2, 2)
    assert online.t[0] == 1 and online.t[-1] == 500
    assert np.all(np.abs(online.x) <= 1)
    # Same seed, same numbers; the stochastic gradients differ between trajectories.
    again = reddi2018.run(steps=500, trajectories=2, alphas=(0.5, 1.0), seed=3)
    for form in reddi2018.FORMS:
        np.testing.assert_array_equal(result.forms[form].x, again.forms[form].x)
    stochastic = result.forms["stochastic"]
    assert not np.array_equal(stochastic.regret[:, :, 0], stochastic.regret[:, :, 1])
    json.dumps(result.to_dict())


def test_reddi2018_matches_a_plain_loop_bit_for_bit():
    # One trajectory, online form, against a scalar float32 loop of both methods (the SPEC's
    # arithmetic; uncorrected: lr_t = lr). Adam is the same update with vhat = v.
    result = reddi2018.run(steps=300, trajectories=1, alphas=0.5, forms="online", x0=0.25)
    one = np.float32(1)
    b1, b2, eps = np.float32(0.9), np.float32(0.99), np.float32(1e-8)
    final = {}
    for method in reddi2018.METHODS:
        x, m, v, vhat = np.float32(0.25), np.float32(0), np.float32(0), np.float32(0)
        for t in range(1, 301):
            g = np.float32(1010.0 if t % 101 == 1 else -10.0)
            lr = np.float32(0.5 / np.sqrt(t))
            m = m + (g - m) * (one - b1)
            v = v + (g * g - v) * (one - b2)
            vhat = max(vhat, v) if method == "amsgrad" else v
            x = x - (lr * m) / (np.float32(np.sqrt(np.float64(vhat))) + eps)
            x = np.clip(x, np.float32(-1), np.float32(1))
        final[method] = np.float64(x)
    online = result.forms["online"]
    for method in reddi2018.METHODS:
        assert online.final_x[online.method(method), 0, 0] == final[method], method
    assert final["adam"] != final["amsgrad"]


def test_reddi2018_float64_and_bias_correction(capsys):
    status, out, err = _run(
        capsys, [*SMALL_ONLINE, "--dtype", "float64", "--bias-correction", "--json", "--no-plot"]
    )
    assert status == 0, err
    summary = json.loads(out)
    assert summary["dtype"] == "float64" and summary["bias_correction"] is True
    assert summary["forms"]["online"]["adam"]["final_x"]["min"] > 0.9
    assert summary["forms"]["online"]["amsgrad"]["final_x"]["max"] < 0.0


def test_reddi2018_library_rejects_bad_settings():
    for kwargs in ({"steps": 0}, {"alphas": ()}, {"forms": "sideways"}, {"dtype": "float16"},
                   {"x0": 2.0}, {"trajectories": 1.5}):  # fmt: skip
        with pytest.raises(ValueError):
            reddi2018.run(**kwargs)


# --------------------------------------------------------------------------- errors and help


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["--bogus"],
        ["demo", "--bogus"],
        ["reproduce"],
        ["reproduce", "nosuchpaper"],
        ["reproduce", "reddi2018", "--steps", "-5"],
        ["reproduce", "reddi2018", "--steps", "abc"],
        ["reproduce", "reddi2018", "--steps", "0"],
        ["reproduce", "reddi2018", "--trajectories", "1.5"],
        ["reproduce", "reddi2018", "--alphas", "0.5,x"],
        ["reproduce", "reddi2018", "--alphas", "-1"],
        ["reproduce", "reddi2018", "--form", "sideways"],
        ["reproduce", "reddi2018", "--dtype", "float16"],
        ["reproduce", "reddi2018", "--x0", "2"],
        ["reproduce", "reddi2018", "--epsilon", "nan"],
        ["reproduce", "reddi2018", "--out", "/no/such/folder/x.png"],
        ["reproduce", "reddi2018", "--unknown-option"],
        ["bench", "--bogus"],
        ["bench", "--sizes", "x"],
        ["bench", "--threads", "0"],
    ],
)
def test_usage_errors_are_one_line_and_status_2(capsys, argv):
    status, out, err = _run(capsys, argv)
    assert status == 2
    assert out == ""
    _assert_one_line_error(err)


def test_error_messages_name_the_problem(capsys):
    _, _, err = _run(capsys, ["reproduce", "reddi2018", "--steps", "-5"])
    assert "--steps" in err and "-5" in err
    _, _, err = _run(capsys, ["reproduce", "nosuchpaper"])
    assert "nosuchpaper" in err and "reddi2018" in err
    _, _, err = _run(capsys, ["frobnicate"])
    assert "frobnicate" in err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["demo", "extra"], "amsgrad demo --help"),
        (["reproduce", "reddi2018", "--bogus"], "amsgrad reproduce reddi2018 --help"),
        (["bench", "extra"], "amsgrad bench --help"),
    ],
)
def test_unknown_arguments_point_to_their_commands_help(capsys, argv, hint):
    status, _, err = _run(capsys, argv)
    assert status == 2
    assert f"unrecognized arguments: {argv[-1]} (see '{hint}')" in err


def test_unexpected_error_is_one_line_and_status_1(capsys, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("something broke\nover two lines")

    monkeypatch.setattr(reddi2018, "run", broken)
    status, _, err = _run(capsys, [*SMALL_ONLINE, "--no-plot"])
    assert status == 1
    _assert_one_line_error(err)
    assert "RuntimeError" in err and "something broke over two lines" in err


def test_value_error_from_the_library_is_status_2(capsys, monkeypatch):
    def bad(**kwargs):
        raise ValueError("steps must be an integer >= 1, got 0")

    monkeypatch.setattr(reddi2018, "run", bad)
    status, _, err = _run(capsys, [*SMALL_ONLINE, "--no-plot"])
    assert status == 2
    _assert_one_line_error(err)


@pytest.mark.parametrize(
    "argv", [["--help"], ["demo", "--help"], ["reproduce", "--help"],
             ["reproduce", "reddi2018", "--help"]],
)  # fmt: skip
def test_help(capsys, argv):
    status, out, err = _run(capsys, argv)
    assert status == 0
    assert out.startswith("usage: amsgrad")
    assert err == ""


def test_help_lists_the_options(capsys):
    _, out, _ = _run(capsys, ["reproduce", "reddi2018", "--help"])
    for option in ("--steps", "--trajectories", "--alphas", "--seed", "--form", "--out",
                   "--json", "--dtype", "--bias-correction", "--epsilon"):  # fmt: skip
        assert option in out
    _, out, _ = _run(capsys, ["--help"])
    for command in ("demo", "reproduce", "bench"):
        assert command in out


def test_version(capsys):
    status, out, _ = _run(capsys, ["--version"])
    assert status == 0
    assert out.strip() == f"amsgrad {amsgrad.__version__}"


# --------------------------------------------------------------------------- bench


def test_bench_forwards_its_options(capsys, monkeypatch):
    seen = []

    class FakeBench:
        @staticmethod
        def main(argv):
            seen.append(argv)
            return 3

    monkeypatch.setattr(amsgrad.apps, "bench", FakeBench)
    monkeypatch.setitem(sys.modules, "amsgrad.apps.bench", FakeBench)
    status, _, _ = _run(capsys, ["bench", "--quick", "--out", "somewhere"])
    assert status == 3
    assert seen == [["--quick", "--out", "somewhere"]]


def test_bench_help_is_its_own(capsys):
    status, out, _ = _run(capsys, ["bench", "--help"])
    assert status == 0
    assert "usage: amsgrad bench" in out and "--quick" in out


def test_bench_tiny_run(capsys, tmp_path):
    argv = ["bench", "--quick", "--sizes", "1e3", "--peers", "amsgrad", "--many", "none",
            "--no-plot", "--out", str(tmp_path)]  # fmt: skip
    status, out, err = _run(capsys, argv)
    assert status == 0, err
    assert "amsgrad" in out
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["results"]


def test_bench_bad_option_status_2(capsys):
    status, _, err = _run(capsys, ["bench", "--no-such-option"])
    assert status == 2
    assert "Traceback" not in err


# --------------------------------------------------------------------------- progress bar


def test_progress_silent_off_a_terminal():
    stream = io.StringIO()
    with Progress(100, "work", stream=stream) as bar:
        for done in range(0, 101, 10):
            bar.update(done)
    assert stream.getvalue() == ""


def test_progress_draws_when_enabled():
    stream = io.StringIO()
    with Progress(10, "work", stream=stream, enabled=True, interval=0.0) as bar:
        bar.update(5)
        assert "work [" in stream.getvalue() and " 50% 5/10" in stream.getvalue()
        bar.update(10)
    text = stream.getvalue()
    assert "100% 10/10" in text
    assert text.endswith("\r\033[K")  # erased at the end
    assert "\n" not in text


# --------------------------------------------------------------------------- options checked first


@pytest.mark.parametrize(
    ("option", "value"),
    [("--repeat", "0"), ("--repeat", "-3"), ("--min-time", "-1"), ("--min-time", "nan")],
)
def test_bench_refuses_nonsense_timing_options(capsys, option, value, tmp_path):
    status, out, err = _run(capsys, ["bench", "--quick", "--out", str(tmp_path), option, value])
    assert status == 2
    assert out == ""
    _assert_one_line_error(err)
    assert option in err and repr(value) in err
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_bench_checks_its_output_folder_before_running(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, out, err = _run(capsys, ["bench", "--quick", "--out", str(blocker / "results")])
    assert status == 2
    assert out == ""
    _assert_one_line_error(err)
    assert "--out" in err and "cannot be created" in err


def test_reddi2018_out_under_a_file_is_named_a_file(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = [*SMALL_ONLINE, "--out", str(blocker / "x.png")]
    status, out, err = _run(capsys, argv)
    assert status == 2
    assert out == ""
    _assert_one_line_error(err)
    assert "is a file, not a folder" in err
