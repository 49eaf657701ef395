"""A NumPy statement of ``mindspore.nn.Adam(use_amsgrad=True)``'s training step (MindSpore 2.10).

The readable reference for docs/mindspore_training.md: it replays the runs recorded by
``tests/golden/generate_replay.py`` from their initial state and gradients, using only NumPy and
the operator :func:`amsgrad.apply_adam_with_amsgrad_v2`, and must match MindSpore bit for bit.

One step, for every parameter p (in the optimizer's order) with gradient g (p's dtype):

1. weight decay, when p decays: ``g = p * wd32.astype(p.dtype) + g``, where
   ``wd32 = float32(weight_decay * loss_scale)`` (the product in Python float64, rounded once);
   the multiply and the add each round in p's dtype. Not grouped: p decays when
   ``weight_decay > 0`` and its name holds neither ``beta`` nor ``gamma``. Grouped: p decays when
   its group's ``weight_decay`` (or the default) is > 0, whatever its name.
2. loss scale, when ``loss_scale != 1``: ``g = g * float32(1.0 / loss_scale).astype(g.dtype)``.
3. the lr of this step (float32), read at ``global_step`` before it is incremented (see
   :func:`lr_at`); then ``global_step += 1``.
4. ``beta1_power = float32(beta1_power * float32(beta1))`` (same for beta2), before the step:
   step t (from 1) uses beta1**t accumulated by t float32 multiplies.
5. the operator on (p, m, v, vhat) with float32 scalars beta1_power, beta2_power, lr,
   float32(beta1), float32(beta2), float32(eps).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from amsgrad import apply_adam_with_amsgrad_v2

REPLAY_DIR = Path(__file__).resolve().parent / "golden" / "replay"
RESUME_DIR = REPLAY_DIR / "resume"

F32 = np.float32


def manifest() -> dict[str, Any]:
    """The recorded manifest (see generate_replay.py)."""
    return json.loads((REPLAY_DIR / "manifest.json").read_text(encoding="utf-8"))


def resume_cases() -> list[dict[str, Any]]:
    """The checkpoints MindSpore resumed from (see generate_resume.py), each case with its run's
    manifest entry added under ``entry``."""
    cases = json.loads((RESUME_DIR / "resume.json").read_text(encoding="utf-8"))["cases"]
    entries = {entry["id"]: entry for entry in manifest()["configs"]}
    return [{**case, "entry": entries[case["config"]]} for case in cases]


def load_arrays(entry: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every array recorded for one configuration."""
    with np.load(REPLAY_DIR / entry["file"], allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@dataclass
class Group:
    """The per-parameter settings after MindSpore's preprocessing."""

    lr: Any  # float | list[float] | "recorded"
    lr_index: int  # which lr/<i> column MindSpore reported for it
    wd32: np.float32  # weight_decay * loss_scale, rounded to float32
    decays: bool
    lr_plus_minus_one: bool = False  # a float lr in a group setup with a dynamic lr


@dataclass
class Optimizer:
    """The optimizer's settings and state, as nn.Adam holds them."""

    names: list[str]
    groups: dict[str, Group]
    beta1: np.float32
    beta2: np.float32
    eps: np.float32
    loss_scale: float
    params: dict[str, np.ndarray] = field(default_factory=dict)
    moment1: dict[str, np.ndarray] = field(default_factory=dict)
    moment2: dict[str, np.ndarray] = field(default_factory=dict)
    vhat: dict[str, np.ndarray] = field(default_factory=dict)
    beta1_power: np.float32 = field(default_factory=lambda: F32(1.0))
    beta2_power: np.float32 = field(default_factory=lambda: F32(1.0))
    global_step: int = 0


def lr_kind(spec: Any) -> Any:
    """A float, a per-step list (also what nn.dynamic_lr functions return) or "recorded" (a
    LearningRateSchedule: MindSpore's own float32 ops, whose value the replay takes as given)."""
    if isinstance(spec, dict) and "dynamic_lr" in spec:
        return dynamic_lr(spec)
    if isinstance(spec, dict) and "schedule" in spec:
        return "recorded"
    if isinstance(spec, list):
        return [float(x) for x in spec]
    return float(spec)


def dynamic_lr(spec: dict[str, Any]) -> list[float]:
    """The list ``mindspore.nn.dynamic_lr`` returns (Python floats), for the functions used."""
    if spec["dynamic_lr"] != "cosine_decay_lr":
        raise NotImplementedError(spec["dynamic_lr"])
    import math

    lo, hi = spec["min_lr"], spec["max_lr"]
    total, per_epoch, decay_epoch = spec["total_step"], spec["step_per_epoch"], spec["decay_epoch"]
    out = []
    delta = 0.5 * (hi - lo)
    for i in range(total):
        epoch = min(math.floor(i / per_epoch), decay_epoch)
        out.append(lo + delta * (1.0 + math.cos(math.pi * epoch / decay_epoch)))
    return out


def build(entry: dict[str, Any]) -> Optimizer:
    """The optimizer of one recorded configuration, settings only (state set by the caller)."""
    kwargs = entry["kwargs"]
    loss_scale = float(kwargs.get("loss_scale", 1.0))
    default_lr = lr_kind(kwargs.get("learning_rate", 1e-3))
    default_wd = float(kwargs.get("weight_decay", 0.0))
    groups: dict[str, Group] = {}
    if entry["groups"]:
        specs = [g for g in entry["groups"] if "order_params" not in g]
        group_lr = any("lr" in g for g in specs)
        dynamic = any(not isinstance(lr_kind(g.get("lr", 0.0)), float) for g in specs) or (
            not isinstance(default_lr, float)
        )
        order = entry["names"]
        for g in specs:
            wd = float(g.get("weight_decay", default_wd))
            lr = lr_kind(g["lr"]) if "lr" in g else default_lr
            for name in g["names"]:
                groups[name] = Group(
                    lr=lr,
                    lr_index=order.index(name) if group_lr else 0,
                    wd32=F32(wd * loss_scale),
                    decays=wd * loss_scale > 0,
                    lr_plus_minus_one=group_lr and dynamic and isinstance(lr, float),
                )
    else:
        for name in entry["names"]:
            groups[name] = Group(
                lr=default_lr,
                lr_index=0,
                wd32=F32(default_wd * loss_scale),
                decays=default_wd > 0 and "beta" not in name and "gamma" not in name,
            )
    return Optimizer(
        names=list(entry["names"]),
        groups=groups,
        beta1=F32(kwargs.get("beta1", 0.9)),
        beta2=F32(kwargs.get("beta2", 0.999)),
        eps=F32(kwargs.get("eps", 1e-8)),
        loss_scale=loss_scale,
    )


def lr_at(group: Group, step: int, recorded: np.ndarray | None) -> np.float32:
    """The float32 lr MindSpore uses at ``global_step == step``."""
    if group.lr == "recorded":
        assert recorded is not None
        return F32(recorded[step])
    if isinstance(group.lr, list):
        return F32(group.lr[step])  # np.array(list).astype(float32), then Gather
    lr = F32(group.lr)  # Parameter(Tensor(lr, float32))
    if group.lr_plus_minus_one:
        lr = F32(F32(lr + F32(1.0)) - F32(1.0))  # _ConvertToCell: lr + 1.0 - 1.0 in float32
    return lr


def step(opt: Optimizer, grads: dict[str, np.ndarray], recorded_lr: dict[int, np.ndarray]) -> None:
    """One ``optimizer(gradients)`` call, in place."""
    prepared = {}
    for name in opt.names:
        p, g = opt.params[name], grads[name].astype(opt.params[name].dtype)
        group = opt.groups[name]
        if group.decays:
            g = p * group.wd32.astype(p.dtype) + g
        if opt.loss_scale != 1.0:
            g = g * F32(1.0 / opt.loss_scale).astype(g.dtype)
        prepared[name] = g
    t = opt.global_step
    lrs = {n: lr_at(opt.groups[n], t, recorded_lr.get(opt.groups[n].lr_index)) for n in opt.names}
    opt.global_step += 1
    opt.beta1_power = F32(opt.beta1_power * opt.beta1)
    opt.beta2_power = F32(opt.beta2_power * opt.beta2)
    for name in opt.names:
        apply_adam_with_amsgrad_v2(
            opt.params[name],
            opt.moment1[name],
            opt.moment2[name],
            opt.vhat[name],
            opt.beta1_power,
            opt.beta2_power,
            lrs[name],
            opt.beta1,
            opt.beta2,
            opt.eps,
            prepared[name],
        )


def replay(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Iterator[Optimizer]:
    """Yield the optimizer after each recorded step, starting from the recorded initial state."""
    opt = build(entry)
    for name in opt.names:
        opt.params[name] = arrays[f"param/{name}"][0].copy()
        opt.moment1[name] = arrays[f"moment1/{name}"][0].copy()
        opt.moment2[name] = arrays[f"moment2/{name}"][0].copy()
        opt.vhat[name] = arrays[f"vhat/{name}"][0].copy()
    recorded_lr = {int(k.split("/")[1]): v for k, v in arrays.items() if k.startswith("lr/")}
    for t in range(entry["steps"]):
        step(opt, {n: arrays[f"grad/{n}"][t] for n in opt.names}, recorded_lr)
        yield opt
