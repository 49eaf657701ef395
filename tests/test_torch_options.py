"""AMSGradV2's torch.optim.Adam-shaped surface: group keys, positional order, maximize and the
flags (foreach, fused, capturable, differentiable)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
import torch

from amsgrad.torch import AMSGradV2, mindspore_param_groups


def param() -> torch.nn.Parameter:
    torch.manual_seed(0)
    return torch.nn.Parameter(torch.randn(7))


def test_unknown_group_keys_are_refused_with_the_known_ones() -> None:
    p = param()
    with pytest.raises(ValueError, match=r"'weight_decy'.*known keys are .*'weight_decay'"):
        AMSGradV2([{"params": [p], "weight_decy": 0.1}])
    opt = AMSGradV2([p])
    with pytest.raises(ValueError, match=r"param_groups\[1\]: unknown parameter-group keys 'lrr'"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lrr": 0.1})
    assert len(opt.param_groups) == 1


def test_positional_order_is_torch_adams() -> None:
    p = param()
    opt = AMSGradV2([p], 0.01, (0.8, 0.9), 1e-6, 0.02)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        0.01,
        (0.8, 0.9),
        1e-6,
        0.02,
    )


@pytest.mark.parametrize("implementation", ["kernel", "torch"])
def test_maximize_negates_the_gradient_first(implementation: str) -> None:
    a, b = param(), param()
    opt_a = AMSGradV2([a], 0.01, weight_decay=0.1, maximize=True, implementation=implementation)
    opt_b = AMSGradV2([b], 0.01, weight_decay=0.1, implementation=implementation)
    for step in range(3):
        torch.manual_seed(step)
        grad = torch.randn(7)
        a.grad = grad.clone()
        b.grad = -grad
        opt_a.step()
        opt_b.step()
        assert torch.equal(a.grad, grad)  # not modified in place
    assert torch.equal(a, b)
    for key in ("m", "v", "vhat"):
        assert torch.equal(opt_a.state[a][key], opt_b.state[b][key])


def test_flags_honoured_values_are_accepted() -> None:
    p = param()
    AMSGradV2([p], foreach=True, fused=True, capturable=False, differentiable=False)
    AMSGradV2([p], capturable=True)  # checked at step(): the Triton path only
    AMSGradV2([p], foreach=None, fused=None)


@pytest.mark.parametrize(
    ("flag", "value", "instead"),
    [
        ("foreach", False, "implementation="),
        ("fused", False, "implementation="),
        ("capturable", 1, "a bool"),
        ("differentiable", True, "no_grad"),
        ("maximize", 1, "a bool"),
    ],
)
def test_flags_other_values_are_refused(flag: str, value: object, instead: str) -> None:
    with pytest.raises(ValueError, match=rf"{flag}=.* is not supported; use .*{instead}"):
        AMSGradV2([param()], **{flag: value})
    opt = AMSGradV2([param()])
    with pytest.raises(ValueError, match=rf"param_groups\[1\]: {flag}"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], flag: value})


def test_load_state_dict_converts_torch_adam_amsgrad() -> None:
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    adam = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95), amsgrad=True)
    for _ in range(4):
        adam.zero_grad()
        model(torch.randn(5, 4)).square().sum().backward()
        adam.step()
    saved = adam.state_dict()
    opt = AMSGradV2(model.parameters(), lr=0.5, betas=(0.9, 0.999), implementation="torch")
    opt.load_state_dict(saved)
    group = opt.param_groups[0]
    assert (group["lr"], tuple(group["betas"]), group["implementation"]) == (
        0.01,
        (0.8, 0.95),
        "torch",
    )
    powers = [np.float32(1.0), np.float32(1.0)]
    for _ in range(4):
        powers = [np.float32(p * np.float32(b)) for p, b in zip(powers, (0.8, 0.95), strict=True)]
    for param in model.parameters():
        state, adam_state = opt.state[param], adam.state[param]
        assert torch.equal(state["m"], adam_state["exp_avg"])
        assert torch.equal(state["v"], adam_state["exp_avg_sq"])
        assert torch.equal(state["vhat"], adam_state["max_exp_avg_sq"])
        assert state["step"] == 4 and type(state["step"]) is int
        assert (state["beta1_power"], state["beta2_power"]) == tuple(map(float, powers))
    model(torch.randn(5, 4)).square().sum().backward()
    opt.step()
    assert all(opt.state[p]["step"] == 5 for p in model.parameters())


def test_load_state_dict_refuses_torch_adam_without_amsgrad() -> None:
    model = torch.nn.Linear(2, 1)
    adam = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    adam.step()
    opt = AMSGradV2(model.parameters())
    with pytest.raises(ValueError, match=r"max_exp_avg_sq.*amsgrad=False.*exp_avg_sq"):
        opt.load_state_dict(adam.state_dict())
    assert not opt.state


# --------------------------------------------------------------------------- grad centralization


def _centralized_reference(grad: np.ndarray) -> np.ndarray:
    """MindSpore's Centralization as docs/frameworks.md defines it here: the mean over every
    axis but the first, in float64, rounded once to the dtype; then the subtraction in it."""
    if grad.ndim < 2 or grad.shape[1] % 16:
        return grad
    mean = grad.astype(np.float64).mean(axis=tuple(range(1, grad.ndim)), keepdims=True)
    return grad - mean.astype(grad.dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_grad_centralization_matches_its_reference(dtype):
    gen = torch.Generator().manual_seed(5)
    shapes = [(3, 16), (2, 32, 3), (4, 15), (16,), (5, 16, 1, 2)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ours = AMSGradV2([{"params": params, "grad_centralization": True}], lr=1e-2, eps=1e-3)
    plain = AMSGradV2(copies, lr=1e-2, eps=1e-3)
    for _ in range(3):
        grads = [torch.randn(s, generator=gen).to(dtype) + 3 for s in shapes]
        for p, q, g in zip(params, copies, grads, strict=True):
            p.grad = g.clone()
            q.grad = torch.from_numpy(_centralized_reference(g.numpy()))
        ours.step()
        plain.step()
        for p, q in zip(params, copies, strict=True):
            assert np.array_equal(
                p.detach().numpy().view(np.uint8), q.detach().numpy().view(np.uint8)
            )
    # the shapes MindSpore leaves alone were updated with their own gradient
    assert not torch.equal(params[0].detach(), torch.zeros_like(params[0]))


def test_grad_centralization_is_a_bool_group_key():
    p = torch.nn.Parameter(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="grad_centralization=1 is not supported; use a bool"):
        AMSGradV2([{"params": [p], "grad_centralization": 1}])
    opt = AMSGradV2([p])
    assert opt.param_groups[0]["grad_centralization"] is False


# ------------------------------------------------------------------- torch.optim state dicts


def _adam_state_dict(optimizer_class, steps: int = 2, **kwargs):
    torch.manual_seed(2)
    model = torch.nn.Linear(3, 2)
    adam = optimizer_class(model.parameters(), **kwargs)
    for _ in range(steps):
        adam.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        adam.step()
    return model, adam.state_dict()


def _assert_untouched(opt: AMSGradV2, lr: float) -> None:
    assert not opt.state
    assert opt.param_groups[0]["lr"] == lr and "amsgrad" not in opt.param_groups[0]


def test_load_state_dict_refuses_torch_adamw() -> None:
    """AdamW's decay shrinks the parameters apart from the gradient; MindSpore's Adam adds
    weight_decay * param to the gradient: not the same update, so not converted."""
    model, saved = _adam_state_dict(torch.optim.AdamW, amsgrad=True, weight_decay=0.01)
    opt = AMSGradV2(model.parameters(), lr=0.5)
    with pytest.raises(
        ValueError,
        match=r"^param_groups\[0\]: .*AdamW.*decoupled_weight_decay=True.*weight_decay=0.01.*"
        r"not .*MindSpore.*'weight_decay' to 0",
    ):
        opt.load_state_dict(saved)
    _assert_untouched(opt, 0.5)


def test_load_state_dict_converts_torch_adamw_without_decay() -> None:
    model, saved = _adam_state_dict(torch.optim.AdamW, amsgrad=True, weight_decay=0.0)
    opt = AMSGradV2(model.parameters(), lr=0.5)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["weight_decay"] == 0.0
    assert all(opt.state[p]["step"] == 2 for p in model.parameters())


def test_load_state_dict_refuses_an_adam_group_whose_decay_kind_is_unknown() -> None:
    """A group without decoupled_weight_decay (older torch, where Adam and AdamW saved the same
    keys) and a weight decay: Adam's or AdamW's cannot be told apart."""
    model, saved = _adam_state_dict(torch.optim.Adam, amsgrad=True, weight_decay=0.01)
    del saved["param_groups"][0]["decoupled_weight_decay"]
    opt = AMSGradV2(model.parameters(), lr=0.5)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]: .*no 'decoupled_weight_decay'"):
        opt.load_state_dict(saved)
    _assert_untouched(opt, 0.5)
    saved["param_groups"][0]["decoupled_weight_decay"] = False  # as the message says
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("amsgrad", [True, False])
def test_load_state_dict_converts_torch_adam_saved_before_any_step(amsgrad: bool) -> None:
    """No state yet: only the hyper-parameters are converted (Adam's own keys are dropped)."""
    model, saved = _adam_state_dict(
        torch.optim.Adam, steps=0, lr=0.02, betas=(0.8, 0.9), amsgrad=amsgrad
    )
    opt = AMSGradV2(model.parameters(), lr=0.5, implementation="torch")
    opt.load_state_dict(saved)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["implementation"]) == (0.02, (0.8, 0.9), "torch")
    assert "amsgrad" not in group and "decoupled_weight_decay" not in group
    assert not opt.state
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert all(opt.state[p]["step"] == 1 for p in model.parameters())


