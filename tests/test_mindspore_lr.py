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
