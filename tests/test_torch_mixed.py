"""AMSGradV2's parameters updated in another dtype than their own (adapters/torch_mixed.py).

* ``master_weights=True``: float16 and bfloat16 parameters through a float32 master copy, held
  equal bit for bit to a hand-written reference (the float32 functional operator on a float32
  copy, rounded to the parameter's dtype after every step);
* complex parameters: held equal to the functional operator on ``torch.view_as_real`` of the
  same data;
* neither takes the fast step, and the full steps they take agree with themselves.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import amsgrad  # noqa: E402
from amsgrad.adapters import torch_fast  # noqa: E402
from amsgrad.torch import AMSGradV2  # noqa: E402

HALVES = [torch.bfloat16, torch.float16]
COMPLEX = [torch.complex64, torch.complex128]
IMPLEMENTATIONS = ["kernel", "torch"]
SHAPES = [(5, 3), (7,), (0,), (2, 2, 2)]
LR, BETA1, BETA2, EPS = 0.01, 0.9, 0.999, 1e-8
#: The gradient preparation of MindSpore's nn.Adam, exercised through the master copy.
OPTIONS = {
    "plain": {},
    "decay-loss-scale-maximize": {"weight_decay": 0.1, "loss_scale": 4.0, "maximize": True},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fast_runs(monkeypatch):
    """How many fast steps completed."""
    count = [0]
    original = torch_fast.run

    def counting(prepared):
        done = original(prepared)
        count[0] += bool(done and prepared)
        return done

    monkeypatch.setattr(torch_fast, "run", counting)
    return count


def _randn(shape, dtype, gen):
    """Values of ``dtype`` (complex: independent real and imaginary parts), with a few zeros."""
    real = REAL.get(dtype, dtype)
    values = torch.randn((*shape, 2) if dtype in REAL else shape, generator=gen)
    values = values.to(torch.float64).mul_(3).to(real)
    flat = values.view(-1)
    flat[::5] = 0
    return torch.view_as_complex(values) if dtype in REAL else values


REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def _set_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    """Give ``param`` a gradient of another dtype (PyTorch 2.13 checks ``grad_dtype``)."""
    if grad.dtype != param.dtype and hasattr(param, "grad_dtype"):
        param.grad_dtype = None
    try:
        param.grad = grad
    except RuntimeError as error:  # an older PyTorch: no gradient of another dtype at all
        pytest.skip(f"this PyTorch refuses the gradient: {error}")


def _bits(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().resolve_conj()
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy().view(np.uint8)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(_bits(a), _bits(b))


def _reference_grad(var: np.ndarray, grad: np.ndarray, options: dict) -> np.ndarray:
    """MindSpore's gradient preparation in var's dtype, written out (see docs)."""
    grad = grad.copy()
    if options.get("maximize"):
        grad = -grad
    weight_decay, loss_scale = options.get("weight_decay", 0.0), options.get("loss_scale", 1.0)
    dtype = var.dtype.type
    if weight_decay * loss_scale > 0:
        grad = var * dtype(np.float32(weight_decay * loss_scale)) + grad
    if loss_scale != 1.0:
        grad = grad * dtype(np.float32(1.0 / loss_scale))
    return grad


class _Reference:
    """The functional operator on float32 (or real-view) copies, beta powers as MindSpore."""

    def __init__(self, var: np.ndarray, options: dict) -> None:
        self.var = var.copy()
        self.m, self.v, self.vhat = (np.zeros_like(var) for _ in range(3))
        self.powers = (np.float32(1.0), np.float32(1.0))
        self.options = options

    def step(self, grad: np.ndarray) -> None:
        self.powers = (
            np.float32(self.powers[0] * np.float32(BETA1)),
            np.float32(self.powers[1] * np.float32(BETA2)),
        )
        grad = _reference_grad(self.var, grad, self.options)
        amsgrad.apply_adam_with_amsgrad_v2(
            self.var,
            self.m,
            self.v,
            self.vhat,
            float(self.powers[0]),
            float(self.powers[1]),
            LR,
            BETA1,
            BETA2,
            EPS,
            grad,
        )


# --------------------------------------------------------------------------- master weights


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_master_weights_equal_a_float32_reference(dtype, implementation, options):
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(_randn(shape, dtype, gen)) for shape in SHAPES]
    opt = AMSGradV2(
        params, lr=LR, eps=EPS, master_weights=True, implementation=implementation,
        **OPTIONS[options],
    )  # fmt: skip
    # The master copy starts as the parameter widened (exactly) to float32.
    refs = [_Reference(p.detach().to(torch.float32).numpy(), OPTIONS[options]) for p in params]
    for _ in range(5):
        grads = [_randn(p.shape, dtype, gen) for p in params]
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        opt.step()
        for param, grad, ref in zip(params, grads, refs, strict=True):
            ref.step(grad.to(torch.float32).numpy())
            state = opt.state[param]
            assert param.dtype == dtype
            assert {state[k].dtype for k in ("master", "m", "v", "vhat")} == {torch.float32}
            for key in ("m", "v", "vhat"):
                assert _same(state[key], torch.from_numpy(getattr(ref, key))), key
            assert _same(state["master"], torch.from_numpy(ref.var))
            # The parameter is the master copy rounded to its dtype (to nearest, ties to even).
            assert _same(param, torch.from_numpy(ref.var).to(dtype))
            assert (state["beta1_power"], state["beta2_power"]) == tuple(map(float, ref.powers))
    # Not a no-op: the master copies hold bits the parameters cannot.
    master = opt.state[params[0]]["master"]
    assert not torch.equal(master, params[0].detach().to(torch.float32))


def test_master_weights_and_a_float32_gradient():
    """A float32 gradient of a bfloat16 parameter is used as it is (the update runs in
    float32); one of the parameter's dtype is widened exactly: the same bits."""
    gen = torch.Generator().manual_seed(2)
    value = _randn((6,), torch.bfloat16, gen)
    grad32 = _randn((6,), torch.float32, gen)
    results = []
    for grad in (grad32, grad32.to(torch.bfloat16), grad32.to(torch.bfloat16).float()):
        param = torch.nn.Parameter(value.clone())
        _set_grad(param, grad)
        opt = AMSGradV2([param], master_weights=True)
        opt.step()
        results.append(opt.state[param]["m"].clone())
    assert not torch.equal(results[0], results[1])  # the float32 bits were used
    assert torch.equal(results[1], results[2])  # widening is exact


