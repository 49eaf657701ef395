"""AMSGradV2's fast step (adapters/torch_fast.py): the checks of the last full step reused.

Every test runs two optimizers on copies of one model: one as it comes (the fast step runs from
the second step on), one forced onto the full path before every step. They must agree bit for
bit whatever happens between the steps, and the fast step must actually run where it applies.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from amsgrad.adapters import torch_fast
from amsgrad.torch import AMSGradV2


@pytest.fixture
def fast_runs(monkeypatch):
    """How many fast steps completed (torch_fast.run returning True)."""
    count = [0]
    original = torch_fast.run

    def counting(prepared):
        done = original(prepared)
        count[0] += bool(done and prepared)
        return done

    monkeypatch.setattr(torch_fast, "run", counting)
    return count


def _params(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (7,), (1,), (0,), (4, 4, 2), (2, 16)]
    return [
        torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype))
        for shape in shapes
    ]


def _grads(params, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) for p in params]


def _pair(make_groups, **kwargs):
    """(fast, full): two optimizers over two copies of the same parameters."""
    params = _params(kwargs.pop("dtype", torch.float32))
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    return (
        (AMSGradV2(make_groups(params), **kwargs), params),
        (AMSGradV2(make_groups(copies), **kwargs), copies),
    )


def _step_both(fast, full, seed, skip=()):
    for (opt, params), force_full in ((fast, False), (full, True)):
        for index, (param, grad) in enumerate(zip(params, _grads(params, seed), strict=True)):
            param.grad = None if index in skip else grad
        if force_full:
            opt._fast_plans = {}
        opt.step()


def _assert_same(fast, full):
    (opt_a, params_a), (opt_b, params_b) = fast, full
    for a, b in zip(params_a, params_b, strict=True):
        assert torch.equal(a.detach().reshape(-1), b.detach().reshape(-1)) or (
            a.numel() and np.array_equal(a.detach().numpy(), b.detach().numpy(), equal_nan=True)
        )
        state_a, state_b = opt_a.state.get(a), opt_b.state.get(b)
        assert (state_a is None) == (state_b is None)
        if state_a is None:
            continue
        for key in ("step", "beta1_power", "beta2_power"):
            assert state_a[key] == state_b[key], key
        for key in ("m", "v", "vhat"):
            assert np.array_equal(
                state_a[key].numpy().view(np.uint8), state_b[key].numpy().view(np.uint8)
            ), key


CONFIGS = {
    "float32": (lambda ps: ps, {}),
    "float16": (lambda ps: ps, {"dtype": torch.float16, "eps": 1e-4}),
    "float64": (lambda ps: ps, {"dtype": torch.float64, "lr": 0.1}),
    "groups": (
        lambda ps: [{"params": ps[:2], "lr": 0.05, "betas": (0.5, 0.75)}, {"params": ps[2:]}],
        {"lr": 1e-3},
    ),
    "decay-loss-scale": (lambda ps: ps, {"weight_decay": 0.1, "loss_scale": 8.0}),
    "maximize": (lambda ps: ps, {"maximize": True}),
    "centralization": (lambda ps: ps, {"grad_centralization": True}),
    "lr-list": (lambda ps: ps, {"lr": [0.1 / (k + 1) for k in range(10)]}),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_fast_steps_equal_full_steps(config, fast_runs):
    make_groups, kwargs = CONFIGS[config]
    fast, full = _pair(make_groups, **kwargs)
    for seed in range(8):
        _step_both(fast, full, seed)
        _assert_same(fast, full)
    assert fast_runs[0] == 7  # every step after the first


def test_a_frozen_parameter_stays_skipped(fast_runs):
    fast, full = _pair(lambda ps: ps)
    for seed in range(5):
        _step_both(fast, full, seed, skip={1})
        _assert_same(fast, full)
    assert fast_runs[0] == 4
    assert fast[0].state.get(fast[1][1]) is None


def _swap_data(opt, params):
    params[0].data = params[0].data.clone() * 2


def _drop_grad(opt, params):
    params[1].grad = None


def _transposed_grad(opt, params):
    params[0].grad = params[0].grad.t().contiguous().t()  # same values, strided


def _new_lr(opt, params):
    opt.param_groups[0]["lr"] = 0.25
    opt.param_groups[0]["betas"] = (0.8, 0.9)


def _replace_moment(opt, params):
    opt.state[params[0]]["m"] = torch.full_like(params[0], 0.5).detach()


def _moment_data(opt, params):
    opt.state[params[0]]["v"].data = torch.full_like(params[0], 0.25).detach()


def _replace_state(opt, params):
    opt.state[params[2]] = copy.deepcopy(opt.state[params[2]])


def _reload(opt, params):
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))


def _edit_counter(opt, params):
    opt.state[params[4]]["beta1_power"] = 0.5


def _clear_state(opt, params):
    opt.state.clear()


# Changes that keep every object and address: the fast step must see them all the same.


def _transposed_data(opt, params):
    params[4].data = params[4].data.transpose(0, 1)  # (4, 4, 2): same shape, same address


def _dtype_view(opt, params):
    params[5].data = params[5].data.view(torch.float16)  # same address, another dtype


def _reshaped_data(opt, params):
    params[0].data = params[0].data.view(3, 5)  # same address, another shape


def _negated_data(opt, params):
    params[1].data = params[1].data._neg_view()


def _reshaped_grad(opt, params):
    params[0].grad.data = params[0].grad.data.reshape(3, 5)  # torch checks `.grad =`, not this


def _grad_of_another_dtype(opt, params):
    params[1].grad_dtype = None  # torch's own check, lifted
    params[1].grad = params[1].grad.double()


def _resized_moment(opt, params):
    opt.state[params[0]]["m"].resize_(4)  # shrunk in place: same address


def _moment_dtype_view(opt, params):
    opt.state[params[0]]["vhat"].data = opt.state[params[0]]["vhat"].data.view(torch.int32)


def _float_step(opt, params):
    opt.state[params[2]]["step"] = float(opt.state[params[2]]["step"])  # equal, not an int


def _numpy_power(opt, params):
    state = opt.state[params[2]]
    state["beta2_power"] = np.float64(state["beta2_power"])  # equal, not a float


def _capturable(opt, params):
    opt.param_groups[0]["capturable"] = True


def _fused(opt, params):
    opt.param_groups[0]["fused"] = True


def _differentiable(opt, params):
    opt.param_groups[0]["differentiable"] = True


def _transposed_square_moment(opt, params):
    m = opt.state[params[4]]["m"]
    m.data = m.data.transpose(0, 1)  # (4, 4, 2): same shape and address, elements reordered


def _expanded_vhat(opt, params):
    vhat = opt.state[params[1]]["vhat"]
    vhat.data = vhat.data[:1].expand(7)  # stride 0: the same address and element count


def _decay_false(opt, params):
    opt.param_groups[0]["weight_decay"] = False  # == 0.0, refused by the full path


def _loss_scale_tensor(opt, params):
    opt.param_groups[0]["loss_scale"] = torch.tensor(1.0)  # == 1.0, refused likewise


def _master_entry(opt, params):
    opt.state[params[0]]["master"] = params[0].detach().clone()


def _misaligned_grad(opt, params):
    buffer = np.frombuffer(bytearray(4 * 7 + 1), np.float32, 7, 1)  # 1 byte off
    buffer[:] = params[1].grad.numpy()
    params[1].grad = torch.from_numpy(buffer)


CHANGES = [
    _transposed_square_moment,
    _expanded_vhat,
    _decay_false,
    _loss_scale_tensor,
    _master_entry,
    _misaligned_grad,
    _swap_data,
    _drop_grad,
    _transposed_grad,
    _new_lr,
    _replace_moment,
    _moment_data,
    _replace_state,
    _reload,
    _edit_counter,
    _clear_state,
    _transposed_data,
    _dtype_view,
    _reshaped_data,
    _negated_data,
    _reshaped_grad,
    _grad_of_another_dtype,
    _resized_moment,
    _moment_dtype_view,
    _float_step,
    _numpy_power,
    _capturable,
    _fused,
    _differentiable,
]


def _outcome(opt):
    try:
        opt.step()
    except (TypeError, ValueError, RuntimeError) as error:
        return type(error), str(error)
    return None


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_changes_between_steps_are_seen(change):
    """After any change, the fast optimizer does what the full path does: the same update, or
    the same error with nothing written."""
    fast, full = _pair(lambda ps: ps)
    for seed in range(3):
        _step_both(fast, full, seed)
    assert fast[0]._fast_plans  # the fast optimizer takes the fast step if it still can
    for opt, params in (fast, full):
        for param, grad in zip(params, _grads(params, 3), strict=True):
            param.grad = grad
        change(opt, params)
    before = _unchanged(*fast)
    full[0]._fast_plans = {}
    expected = _outcome(full[0])
    assert _outcome(fast[0]) == expected
    if expected is not None:
        _assert_unchanged(*fast, before)
        return
    _assert_same(fast, full)
    for seed in range(4, 6):  # and the steps after it
        _step_both(fast, full, seed)
        _assert_same(fast, full)


def test_beta_powers_underflowing_under_numpy_raise(fast_runs):
    """With np.seterr(all="raise"), the beta powers become subnormal (0.6 ** 190 in float32)
    on the fast step as on the full one, without a FloatingPointError."""
    fast, full = _pair(lambda ps: ps, betas=(0.6, 0.6))
    with np.errstate(all="raise"):
        for seed in range(190):
            _step_both(fast, full, seed % 7)
    _assert_same(fast, full)
    assert fast_runs[0] == 189
    assert 0 < fast[0].state[fast[1][0]]["beta1_power"] < np.finfo(np.float32).tiny


def test_a_misaligned_parameter_keeps_training(fast_runs):
    buffer = np.frombuffer(bytearray(4 * 6 + 1), np.float32, 6, 1)
    buffer[:] = np.linspace(-1, 1, 6)
    param = torch.nn.Parameter(torch.from_numpy(buffer))
    twin = torch.nn.Parameter(param.detach().clone())
    fast, full = (AMSGradV2([param], lr=0.1), [param]), (AMSGradV2([twin], lr=0.1), [twin])
    for seed in range(4):
        _step_both(fast, full, seed)
        _assert_same(fast, full)
    assert fast[0].state[param]["step"] == 4
    assert fast_runs[0] == 0  # declined before anything was written: the full path ran


def test_a_new_group_is_seen(fast_runs):
    fast, full = _pair(lambda ps: [{"params": ps[:3]}])
    for seed in range(3):
        _step_both(fast, full, seed, skip={3, 4})
    for opt, params in (fast, full):
        opt.add_param_group({"params": params[3:], "lr": 0.5})
    for seed in range(3, 6):
        _step_both(fast, full, seed)
        _assert_same(fast, full)
    assert fast_runs[0] == 2 + 2  # the two steps after each full step that made plans


def _stepped(**kwargs):
    params = _params()
    opt = AMSGradV2(params, **kwargs)
    for seed in range(2):
        for param, grad in zip(params, _grads(params, seed), strict=True):
            param.grad = grad
        opt.step()
    assert bool(opt._fast_plans) == (kwargs.get("implementation", "auto") == "auto")
    return opt, params


def _bits(tensor):
    return tensor.detach().resolve_neg().contiguous().view(torch.uint8)


def _unchanged(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params]


def _assert_unchanged(opt, params, before):
    state, values = before
    for param, value in zip(params, values, strict=True):
        assert torch.equal(_bits(param), _bits(value))
    for key, entry in opt.state_dict()["state"].items():
        for name, value in entry.items():
            expected = state["state"][key][name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, expected)
            else:
                assert value == expected


def test_errors_after_fast_steps_are_the_full_paths():
    opt, params = _stepped()
    params[0].grad = params[0].detach()  # shares the parameter's memory
    before = _unchanged(opt, params)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    _assert_unchanged(opt, params, before)

    opt, params = _stepped()
    params[1].grad = torch.randn(7).to_sparse()
    before = _unchanged(opt, params)
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    _assert_unchanged(opt, params, before)

    opt, params = _stepped()
    del opt.state[params[4]]["vhat"]
    with pytest.raises(ValueError, match="vhat"):
        opt.step()


def test_grads_sharing_memory_still_run():
    shared = torch.randn(7)
    results = []
    for force_full in (False, True):
        opt, params = _stepped()
        params[1].grad = shared  # grads may share memory: they are only read
        params[2].grad = shared[:1]
        if force_full:
            opt._fast_plans = {}
        opt.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_autograd_sees_the_in_place_update():
    opt, params = _stepped()
    loss = (params[0] * params[0]).sum()  # saves params[0] for backward
    for param, grad in zip(params, _grads(params, 9), strict=True):
        param.grad = grad
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# --------------------------------------------------------------------------- torch.compile


def _train(compiled: bool, steps: int = 6):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = AMSGradV2(model.parameters(), lr=1e-2)

    def train_step(x, y):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    if compiled:
        train_step = torch.compile(train_step, backend="eager")
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        train_step(torch.randn(16, 6, generator=gen), torch.randn(16, 1, generator=gen))
    return model, opt


def test_torch_compile_no_recompiles_no_warnings_same_bits(recwarn):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):
        model, opt = _train(compiled=True)
    reference, _ = _train(compiled=False)
    assert not [w for w in recwarn if "ynamo" in str(w.message) or "graph" in str(w.message)]
    # The step runs as it is (torch.compiler.disable): Dynamo skips it, and traces no guard on
    # the beta powers or the fast step's state, so nothing recompiles (error_on_recompile).
    reasons = " ".join(counters["graph_break"])
    assert "AMSGradV2.step" in reasons
    assert "numpy" not in reasons and "apply_addresses" not in reasons
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a.detach(), b.detach())
    assert next(iter(opt.state.values()))["step"] == 6


@pytest.mark.parametrize("implementation", ["torch", "auto-bfloat16"])
def test_only_kernel_groups_get_plans(implementation):
    if implementation == "torch":
        opt, _ = _stepped(implementation="torch")
    else:
        params = [torch.nn.Parameter(torch.randn(4, dtype=torch.bfloat16))]
        opt = AMSGradV2(params, lr=1e-3, betas=(0.5, 0.75), implementation="torch")
        for _ in range(2):
            params[0].grad = torch.randn(4, dtype=torch.bfloat16)
            opt.step()
    assert opt._fast_plans == {}


def test_on_the_numpy_backend_the_full_path_runs(fast_runs):
    from amsgrad.core import kernel

    previous = kernel.selected_backend()
    kernel.select_backend("numpy")
    try:
        fast, full = _pair(lambda ps: ps)
        for seed in range(3):
            _step_both(fast, full, seed)
            _assert_same(fast, full)
    finally:
        kernel.select_backend(previous)
    assert fast_runs[0] == 0  # apply_addresses declined: every step took the full path