def test_from_torch_adam_computes_each_beta_power_once(monkeypatch) -> None:
    """The powers are products of `step` float32 multiplications: computed once per distinct
    (step, beta1, beta2) in a state dict, with the same bits."""
    from amsgrad.adapters import torch_support

    calls = []
    original = torch_support.beta_powers

    def counting(step, beta1, beta2):
        calls.append((step, beta1, beta2))
        return original(step, beta1, beta2)

    monkeypatch.setattr(torch_support, "beta_powers", counting)
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(6)]
    zeros = torch.zeros(2)
    state = {
        index: {
            "step": torch.tensor(float(3 if index < 4 else 5)),
            "exp_avg": zeros,
            "exp_avg_sq": zeros,
            "max_exp_avg_sq": zeros,
        }
        for index in range(6)
    }
    group = {"lr": 0.1, "betas": (0.8, 0.9), "eps": 1e-8, "weight_decay": 0, "amsgrad": True}
    saved = {"state": state, "param_groups": [{**group, "params": list(range(6))}]}
    converted = torch_support.from_torch_adam(saved, [{"params": params, "lr": 0.5}])
    betas = (np.float32(0.8), np.float32(0.9))
    assert sorted(calls) == [(3, *betas), (5, *betas)]
    for index in range(6):
        step = 3 if index < 4 else 5
        powers = [np.float32(1.0), np.float32(1.0)]
        for _ in range(step):
            powers = [
                np.float32(p * np.float32(b)) for p, b in zip(powers, (0.8, 0.9), strict=True)
            ]
        got = converted["state"][index]
        assert (got["beta1_power"], got["beta2_power"]) == tuple(map(float, powers))