def test_master_weights_runs_in_float32_so_eps_1e_8_is_fine_in_float16():
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    param.grad = torch.zeros(3, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"eps: 1e-08 rounds to 0 in float16.*master_weights=True"):
        AMSGradV2([param], eps=1e-8).step()
    opt = AMSGradV2([param], eps=1e-8, master_weights=True)
    opt.step()  # float32 holds 1e-8: no division by zero
    assert torch.equal(param, torch.zeros(3, dtype=torch.float16))
    assert opt.state[param]["m"].dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_master_weights_leave_other_dtypes_as_they_are(dtype):
    """In a master-weights group, float32/float64 parameters are updated as without it (no
    master copy), beside a bfloat16 one that gets its copy."""
    gen = torch.Generator().manual_seed(3)
    plain = _randn((4, 3), dtype, gen)
    half = _randn((5,), torch.bfloat16, gen)
    grads = [(_randn((4, 3), dtype, gen), _randn((5,), torch.bfloat16, gen)) for _ in range(3)]
    with_flag = [torch.nn.Parameter(plain.clone()), torch.nn.Parameter(half.clone())]
    without = torch.nn.Parameter(plain.clone())
    opt_flag = AMSGradV2(with_flag, master_weights=True)
    opt_plain = AMSGradV2([without])
    for grad_plain, grad_half in grads:
        with_flag[0].grad, with_flag[1].grad, without.grad = grad_plain, grad_half, grad_plain
        opt_flag.step()
        opt_plain.step()
    assert _same(with_flag[0], without)
    assert "master" not in opt_flag.state[with_flag[0]]
    assert opt_flag.state[with_flag[0]]["m"].dtype == dtype
    assert "master" in opt_flag.state[with_flag[1]]


def test_without_master_weights_nothing_changes():
    """bfloat16 is refused on the kernel path (the message names the option); float16 runs in
    float16."""
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=r"master_weights=True.*float32 master weights"):
        AMSGradV2([param])
    half = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    half.grad = torch.ones(3, dtype=torch.float16)
    opt = AMSGradV2([half], eps=1e-4)
    opt.step()
    assert set(opt.state[half]) == {"step", "beta1_power", "beta2_power", "m", "v", "vhat"}
    assert opt.state[half]["m"].dtype == torch.float16


