"""Record MindSpore 2.10's learning-rate helpers (run with MindSpore installed; tests never
need it): the lists of ``mindspore.nn.dynamic_lr`` and the float32 values of the
``LearningRateSchedule`` cells at steps 0..N, for several argument sets.

    python tests/golden/generate_lr.py   # writes tests/golden/lr_schedules.json

Python floats are stored with ``float.hex`` (exact); float32 values as their bit patterns.
"""

from __future__ import annotations

import json
from pathlib import Path

import mindspore
import numpy as np
from mindspore import Tensor, nn
from mindspore.nn import dynamic_lr

OUT = Path(__file__).with_name("lr_schedules.json")
STEPS = 60

LISTS = [
    (
        "piecewise_constant_lr",
        {"milestone": [2, 5, 9, 14], "learning_rates": [0.1, 0.05, 0.01, 1e-3]},
    ),
]
for stair in (False, True):
    for name in ("exponential_decay_lr", "natural_exp_decay_lr", "inverse_decay_lr"):
        for rate, spe, de in ((0.9, 2, 3), (0.5, 3, 1), (0.123, 1, 7)):
            LISTS.append(
                (
                    name,
                    {
                        "learning_rate": 0.1,
                        "decay_rate": rate,
                        "total_step": STEPS,
                        "step_per_epoch": spe,
                        "decay_epoch": de,
                        "is_stair": stair,
                    },
                )
            )
for min_lr, max_lr, spe, de in ((0.01, 0.1, 2, 5), (1e-4, 0.02, 3, 10), (0.0, 0.3, 1, 13)):
    LISTS.append(
        (
            "cosine_decay_lr",
            {
                "min_lr": min_lr,
                "max_lr": max_lr,
                "total_step": STEPS,
                "step_per_epoch": spe,
                "decay_epoch": de,
            },
        )
    )
for power, update in ((0.5, False), (1.0, True), (2.3, False), (0.7, True)):
    LISTS.append(
        (
            "polynomial_decay_lr",
            {
                "learning_rate": 0.1,
                "end_learning_rate": 0.01,
                "total_step": STEPS,
                "step_per_epoch": 2,
                "decay_epoch": 6,
                "power": power,
                "update_decay_epoch": update,
            },
        )
    )
for spe, we in ((2, 5), (1, 17), (3, 1)):
    LISTS.append(
        (
            "warmup_lr",
            {"learning_rate": 0.1, "total_step": STEPS, "step_per_epoch": spe, "warmup_epoch": we},
        )
    )

SCHEDULES = [
    ("ExponentialDecayLR", {"learning_rate": 0.1, "decay_rate": 0.9, "decay_steps": 4}),
    (
        "ExponentialDecayLR",
        {"learning_rate": 0.1, "decay_rate": 0.5, "decay_steps": 7, "is_stair": True},
    ),
    ("NaturalExpDecayLR", {"learning_rate": 0.1, "decay_rate": 0.9, "decay_steps": 4}),
    (
        "NaturalExpDecayLR",
        {"learning_rate": 0.1, "decay_rate": 0.3, "decay_steps": 5, "is_stair": True},
    ),
    ("InverseDecayLR", {"learning_rate": 0.1, "decay_rate": 0.9, "decay_steps": 4}),
    (
        "InverseDecayLR",
        {"learning_rate": 0.1, "decay_rate": 0.5, "decay_steps": 3, "is_stair": True},
    ),
    ("CosineDecayLR", {"min_lr": 0.01, "max_lr": 0.1, "decay_steps": 20}),
    ("CosineDecayLR", {"min_lr": 1e-4, "max_lr": 0.02, "decay_steps": 33}),
    (
        "PolynomialDecayLR",
        {"learning_rate": 0.02, "end_learning_rate": 0.001, "decay_steps": 20, "power": 0.5},
    ),
    (
        "PolynomialDecayLR",
        {
            "learning_rate": 0.1,
            "end_learning_rate": 0.01,
            "decay_steps": 7,
            "power": 2.0,
            "update_decay_steps": True,
        },
    ),
    ("WarmUpLR", {"learning_rate": 0.1, "warmup_steps": 10}),
    ("WarmUpLR", {"learning_rate": 0.05, "warmup_steps": 7}),
]


def main() -> None:
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE, device_target="CPU")
    lists = []
    for name, kwargs in LISTS:
        values = getattr(dynamic_lr, name)(**kwargs)
        lists.append(
            {"function": name, "kwargs": kwargs, "values": [float(v).hex() for v in values]}
        )
    schedules = []
    for name, kwargs in SCHEDULES:
        cell = getattr(nn, name)(**kwargs)
        bits = []
        for step in range(STEPS):
            value = cell(Tensor(np.array(step, np.int32)))
            bits.append(int(np.asarray(value.asnumpy(), np.float32).reshape(()).view(np.uint32)))
        schedules.append({"schedule": name, "kwargs": kwargs, "float32_bits": bits})
    payload = {
        "mindspore": mindspore.__version__,
        "steps": STEPS,
        "lists": lists,
        "schedules": schedules,
    }
    OUT.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(lists)} lists, {len(schedules)} schedules")


if __name__ == "__main__":
    main()
