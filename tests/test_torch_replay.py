"""AMSGradV2 against MindSpore's recorded nn.Adam(use_amsgrad=True) runs, bit for bit.

Every configuration of tests/golden/replay/ is expressed with AMSGradV2's arguments (lr as a
float or a per-step list, betas, eps, weight_decay, loss_scale, parameter groups, and
mindspore_param_groups for MindSpore's default decay filter), fed the recorded gradients, and
every parameter, m, v, vhat and beta power is compared with MindSpore's after every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch

import replay_reference as ref
from amsgrad.torch import AMSGradV2, mindspore_param_groups

CONFIGS = ref.manifest()["configs"]
F32 = np.float32


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def torch_lr(spec: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A float, or a per-step list (a schedule: its recorded float32 values)."""
    kind = ref.lr_kind(spec)
    if kind == "recorded":
        return [float(x) for x in arrays["lr/0"]]
    return kind


def build(
    entry: dict[str, Any], arrays: dict[str, np.ndarray], implementation: str
) -> tuple[AMSGradV2, dict[str, torch.Tensor]]:
    kwargs = entry["kwargs"]
    params = {
        name: torch.nn.Parameter(torch.from_numpy(arrays[f"param/{name}"][0].copy()))
        for name in entry["names"]
    }
    lr = torch_lr(kwargs.get("learning_rate", 1e-3), arrays)
    wd = float(kwargs.get("weight_decay", 0.0))
    groups: list[dict[str, Any]]
    if entry["groups"]:
        specs = [g for g in entry["groups"] if "order_params" not in g]
        group_lr = any("lr" in g for g in specs)
        dynamic = isinstance(lr, list) or any(isinstance(g.get("lr"), list) for g in specs)
        groups = []
        for spec in specs:
            group: dict[str, Any] = {"params": [params[n] for n in spec["names"]]}
            if "weight_decay" in spec:
                group["weight_decay"] = spec["weight_decay"]
            if "lr" in spec:
                group_value = torch_lr(spec["lr"], arrays)
                if group_lr and dynamic and not isinstance(group_value, list):
                    # MindSpore's _ConvertToCell quirk (docs/mindspore_training.md), given as
                    # the lr itself: AMSGradV2 does not apply it.
                    f = F32(group_value)
                    group_value = float(F32(F32(f + F32(1.0)) - F32(1.0)))
                group["lr"] = group_value
            groups.append(group)
    elif wd > 0:
        groups = mindspore_param_groups(params.items(), wd)
    else:
        groups = [{"params": list(params.values())}]
    opt = AMSGradV2(
        groups,
        lr=lr,
        betas=(kwargs.get("beta1", 0.9), kwargs.get("beta2", 0.999)),
        eps=kwargs.get("eps", 1e-8),
        weight_decay=wd,
        loss_scale=float(kwargs.get("loss_scale", 1.0)),
        implementation=implementation,
    )
    return opt, params


@pytest.mark.parametrize("implementation", ["kernel", "torch"])
@pytest.mark.parametrize("entry", CONFIGS, ids=[c["id"] for c in CONFIGS])
def test_torch_replay_is_bit_exact(entry: dict[str, Any], implementation: str) -> None:
    arrays = ref.load_arrays(entry)
    opt, params = build(entry, arrays, implementation)
    for t in range(1, entry["steps"] + 1):
        grads = {}
        for name, param in params.items():
            grads[name] = torch.from_numpy(arrays[f"grad/{name}"][t - 1].copy())
            param.grad = grads[name]
        before = {name: grad.clone() for name, grad in grads.items()}
        opt.step()
        for name, param in params.items():
            assert torch.equal(param.grad, before[name]), f"{name}: the gradient was modified"
            state = opt.state[param]
            for kind, tensor in (
                ("param", param.detach()),
                ("moment1", state["m"]),
                ("moment2", state["v"]),
                ("vhat", state["vhat"]),
            ):
                recorded = arrays[f"{kind}/{name}"][t]
                assert same_bits(tensor.numpy(), recorded), f"{entry['id']} step {t}: {kind}/{name}"
            assert same_bits(F32(state["beta1_power"]), arrays["beta1_power"][t])
            assert same_bits(F32(state["beta2_power"]), arrays["beta2_power"][t])
            assert state["step"] == int(arrays["global_step"][t]) == t


def test_decay_filter_helper_matches_mindspore() -> None:
    entry = next(c for c in CONFIGS if c["id"] == "layernorm_decay_filter")
    opt = ref.build(entry)
    params = {n: torch.nn.Parameter(torch.zeros(2)) for n in entry["names"]}
    groups = mindspore_param_groups(params.items(), 0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, param in params.items():
        assert (id(param) in decayed) == opt.groups[name].decays, name
    assert all("lr" not in g for g in groups)


def test_lr_list_past_its_end_names_the_step() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = AMSGradV2([p], lr=[0.1, 0.01])
    for _ in range(2):
        p.grad = torch.ones(3)
        opt.step()
    before = p.detach().clone()
    with pytest.raises(IndexError, match=r"step 3 \(index 2\)"):
        opt.step()
    assert torch.equal(p.detach(), before) and opt.state[p]["step"] == 2


def test_defaults_give_todays_bits_and_bad_values_are_refused() -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a = AMSGradV2([a], 0.01)
    opt_b = AMSGradV2([b], 0.01, (0.9, 0.999), 1e-8, 0.0, loss_scale=1.0)
    for _ in range(3):
        a.grad = torch.randn(5)
        b.grad = a.grad.clone()
        opt_a.step()
        opt_b.step()
    assert torch.equal(a, b)
    for bad in ({"weight_decay": -1.0}, {"loss_scale": 0.0}, {"loss_scale": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AMSGradV2([a], **bad)
    with pytest.raises(ValueError, match="lr"):
        AMSGradV2([a], lr=[0.1, -1.0])