def test_master_weights_must_be_a_bool():
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="master_weights=1 is not supported; use a bool"):
        AMSGradV2([param], master_weights=1)
    opt = AMSGradV2([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match=r"param_groups\[1\]: master_weights='yes'"):
        opt.add_param_group({"params": [param], "master_weights": "yes"})
    opt.add_param_group({"params": [param], "master_weights": True})  # bfloat16: accepted


def _stepped(dtype=torch.bfloat16, steps=3, seed=4):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(_randn(shape, dtype, gen)) for shape in SHAPES]
    opt = AMSGradV2(params, lr=LR, master_weights=True)
    for _ in range(steps):
        for param in params:
            param.grad = _randn(param.shape, dtype, gen)
        opt.step()
    return opt, params


def _snapshot(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params]


def _assert_unchanged(opt, params, snapshot):
    saved, values = snapshot
    for param, value in zip(params, values, strict=True):
        assert _same(param, value)
    now = opt.state_dict()
    assert now["param_groups"] == saved["param_groups"]
    for key, entry in now["state"].items():
        assert set(entry) == set(saved["state"][key])
        for name, value in entry.items():
            expected = saved["state"][key][name]
            assert _same(value, expected) if isinstance(value, torch.Tensor) else value == expected


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_master_weights_state_dict_round_trip(dtype):
    opt, params = _stepped(dtype)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = AMSGradV2(copies, lr=LR, master_weights=True)
    resumed.load_state_dict(loaded)
    for param, copied in zip(params, copies, strict=True):
        state, restored = opt.state[param], resumed.state[copied]
        for name in ("master", "m", "v", "vhat"):
            # load_state_dict casts floating state to the parameter's dtype: undone here
            assert _same(restored[name], state[name]), name
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        for param, copied in zip(params, copies, strict=True):
            param.grad = _randn(param.shape, dtype, gen)
            copied.grad = param.grad.clone()
        opt.step()
        resumed.step()
    for param, copied in zip(params, copies, strict=True):
        assert _same(param, copied)
        assert _same(opt.state[param]["master"], resumed.state[copied]["master"])


def _edited(opt, edit):
    state_dict = copy.deepcopy(opt.state_dict())
    edit(state_dict["state"][0])
    return state_dict


