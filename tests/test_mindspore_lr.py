"""MindSpore's learning-rate helpers (adapters/mindspore_lr.py) against MindSpore 2.10's own
values (tests/golden/lr_schedules.json, written by tests/golden/generate_lr.py) and the
recorded training runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import amsgrad.nn as nn
from amsgrad.adapters import mindspore_lr

GOLDEN = json.loads(
    (Path(__file__).parent / "golden" / "lr_schedules.json").read_text(encoding="utf-8")
)
REPLAY = Path(__file__).parent / "golden" / "replay"


@pytest.mark.parametrize(
    "item", GOLDEN["lists"], ids=lambda item: f"{item['function']}-{item['kwargs']}"
)
def test_dynamic_lr_lists_are_mindsporess(item):
    ours = getattr(nn.dynamic_lr, item["function"])(**item["kwargs"])
    assert [value.hex() for value in ours] == item["values"]
    assert all(type(value) is float for value in ours)


@pytest.mark.parametrize(
    "item", GOLDEN["schedules"], ids=lambda item: f"{item['schedule']}-{item['kwargs']}"
)
def test_schedules_are_mindspores_float32_values(item):
    ours = nn.dynamic_lr.schedule_values(item["schedule"], GOLDEN["steps"], **item["kwargs"])
    bits = np.array(ours, dtype=np.float32).view(np.uint32).tolist()
    assert bits == item["float32_bits"]
    assert np.array_equal(np.array(ours, np.float32).astype(np.float64), np.array(ours))


def test_the_recorded_runs_use_these_values():
    manifest = json.loads((REPLAY / "manifest.json").read_text(encoding="utf-8"))
    configs = {c["id"]: c for c in manifest["configs"]}
    cosine = dict(configs["dynamic_lr_cosine"]["kwargs"]["learning_rate"])
    del cosine["dynamic_lr"]
    recorded = np.load(REPLAY / "dynamic_lr_cosine.npz")["lr/0"].reshape(-1)
    values = np.array(nn.dynamic_lr.cosine_decay_lr(**cosine), np.float32)[: recorded.size]
    assert np.array_equal(values.view(np.uint32), recorded.astype(np.float32).view(np.uint32))
    poly = dict(configs["schedule_polynomial"]["kwargs"]["learning_rate"])
    del poly["schedule"]
    recorded = np.load(REPLAY / "schedule_polynomial.npz")["lr/0"].reshape(-1)
    values = np.array(
        nn.dynamic_lr.schedule_values("PolynomialDecayLR", recorded.size, **poly), np.float32
    )
    assert np.array_equal(values.view(np.uint32), recorded.astype(np.float32).view(np.uint32))


def test_a_list_trains_as_a_per_step_lr():
    torch = pytest.importorskip("torch")
    from amsgrad.torch import AMSGradV2

    values = nn.dynamic_lr.warmup_lr(0.1, total_step=4, step_per_epoch=1, warmup_epoch=2)
    assert values == [0.0, 0.05, 0.1, 0.1]
    p = torch.nn.Parameter(torch.ones(3))
    opt = AMSGradV2([p], lr=values)
    p.grad = torch.ones(3)
    opt.step()  # lr 0.0: unchanged
    assert torch.equal(p.detach(), torch.ones(3))
    p.grad = torch.ones(3)
    opt.step()
    assert not torch.equal(p.detach(), torch.ones(3))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.dynamic_lr.cosine_decay_lr(0.1, 0.01, 10, 1, 2), ValueError, "max_lr"),
        (lambda: nn.dynamic_lr.warmup_lr(1, 10, 1, 2), TypeError, "learning_rate"),
        (lambda: nn.dynamic_lr.exponential_decay_lr(0.1, 0.9, 0, 1, 2), ValueError, "total_step"),
        (lambda: nn.dynamic_lr.piecewise_constant_lr([2, 1], [0.1, 0.2]), ValueError, "milestone"),
        (lambda: nn.dynamic_lr.piecewise_constant_lr([1], [0.1, 0.2]), ValueError, "one learning"),
        (lambda: nn.dynamic_lr.schedule_values("Cosine", 3), ValueError, "CosineDecayLR"),
        (
            lambda: nn.dynamic_lr.schedule_values("WarmUpLR", 3, learning_rate=0.1),
            TypeError,
            "missing warmup_steps",
        ),
        (
            lambda: nn.dynamic_lr.schedule_values("WarmUpLR", 3, learning_rate=0.1, warmup=2),
            TypeError,
            "unknown warmup",
        ),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_without_the_c_library_pow_is_the_rounded_float64_one(monkeypatch):
    monkeypatch.setattr(mindspore_lr, "_POWF", None)
    monkeypatch.setattr(mindspore_lr, "_SINF", None)
    values = mindspore_lr.schedule_values(
        "ExponentialDecayLR", 5, learning_rate=0.1, decay_rate=0.9, decay_steps=4
    )
    f32 = np.float32
    expected = [float(f32(0.1) * f32(float(f32(0.9)) ** float(f32(s) / f32(4)))) for s in range(5)]
    assert values == expected


# --------------------------------------------------------------------------- argument checks
# MindSpore 2.10's rules (nn/learning_rate_schedule.py, nn/dynamic_lr.py, _checkparam.py):
# rates are Python floats (not ints or bools), finite; learning_rate and decay_rate > 0 (>= 0 for
# warmup), min_lr and end_learning_rate >= 0, max_lr > min_lr, power > 0; step counts are ints
# > 0 (not bools); is_stair and update_decay_steps are bools.

NAN, INF = float("nan"), float("inf")
VALID = {
    "ExponentialDecayLR": {"learning_rate": 0.1, "decay_rate": 0.9, "decay_steps": 4},
    "NaturalExpDecayLR": {"learning_rate": 0.1, "decay_rate": 0.9, "decay_steps": 4},
    "InverseDecayLR": {"learning_rate": 0.1, "decay_rate": 0.9, "decay_steps": 4},
    "CosineDecayLR": {"min_lr": 0.01, "max_lr": 0.1, "decay_steps": 20},
    "PolynomialDecayLR": {
        "learning_rate": 0.1,
        "end_learning_rate": 0.01,
        "decay_steps": 7,
        "power": 2.0,
    },
    "WarmUpLR": {"learning_rate": 0.1, "warmup_steps": 10},
}
BAD_VALUES = [
    # (schedule, argument, value, error)
    *[
        (schedule, "learning_rate", value, error)
        for schedule in ("ExponentialDecayLR", "NaturalExpDecayLR", "InverseDecayLR")
        for value, error in (
            ("0.1", TypeError),
            (None, TypeError),
            (True, TypeError),
            (1, TypeError),
            (0.0, ValueError),
            (-0.1, ValueError),
            (NAN, ValueError),
            (INF, ValueError),
        )
    ],
    *[
        (schedule, "decay_rate", value, error)
        for schedule in ("ExponentialDecayLR", "NaturalExpDecayLR", "InverseDecayLR")
        for value, error in (
            ("0.9", TypeError),
            (None, TypeError),
            (False, TypeError),
            (0.0, ValueError),
            (-0.5, ValueError),
            (NAN, ValueError),
            (-INF, ValueError),
        )
    ],
    *[
        (schedule, "decay_steps", value, error)
        for schedule in VALID
        if schedule != "WarmUpLR"
        for value, error in (
            (-3, ValueError),
            (0, ValueError),
            (4.0, TypeError),
            ("4", TypeError),
            (None, TypeError),
            (True, TypeError),
        )
    ],
    *[
        (schedule, "is_stair", value, TypeError)
        for schedule in ("ExponentialDecayLR", "NaturalExpDecayLR", "InverseDecayLR")
        for value in (1, 0, None, "yes", 1.0)
    ],
    ("CosineDecayLR", "min_lr", -0.01, ValueError),
    ("CosineDecayLR", "min_lr", 0, TypeError),
    ("CosineDecayLR", "min_lr", None, TypeError),
    ("CosineDecayLR", "min_lr", NAN, ValueError),
    ("CosineDecayLR", "max_lr", 0.0, ValueError),
    ("CosineDecayLR", "max_lr", -0.1, ValueError),
    ("CosineDecayLR", "max_lr", INF, ValueError),
    ("CosineDecayLR", "max_lr", "0.1", TypeError),
    ("CosineDecayLR", "max_lr", 0.005, ValueError),  # below min_lr = 0.01
    ("CosineDecayLR", "max_lr", 0.01, ValueError),  # equal to min_lr
    ("PolynomialDecayLR", "learning_rate", 0.0, ValueError),
    ("PolynomialDecayLR", "learning_rate", -0.1, ValueError),
    ("PolynomialDecayLR", "learning_rate", None, TypeError),
    ("PolynomialDecayLR", "end_learning_rate", -0.001, ValueError),
    ("PolynomialDecayLR", "end_learning_rate", 0, TypeError),
    ("PolynomialDecayLR", "end_learning_rate", NAN, ValueError),
    ("PolynomialDecayLR", "power", -1.0, ValueError),
    ("PolynomialDecayLR", "power", 0.0, ValueError),
    ("PolynomialDecayLR", "power", 2, TypeError),
    ("PolynomialDecayLR", "power", "2", TypeError),
    ("PolynomialDecayLR", "power", None, TypeError),
    ("PolynomialDecayLR", "power", NAN, ValueError),
    ("PolynomialDecayLR", "power", INF, ValueError),
    ("PolynomialDecayLR", "update_decay_steps", 1, TypeError),
    ("PolynomialDecayLR", "update_decay_steps", None, TypeError),
    ("WarmUpLR", "learning_rate", -0.1, ValueError),
    ("WarmUpLR", "learning_rate", NAN, ValueError),
    ("WarmUpLR", "learning_rate", 1, TypeError),
    ("WarmUpLR", "learning_rate", "0.1", TypeError),
    ("WarmUpLR", "warmup_steps", 0, ValueError),
    ("WarmUpLR", "warmup_steps", -2, ValueError),
    ("WarmUpLR", "warmup_steps", 1.5, TypeError),
    ("WarmUpLR", "warmup_steps", False, TypeError),
]


def _never_called(step, kwargs):
    raise AssertionError("computed a value before checking the arguments")


@pytest.mark.parametrize(("schedule", "name", "value", "error"), BAD_VALUES, ids=repr)
def test_schedule_arguments_are_checked_before_computing(monkeypatch, schedule, name, value, error):
    monkeypatch.setitem(
        mindspore_lr.SCHEDULES, schedule, (_never_called, mindspore_lr.SCHEDULES[schedule][1])
    )
    kwargs = {**VALID[schedule], name: value}
    with pytest.raises(error, match=rf"^{name}: expected an? (int|float|bool|finite float)"):
        nn.dynamic_lr.schedule_values(schedule, 3, **kwargs)


def test_a_bad_schedule_argument_says_what_was_expected():
    kwargs = {**VALID["ExponentialDecayLR"], "decay_steps": -3}
    with pytest.raises(ValueError, match=r"^decay_steps: expected an int > 0, got -3$"):
        nn.dynamic_lr.schedule_values("ExponentialDecayLR", 3, **kwargs)
    kwargs = {**VALID["PolynomialDecayLR"], "power": -1.0}
    with pytest.raises(ValueError, match=r"^power: expected a finite float > 0.0, got -1.0$"):
        nn.dynamic_lr.schedule_values("PolynomialDecayLR", 3, **kwargs)
    kwargs = {**VALID["CosineDecayLR"], "min_lr": 0.2}
    with pytest.raises(ValueError, match=r"^max_lr: expected a float > min_lr \(0.2\), got 0.1$"):
        nn.dynamic_lr.schedule_values("CosineDecayLR", 3, **kwargs)


@pytest.mark.parametrize(
    ("schedule", "name", "value"),
    [
        ("CosineDecayLR", "is_stair", True),
        ("WarmUpLR", "is_stair", False),
        ("PolynomialDecayLR", "is_stair", True),
        ("ExponentialDecayLR", "update_decay_steps", True),
        ("InverseDecayLR", "update_decay_steps", False),
        ("CosineDecayLR", "update_decay_steps", True),
        ("WarmUpLR", "update_decay_steps", True),
        ("ExponentialDecayLR", "staircase", True),
        ("WarmUpLR", "warmup", 2),
        ("PolynomialDecayLR", "decay_epoch", 3),
    ],
)
def test_arguments_a_schedule_does_not_take_are_refused(monkeypatch, schedule, name, value):
    monkeypatch.setitem(
        mindspore_lr.SCHEDULES, schedule, (_never_called, mindspore_lr.SCHEDULES[schedule][1])
    )
    with pytest.raises(TypeError, match=rf"^{schedule}: .*; unknown {name}$"):
        nn.dynamic_lr.schedule_values(schedule, 3, **VALID[schedule], **{name: value})


@pytest.mark.parametrize(
    ("schedule", "accepted"),
    [
        ("ExponentialDecayLR", "learning_rate, decay_rate, decay_steps, optionally is_stair"),
        ("NaturalExpDecayLR", "learning_rate, decay_rate, decay_steps, optionally is_stair"),
        ("InverseDecayLR", "learning_rate, decay_rate, decay_steps, optionally is_stair"),
        ("CosineDecayLR", "min_lr, max_lr, decay_steps"),
        (
            "PolynomialDecayLR",
            "learning_rate, end_learning_rate, decay_steps, power, optionally update_decay_steps",
        ),
        ("WarmUpLR", "learning_rate, warmup_steps"),
    ],
)
def test_unknown_arguments_are_named_with_the_accepted_ones(schedule, accepted):
    with pytest.raises(TypeError) as raised:
        nn.dynamic_lr.schedule_values(schedule, 3, **VALID[schedule], foo=1, bar=None)
    assert str(raised.value) == f"{schedule}: expected the arguments {accepted}; unknown foo, bar"


def test_schedule_arguments_mindspore_accepts_still_work():
    values = nn.dynamic_lr.schedule_values("WarmUpLR", 4, learning_rate=0.0, warmup_steps=2)
    assert values == [0.0] * 4
    values = nn.dynamic_lr.schedule_values(
        "CosineDecayLR", 3, min_lr=0.0, max_lr=0.1, decay_steps=2
    )
    assert values[0] == float(np.float32(0.1)) and values[-1] == 0.0
    for schedule in ("ExponentialDecayLR", "NaturalExpDecayLR", "InverseDecayLR"):
        assert nn.dynamic_lr.schedule_values(
            schedule, 5, **VALID[schedule], is_stair=False
        ) == nn.dynamic_lr.schedule_values(schedule, 5, **VALID[schedule])
    assert nn.dynamic_lr.schedule_values(
        "PolynomialDecayLR", 9, **VALID["PolynomialDecayLR"], update_decay_steps=False
    ) == nn.dynamic_lr.schedule_values("PolynomialDecayLR", 9, **VALID["PolynomialDecayLR"])
    values = nn.dynamic_lr.schedule_values(
        "PolynomialDecayLR", 3, **{**VALID["PolynomialDecayLR"], "end_learning_rate": 0.0}
    )
    assert values[0] == float(np.float32(0.1))


def test_the_schedule_name_must_be_a_known_string():
    with pytest.raises(ValueError, match=r"^schedule: expected one of ExponentialDecayLR"):
        nn.dynamic_lr.schedule_values(["WarmUpLR"], 3, **VALID["WarmUpLR"])


def test_warmup_lr_takes_a_zero_learning_rate():
    assert nn.dynamic_lr.warmup_lr(0.0, 6, 2, 2) == [0.0] * 6


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        # learning_rate and decay_rate > 0 for the three decays
        (lambda f: f(0.0, 0.9, 6, 1, 2), ValueError, r"^learning_rate: expected a finite float > "),
        (lambda f: f(0.1, 0.0, 6, 1, 2), ValueError, r"^decay_rate: expected a finite float > "),
        (lambda f: f(NAN, 0.9, 6, 1, 2), ValueError, r"^learning_rate: expected a finite float"),
        (lambda f: f(0.1, INF, 6, 1, 2), ValueError, r"^decay_rate: expected a finite float"),
        (lambda f: f(0.1, 0.9, "6", 1, 2), TypeError, r"^total_step: expected an int > 0"),
        (lambda f: f(0.1, 0.9, 6, True, 2), TypeError, r"^step_per_epoch: expected an int > 0"),
        (lambda f: f(0.1, 0.9, 6, 1, 2.0), TypeError, r"^decay_epoch: expected an int > 0"),
        (lambda f: f(0.1, 0.9, 6, 1, 2, 1), TypeError, r"^is_stair: expected a bool"),
    ],
)
@pytest.mark.parametrize(
    "function", ["exponential_decay_lr", "natural_exp_decay_lr", "inverse_decay_lr"]
)
def test_decay_lists_check_like_mindspore(function, call, error, match):
    with pytest.raises(error, match=match):
        call(getattr(nn.dynamic_lr, function))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.dynamic_lr.warmup_lr(-0.1, 6, 2, 2), ValueError, r"^learning_rate: .* >= 0"),
        (lambda: nn.dynamic_lr.warmup_lr(NAN, 6, 2, 2), ValueError, r"^learning_rate: "),
        (lambda: nn.dynamic_lr.warmup_lr(0.1, 6, 2, 0), ValueError, r"^warmup_epoch: "),
        (
            lambda: nn.dynamic_lr.cosine_decay_lr(-0.01, 0.1, 6, 1, 2),
            ValueError,
            r"^min_lr: .* >= 0",
        ),
        (lambda: nn.dynamic_lr.cosine_decay_lr(0.0, 0.0, 6, 1, 2), ValueError, r"^max_lr: .* > 0"),
        (lambda: nn.dynamic_lr.cosine_decay_lr(0.0, INF, 6, 1, 2), ValueError, r"^max_lr: "),
        (
            lambda: nn.dynamic_lr.cosine_decay_lr(0.0, 0.1, 6, "1", 2),  # type: ignore[arg-type]
            TypeError,
            r"^step_per_epoch",
        ),
        (
            lambda: nn.dynamic_lr.polynomial_decay_lr(0.0, 0.0, 6, 1, 2, 1.0),
            ValueError,
            r"^learning_rate: .* > 0",
        ),
        (
            lambda: nn.dynamic_lr.polynomial_decay_lr(0.1, -0.01, 6, 1, 2, 1.0),
            ValueError,
            r"^end_learning_rate: .* >= 0",
        ),
        (
            lambda: nn.dynamic_lr.polynomial_decay_lr(0.1, 0.0, 6, 1, 2, 0.0),
            ValueError,
            r"^power: .* > 0",
        ),
        (
            lambda: nn.dynamic_lr.polynomial_decay_lr(0.1, 0.0, 6, 1, 2, NAN),
            ValueError,
            r"^power: ",
        ),
        (lambda: nn.dynamic_lr.polynomial_decay_lr(0.1, 0.0, 6, 1, 2, 1), TypeError, r"^power: "),
        (
            lambda: nn.dynamic_lr.polynomial_decay_lr(0.1, 0.0, 6, 1, 2, 1.0, 1),  # type: ignore[arg-type]
            TypeError,
            r"^update_decay_epoch: ",
        ),
        (
            lambda: nn.dynamic_lr.piecewise_constant_lr([2], [NAN]),
            ValueError,
            r"^learning_rates\[0\]: ",
        ),
        (
            lambda: nn.dynamic_lr.piecewise_constant_lr([2, 3], [0.1, INF]),
            ValueError,
            r"^learning_rates\[1\]: ",
        ),
        (
            lambda: nn.dynamic_lr.piecewise_constant_lr([2], [1]),
            TypeError,
            r"^learning_rates\[0\]: ",
        ),
        (
            lambda: nn.dynamic_lr.piecewise_constant_lr([2.0], [0.1]),  # type: ignore[list-item]
            TypeError,
            r"^milestone\[0\]: ",
        ),
        (lambda: nn.dynamic_lr.piecewise_constant_lr([0], [0.1]), ValueError, r"^milestone\[0\]: "),
    ],
)
def test_dynamic_lr_bounds_are_mindspores(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_dynamic_lr_lower_bounds_mindspore_accepts():
    assert nn.dynamic_lr.cosine_decay_lr(0.0, 0.1, 3, 1, 2)[-1] == 0.0
    assert nn.dynamic_lr.polynomial_decay_lr(0.1, 0.0, 3, 1, 2, 1.0)[-1] == 0.0
    # MindSpore checks only the type of piecewise learning rates, not their sign
    assert nn.dynamic_lr.piecewise_constant_lr([1, 2], [0.0, -0.1]) == [0.0, -0.1]