# --------------------------------------------------------------------------- decay filter


def test_mindspore_param_groups_reads_mindspore_names_through_name_map() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    # By torch's names (weight, bias) the LayerNorm decays, as every other parameter.
    (only,) = mindspore_param_groups(model.named_parameters(), 0.1)
    assert len(only["params"]) == 4 and only["weight_decay"] == 0.1
    to_ms = {"1.weight": "1.gamma", "1.bias": "1.beta"}
    for name_map in (to_ms, lambda name: to_ms.get(name, name)):
        decayed, spared = mindspore_param_groups(model.named_parameters(), 0.1, name_map)
        assert decayed["params"] == [model[0].weight, model[0].bias]
        assert spared["params"] == [model[1].weight, model[1].bias]
        assert spared["weight_decay"] == 0.0


def test_mindspore_param_groups_refuses_unnamed_parameters() -> None:
    model = torch.nn.Linear(3, 3)
    with pytest.raises(TypeError, match=r"^named_parameters\[0\]: expected a \(name, tensor\)"):
        mindspore_param_groups(model.parameters(), 0.1)


@pytest.mark.parametrize("kind", ["tensor", "ndarray", "group"])
def test_a_1d_tensor_or_array_of_learning_rates_is_a_per_step_list(kind: str) -> None:
    values = [0.1, 0.05, 0.025]
    given = {"tensor": torch.tensor(values), "ndarray": np.array(values, np.float32)}
    results = []
    for lr in (values, given.get(kind, torch.tensor(values))):
        param = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 5))
        if kind == "group":
            opt = AMSGradV2([{"params": [param], "lr": lr}], lr=0.5)
        else:
            opt = AMSGradV2([param], lr=lr)
        for _ in range(3):
            param.grad = torch.cos(param.detach() * 3)
            opt.step()
        results.append(param.detach().clone())
    # float32 values of the tensor: the same float32 learning rates as the list's
    assert torch.equal(results[0], results[1])


def test_mindspores_order_params_key_is_named() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=r"^param_groups\[1\]: 'order_params' is MindSpore's"):
        AMSGradV2([{"params": [param]}, {"order_params": [param], "params": []}])