LOAD_ERRORS = {
    "master of the wrong shape": (
        lambda s: s.update(master=torch.zeros(4, 3)),
        r"\['params'\]\[0\].*'master' has shape \(4, 3\), expected the parameter's shape \(5, 3\)",
    ),
    "master in bfloat16": (
        lambda s: s.update(master=s["master"].to(torch.bfloat16)),
        r"'master' has dtype torch.bfloat16, expected float32",
    ),
    "m in float64": (
        lambda s: s.update(m=s["m"].double()),
        r"'m' has dtype torch.float64, expected float32",
    ),
    "no master": (lambda s: s.pop("master"), r"missing keys 'master'"),
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_state_dict_checks_the_master_copy(case):
    edit, message = LOAD_ERRORS[case]
    opt, params = _stepped()
    snapshot = _snapshot(opt, params)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(_edited(opt, edit))
    _assert_unchanged(opt, params, snapshot)


def test_a_master_state_is_not_loaded_without_master_weights():
    opt, params = _stepped(torch.float16)
    other = AMSGradV2([torch.nn.Parameter(p.detach().clone()) for p in params], eps=1e-4)
    with pytest.raises(ValueError, match=r"'master' is a master-weights state"):
        groups = other.state_dict()["param_groups"]  # its groups: master_weights False
        other.load_state_dict(copy.deepcopy(opt.state_dict()) | {"param_groups": groups})
    assert not other.state


def test_turning_master_weights_on_later_is_refused_before_writing(fast_runs):
    """A float16 group that trained without master copies: the flag set between steps is
    seen (also by the fast step) and refused, naming what is missing."""
    gen = torch.Generator().manual_seed(6)
    params = [torch.nn.Parameter(_randn(shape, torch.float16, gen)) for shape in SHAPES]
    opt = AMSGradV2(params, eps=1e-4)
    for _ in range(3):
        for param in params:
            param.grad = _randn(param.shape, torch.float16, gen)
        opt.step()
    assert fast_runs[0] == 2
    opt.param_groups[0]["master_weights"] = True
    snapshot = _snapshot(opt, params)
    with pytest.raises(ValueError, match=r"missing keys 'master'.*master_weights=True keeps"):
        opt.step()
    _assert_unchanged(opt, params, snapshot)


def test_master_weights_gradient_errors_write_nothing():
    opt, params = _stepped()
    snapshot = _snapshot(opt, params)
    _set_grad(params[0], torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"dtype torch.float64; with master_weights=True"):
        opt.step()
    params[0].grad = torch.zeros(5, 3, dtype=torch.bfloat16)
    _set_grad(params[1], torch.zeros(7, dtype=torch.float16))  # the second one: also seen
    with pytest.raises(TypeError, match=r"dtype torch.float16; with master_weights=True"):
        opt.step()
    _assert_unchanged(opt, params, snapshot)


def test_master_weights_refused_by_mindspore_checkpoints(tmp_path):
    model = torch.nn.Linear(3, 2).to(torch.float16)
    opt = AMSGradV2(model.parameters(), master_weights=True)
    with pytest.raises(TypeError, match="master_weights=True"):
        opt.save_mindspore(tmp_path / "x.ckpt", model)
    assert not (tmp_path / "x.ckpt").exists()


def test_a_parameter_edited_outside_the_optimizer_follows_the_master_copy():
    """As docs/frameworks.md says: the step reads the master copy (an edit of the parameter is
    overwritten), and copying the edit into the master makes the next step start from it."""
    p = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    opt = AMSGradV2([p], lr=LR, master_weights=True)
    for _ in range(2):
        p.grad = torch.ones(8, dtype=torch.bfloat16)
        opt.step()
    with torch.no_grad():
        p.fill_(5.0)  # say, weights loaded from elsewhere
    p.grad = torch.ones(8, dtype=torch.bfloat16)
    opt.step()
    assert torch.equal(p.detach(), opt.state[p]["master"].to(torch.bfloat16))
    assert float(p.detach()[0]) < 1.0  # the edit is gone
    with torch.no_grad():
        p.fill_(5.0)
        opt.state[p]["master"].copy_(p)
    p.grad = torch.ones(8, dtype=torch.bfloat16)
    opt.step()
    assert 4.9 < float(opt.state[p]["master"][0]) < 5.0  # one small step from the edit


# --------------------------------------------------------------------------- complex


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", COMPLEX, ids=str)
def test_complex_equals_the_operator_on_real_pairs(dtype, implementation, options):
    gen = torch.Generator().manual_seed(7)
    params = [torch.nn.Parameter(_randn(shape, dtype, gen)) for shape in SHAPES]
    opt = AMSGradV2(params, lr=LR, eps=EPS, implementation=implementation, **OPTIONS[options])
    refs = [_Reference(torch.view_as_real(p.detach()).numpy(), OPTIONS[options]) for p in params]
    for _ in range(4):
        grads = [_randn(p.shape, dtype, gen) for p in params]
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        opt.step()
        for param, grad, ref in zip(params, grads, refs, strict=True):
            ref.step(torch.view_as_real(grad).numpy())
            assert param.dtype == dtype
            assert _same(torch.view_as_real(param.detach()), torch.from_numpy(ref.var))
            for key in ("m", "v", "vhat"):
                state = opt.state[param][key]
                assert state.dtype == dtype  # complex, like torch.optim.Adam's
                assert _same(torch.view_as_real(state), torch.from_numpy(getattr(ref, key)))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", COMPLEX, ids=str)
def test_complex_gradient_centralization_takes_the_complex_mean(dtype, implementation):
    """With grad_centralization, a complex gradient loses its complex mean per row: the real
    and imaginary parts are averaged apart (pooled, the two would mix), and the rule reads the
    complex shape ((4, 16): centralized; (16, 2): its real view's shape[1] would be 16)."""
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(_randn(shape, dtype, gen)) for shape in [(4, 16), (16, 2)]]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = AMSGradV2(params, lr=LR, grad_centralization=True, implementation=implementation)
    plain = AMSGradV2(twins, lr=LR, implementation=implementation)
    for _ in range(3):
        grads = [_randn(p.shape, dtype, gen) + (3 + 1j) for p in params]  # a mean to remove
        for param, twin, grad in zip(params, twins, grads, strict=True):
            param.grad = grad
            if grad.shape[1] % 16 == 0:  # the expected gradient, centralized by hand
                mean = grad.to(torch.complex128).mean(dim=1, keepdim=True).to(dtype)
                grad = grad - mean
            twin.grad = grad
        opt.step()
        plain.step()
        for param, twin in zip(params, twins, strict=True):
            assert _same(torch.view_as_real(param.detach()), torch.view_as_real(twin.detach()))


def test_complex_state_dict_round_trip():
    gen = torch.Generator().manual_seed(8)
    params = [torch.nn.Parameter(_randn(shape, torch.complex64, gen)) for shape in SHAPES]
    opt = AMSGradV2(params)
    for _ in range(2):
        for param in params:
            param.grad = _randn(param.shape, torch.complex64, gen)
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = AMSGradV2(copies)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(2):
        for param, copied in zip(params, copies, strict=True):
            param.grad = _randn(param.shape, torch.complex64, gen)
            copied.grad = param.grad.clone()
        opt.step()
        resumed.step()
    for param, copied in zip(params, copies, strict=True):
        assert _same(param, copied)
        assert _same(opt.state[param]["vhat"], resumed.state[copied]["vhat"])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_conjugated_views(implementation):
    gen = torch.Generator().manual_seed(9)
    value, grad = _randn((4,), torch.complex64, gen), _randn((4,), torch.complex64, gen)
    # A conjugated gradient is read as its values (resolved): the same as a plain copy.
    results = []
    for given in (grad.conj(), grad.conj().resolve_conj()):
        param = torch.nn.Parameter(value.clone())
        param.grad = given
        AMSGradV2([param], implementation=implementation).step()
        results.append(param.detach().clone())
    assert given.is_conj() is False and _same(results[0], results[1])
    assert not _same(results[0], value)
    # A conjugated parameter cannot be written in place: refused, nothing written.
    param = torch.nn.Parameter(value.clone().conj())
    assert param.is_conj()
    param.grad = grad
    opt = AMSGradV2([param], implementation=implementation)
    with pytest.raises(ValueError, match=r"\['params'\]\[0\].*conjugated view"):
        opt.step()
    assert _same(param.detach().resolve_conj(), value.conj()) and not opt.state
    # A conjugated state tensor is refused too.
    param = torch.nn.Parameter(value.clone())
    param.grad = grad
    opt = AMSGradV2([param], implementation=implementation)
    opt.step()
    opt.state[param]["m"] = opt.state[param]["m"].conj()
    before = param.detach().clone()
    with pytest.raises(ValueError, match="'m' is a negated or conjugated view"):
        opt.step()
    assert _same(param, before)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_complex_dtype_and_gradient_errors():
    with pytest.raises(TypeError, match=r"complex64.*complex128.*got torch.complex32"):
        param = torch.nn.Parameter(torch.zeros(2, dtype=torch.complex32))
        param.grad = torch.zeros(2, dtype=torch.complex32)
        AMSGradV2([param]).step()
    param = torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    for grad, message in (
        (torch.zeros(2), r"gradient has dtype torch.float32, expected.*torch.complex64"),
        (torch.zeros(2, dtype=torch.complex128), r"dtype torch.complex128, expected"),
    ):
        _set_grad(param, grad)
        opt = AMSGradV2([param])
        with pytest.raises(TypeError, match=message):
            opt.step()
        assert not opt.state and not param.detach().any()


# --------------------------------------------------------------------------- the fast step


def _make(kind: str, gen):
    if kind == "complex":
        return [torch.nn.Parameter(_randn(s, torch.complex64, gen)) for s in SHAPES], {}
    if kind == "master":
        return [torch.nn.Parameter(_randn(s, torch.bfloat16, gen)) for s in SHAPES], {
            "master_weights": True
        }
    # A plain float32 group beside a bfloat16 one with master weights.
    plain = [torch.nn.Parameter(_randn(s, torch.float32, gen)) for s in SHAPES]
    half = [torch.nn.Parameter(_randn(s, torch.bfloat16, gen)) for s in SHAPES]
    return plain + half, {"groups": (plain, half)}


@pytest.mark.parametrize("kind", ["complex", "master", "mixed-groups"])
def test_these_parameters_take_the_full_path_and_agree_with_it(kind, fast_runs):
    gen = torch.Generator().manual_seed(10)
    params, extra = _make(kind, gen)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    optimizers = []
    for group in (params, copies):
        if "groups" in extra:
            count = len(extra["groups"][0])
            groups = [
                {"params": group[:count]},
                {"params": group[count:], "master_weights": True},
            ]
            optimizers.append(AMSGradV2(groups, lr=LR))
        else:
            optimizers.append(AMSGradV2(group, lr=LR, **extra))
    for _ in range(4):
        for param, copied in zip(params, copies, strict=True):
            param.grad = _randn(param.shape, param.dtype, gen)
            copied.grad = param.grad.clone()
        optimizers[0].step()
        optimizers[1]._fast_plans = {}
        optimizers[1].step()
        assert not optimizers[0]._fast_plans  # declined: the next step is a full one
        for param, copied in zip(params, copies, strict=True):
            assert _same(param, copied)
            for key, value in optimizers[0].state[param].items():
                other = optimizers[1].state[copied][key]
                assert _same(value, other) if isinstance(value, torch.Tensor) else value == other
    assert fast_runs[0] == 0
