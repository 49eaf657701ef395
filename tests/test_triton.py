"""The Triton kernel (amsgrad.triton), checked without a GPU.

* Triton's interpreter (``TRITON_INTERPRET=1``, set for each test here and read at each launch)
  runs the kernel on CPU tensors: it must equal the C kernel
  (:func:`amsgrad.apply_adam_with_amsgrad_v2_many`) bit for bit on MindSpore's golden cases that
  take scalar hyper-parameters, on random data with special values, for float16/32/64 and many
  tensors of mixed sizes (empty ones, sizes around the block and chunk boundaries), through
  ``apply_many``, ``apply_many_capturable`` and ``AMSGradV2(implementation="triton")``.
* The code generation: the PTX that Triton compiles for compute capabilities 80 and 90 (no GPU
  needed) holds no FMA, no approximate instruction, no flush-to-zero, and does hold the correctly
  rounded division and square root.

Skipped when Triton is not installed (``pip install amsgrad[gpu]``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("triton")
torch = pytest.importorskip("torch")

import amsgrad  # noqa: E402
from amsgrad.torch import AMSGradV2  # noqa: E402
from amsgrad.triton import (  # noqa: E402
    apply_many,
    apply_many_capturable,
    compile_ptx,
    interpreting,
)
from helpers import bits_equal  # noqa: E402
from test_golden import ARRAYS, CASES, NAMES, build  # noqa: E402

DTYPES = (torch.float16, torch.float32, torch.float64)
#: Small blocks and chunks so that small tensors cross both boundaries (the interpreter is slow).
GRID = {"block": 16, "chunk_blocks": 2}
SIZES = (0, 1, 15, 16, 17, 32, 33, 64, 100, 0, 3)


@pytest.fixture(autouse=True)
def interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton's interpreter for this module's tests only (the variable is read at each launch)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def numpy_of(tensors):
    return [tensor.numpy() for tensor in tensors]


def clone_all(lists):
    return [[tensor.clone() for tensor in tensors] for tensors in lists]


def assert_lists_equal(actual, expected, what):
    for name, got, want in zip(("param", "m", "v", "vhat"), actual, expected, strict=False):
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert bits_equal(np.asarray(a), np.asarray(b)), (
                f"{what}: {name}[{index}] differs\n{np.asarray(a)!r}\n{np.asarray(b)!r}"
            )


def specials(dtype: torch.dtype, size: int, rng: np.random.Generator, positive: bool) -> np.ndarray:
    """Random values over many magnitudes (subnormals included), with zeros of both signs,
    infinities and NaN sprinkled in."""
    info = np.finfo(torch.empty((), dtype=dtype).numpy().dtype)
    exponent = rng.uniform(np.log2(float(info.smallest_subnormal)), np.log2(float(info.max)), size)
    values = np.exp2(exponent) * rng.choice([-1.0, 1.0], size)
    values = np.where(rng.random(size) < 0.5, rng.standard_normal(size), values)
    pick = rng.random(size)
    for limit, value in (
        (0.03, 0.0),
        (0.05, -0.0),
        (0.07, np.inf),
        (0.09, -np.inf),
        (0.11, np.nan),
    ):
        values = np.where((pick >= limit - 0.02) & (pick < limit), value, values)
    if positive:
        values = np.abs(values)
    with np.errstate(over="ignore"):
        return values.astype(info.dtype)


def random_lists(dtype: torch.dtype, seed: int, sizes=SIZES):
    rng = np.random.default_rng(seed)
    lists = []
    for role in range(5):
        positive = role in (2, 3)  # v and vhat as training leaves them (NaN and inf aside)
        lists.append([torch.from_numpy(specials(dtype, n, rng, positive)) for n in sizes])
    return lists


def c_kernel(lists, hyper):
    """The C kernel's results on copies of ``lists``."""
    arrays = [numpy_of(clone_all([tensors])[0]) for tensors in lists]
    amsgrad.apply_adam_with_amsgrad_v2_many(*arrays[:4], *hyper, arrays[4])
    return arrays[:4]


HYPERS = [
    (0.9, 0.999, 0.001, 0.9, 0.999, 1e-8),
    (0.9**7, 0.999**7, 0.01, 0.9, 0.999, 1e-3),
    (0.5, 0.25, 3.0, 0.125, 0.75, 0.0),  # eps = 0: 0/0 where vhat is 0
    (1.0, 1.0, 0.01, 0.9, 0.999, 1e-8),  # 1 - beta1_power = 0: lr_t is NaN
    (0.9, 0.999, 0.0, 0.0, 0.0, 1e-4),
    (1e-30, 1e-30, 1e5, 0.99, 0.9999, 1e-6),
]


# --------------------------------------------------------------------------- the interpreter


def test_the_interpreter_is_on():
    assert interpreting()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("hyper", HYPERS, ids=range(len(HYPERS)))
def test_random_lists_equal_the_c_kernel(dtype, hyper):
    lists = random_lists(dtype, seed=HYPERS.index(hyper))
    expected = c_kernel(lists, hyper)
    apply_many(*lists, *hyper, **GRID)
    assert_lists_equal(lists[:4], expected, f"{dtype}, hyper {hyper}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_default_grid_and_tensors_larger_than_a_chunk(dtype):
    sizes = (3000, 0, 1025, 7)
    lists = random_lists(dtype, seed=11, sizes=sizes)
    expected = c_kernel(lists, HYPERS[1])
    apply_many(*lists, *HYPERS[1], block=256, chunk_blocks=4)
    assert_lists_equal(lists[:4], expected, str(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_repeated_steps_follow_the_c_kernel(dtype):
    """Several steps on the state each one leaves (finite data: a training run)."""
    rng = np.random.default_rng(3)
    sizes = (5, 40, 17)
    numpy_dtype = torch.empty((), dtype=dtype).numpy().dtype
    ours = [[torch.from_numpy(rng.standard_normal(n).astype(numpy_dtype)) for n in sizes]]
    ours += [[torch.zeros(n, dtype=dtype) for n in sizes] for _ in range(3)]
    theirs = [numpy_of(clone_all([tensors])[0]) for tensors in ours]
    power1 = power2 = np.float32(1)
    for _ in range(4):
        power1, power2 = (
            np.float32(power1 * np.float32(0.9)),
            np.float32(power2 * np.float32(0.999)),
        )
        grads = [torch.from_numpy(rng.standard_normal(n).astype(numpy_dtype)) for n in sizes]
        hyper = (float(power1), float(power2), 0.01, 0.9, 0.999, 1e-4)
        apply_many(*ours, grads, *hyper, **GRID)
        amsgrad.apply_adam_with_amsgrad_v2_many(*theirs, *hyper, numpy_of(grads))
    assert_lists_equal(ours, theirs, str(dtype))


def golden_cases():
    """MindSpore's golden cases that apply_many takes: computed ones, float state, a float
    gradient of T or below, scalar hyper-parameters."""
    chosen = []
    for case in CASES:
        if case["deliberate"] or case["expect"]["kind"] != "ok":
            continue
        args = case["args"]
        if any(args[name]["kind"] == "array" for name in NAMES[4:10]):
            continue
        var, grad = ARRAYS[args["var"]["key"]], ARRAYS[args["grad"]["key"]]
        if var.dtype.kind != "f" or grad.dtype.kind != "f" or grad.dtype > var.dtype:
            continue
        if any(ARRAYS[args[name]["key"]].dtype != var.dtype for name in NAMES[:4]):
            continue
        chosen.append(case)
    return chosen


GOLDEN = golden_cases()


def test_enough_golden_cases_apply():
    assert len(GOLDEN) > 150
    assert {ARRAYS[case["args"]["var"]["key"]].dtype.name for case in GOLDEN} == {
        "float16",
        "float32",
        "float64",
    }


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_golden_cases_equal_mindspore_and_the_c_kernel(dtype):
    cases = [c for c in GOLDEN if ARRAYS[c["args"]["var"]["key"]].dtype.name == dtype]
    assert cases
    for case in cases:
        values, _ = build(case)
        state = [torch.from_numpy(np.ascontiguousarray(a)) for a in values[:4]]
        grad = torch.from_numpy(np.ascontiguousarray(values[10]).astype(values[0].dtype))
        expected = [np.array(a, copy=True) for a in values[:4]]
        amsgrad.apply_adam_with_amsgrad_v2(*expected, *values[4:10], values[10])
        apply_many(*[[tensor] for tensor in state], [grad], *values[4:10], **GRID)
        for name, tensor, key, c_result in zip(
            NAMES[:4], state, case["expect"]["out"], expected, strict=True
        ):
            assert bits_equal(tensor.numpy(), ARRAYS[key]), f"{case['id']}: {name} vs MindSpore"
            assert bits_equal(tensor.numpy(), c_result), f"{case['id']}: {name} vs the C kernel"


# --------------------------------------------------------------------------- capturable


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_capturable_equals_apply_many(dtype):
    """lr and the beta powers as float32 tensors (one pair per tensor, all different): the
    kernel computes lr_t itself, and each tensor's result is the C kernel's with its values."""
    lists = random_lists(dtype, seed=5, sizes=(17, 0, 40, 3))
    rng = np.random.default_rng(6)
    firsts = [torch.tensor(np.float32(x)) for x in rng.uniform(0, 1, 4)]
    seconds = [torch.tensor(np.float32(x)) for x in rng.uniform(0, 1, 4)]
    lr = torch.tensor(np.float32(0.003))
    expected = [[] for _ in range(4)]
    for index in range(4):
        single = [[tensors[index]] for tensors in lists]
        hyper = (firsts[index].item(), seconds[index].item(), lr.item(), 0.9, 0.999, 1e-6)
        for role, result in enumerate(c_kernel(single, hyper)):
            expected[role].extend(result)
    apply_many_capturable(*lists, firsts, seconds, lr, 0.9, 0.999, 1e-6, **GRID)
    assert_lists_equal(lists[:4], expected, str(dtype))


def test_capturable_shares_one_pair_of_powers_and_reads_them_at_each_call():
    dtype = torch.float32
    lists = random_lists(dtype, seed=8, sizes=(20, 9))
    power1, power2, lr = torch.tensor(0.5), torch.tensor(0.25), torch.tensor(0.1)
    expected = lists
    for step in range(2):
        expected = c_kernel(
            [*expected, lists[4]], (power1.item(), power2.item(), 0.1, 0.5, 0.5, 0.0)
        )
        apply_many_capturable(*lists, power1, power2, lr, 0.5, 0.5, 0.0, **GRID)
        assert_lists_equal(lists[:4], expected, f"step {step}")
        expected = [[torch.from_numpy(a) for a in arrays] for arrays in expected]
        power1.mul_(0.5)  # as a captured graph's caller updates them in place
        power2.mul_(0.5)


# --------------------------------------------------------------------------- errors


def test_errors_name_the_argument_and_write_nothing():
    lists = random_lists(torch.float32, seed=9, sizes=(8, 4))
    before = clone_all(lists)
    hyper = HYPERS[0]
    bad = clone_all(lists)
    bad[1][1] = bad[1][1].double()
    with pytest.raises(TypeError, match=r"ms\[1\]: expected dtype torch.float32"):
        apply_many(*bad, *hyper)
    bad = clone_all(lists)
    bad[4][0] = torch.zeros(9)
    with pytest.raises(ValueError, match=r"grads\[0\]: expected the shape of params\[0\]"):
        apply_many(*bad, *hyper)
    bad = clone_all(lists)
    bad[2][0] = torch.zeros(16)[::2]
    with pytest.raises(ValueError, match=r"vs\[0\]: expected a contiguous tensor"):
        apply_many(*bad, *hyper)
    with pytest.raises(ValueError, match=r"vhats: expected 2 tensors"):
        apply_many(*lists[:3], lists[3][:1], lists[4], *hyper)
    with pytest.raises(TypeError, match="lr"):
        apply_many(*lists, 0.9, 0.999, "0.1", 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="block"):
        apply_many(*lists, *hyper, block=24)
    shared = clone_all(lists)
    shared[3][1] = shared[0][1]  # vhats[1] is params[1]
    with pytest.raises(ValueError, match=r"share memory"):
        apply_many(*shared, *hyper)
    with pytest.raises(TypeError, match=r"beta1_power: expected a one-element float32 tensor"):
        apply_many_capturable(
            *lists,
            torch.tensor(0.5, dtype=torch.float64),
            torch.tensor(0.5),
            torch.tensor(0.1),
            0.9,
            0.999,
            1e-8,
        )
    with pytest.raises(TypeError, match=r"expected a number, got a tensor"):
        apply_many(*lists, torch.tensor(0.5), 0.5, 0.1, 0.9, 0.999, 1e-8)
    assert_lists_equal(lists[:4], before[:4], "after the errors")


def test_gradients_may_share_memory():
    lists = random_lists(torch.float32, seed=10, sizes=(8, 8))
    lists[4][1] = lists[4][0]
    expected = c_kernel(lists, HYPERS[0])
    apply_many(*lists, *HYPERS[0], **GRID)
    assert_lists_equal(lists[:4], expected, "shared gradients")


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not interpreting()
    lists = random_lists(torch.float32, seed=12, sizes=(4,))
    with pytest.raises(ValueError, match=r"params\[0\]: expected CUDA tensors.*TRITON_INTERPRET"):
        apply_many(*lists, *HYPERS[0])
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    opt = AMSGradV2([param], implementation="triton")
    with pytest.raises(TypeError, match="needs CUDA tensors"):
        opt.step()
    assert torch.equal(param.detach(), torch.ones(3))


# --------------------------------------------------------------------------- the optimizer


def make_model(seed: int):
    torch.manual_seed(seed)
    params = [
        torch.nn.Parameter(torch.randn(4, 5)),
        torch.nn.Parameter(torch.randn(37)),
        torch.nn.Parameter(torch.randn(3, 3, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(6).half()),
        torch.nn.Parameter(torch.randn(0)),
        torch.nn.Parameter(torch.randn(5, 4).t()),  # not contiguous
    ]
    return params


def train(implementation: str, steps: int = 3, **options):
    params = make_model(0)
    groups = [
        {"params": params[:3]},
        {"params": params[3:], "lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3},
    ]
    opt = AMSGradV2(groups, lr=0.01, implementation=implementation, **options)
    torch.manual_seed(1)
    for step in range(steps):
        for index, param in enumerate(params):
            if step == 1 and index == 1:
                param.grad = None  # skipped: its beta powers fall behind the others'
                continue
            param.grad = torch.randn(param.shape).to(param.dtype)
        opt.step()
    return params, opt


def assert_optimizers_equal(ours, theirs):
    (params_a, opt_a), (params_b, opt_b) = ours, theirs
    for index, (a, b) in enumerate(zip(params_a, params_b, strict=True)):
        assert bits_equal(a.detach().numpy(), b.detach().numpy()), f"param {index}"
        state_a, state_b = opt_a.state[a], opt_b.state[b]
        for name in ("m", "v", "vhat"):
            assert bits_equal(state_a[name].numpy(), state_b[name].numpy()), f"{name} {index}"
        for name in ("beta1_power", "beta2_power"):
            power = state_a[name]
            power = power.item() if isinstance(power, torch.Tensor) else power
            assert power == state_b[name], f"{name} {index}"
        assert state_a["step"] == state_b["step"]


def test_optimizer_triton_equals_kernel():
    assert_optimizers_equal(train("triton"), train("kernel"))


def test_optimizer_triton_with_mindspore_gradient_options():
    options = {"weight_decay": 0.01, "loss_scale": 4.0, "maximize": True}
    assert_optimizers_equal(train("triton", **options), train("kernel", **options))


def test_optimizer_capturable_equals_kernel():
    ours = train("triton", capturable=True)
    for state in ours[1].state.values():
        assert isinstance(state["beta1_power"], torch.Tensor)
        assert state["beta1_power"].dtype == torch.float32
    assert_optimizers_equal(ours, train("kernel"))
    saved = ours[1].state_dict()
    for state in saved["state"].values():
        assert type(state["beta1_power"]) is float and type(state["beta2_power"]) is float
    # the optimizer's own state still holds its device tensors
    assert all(isinstance(s["beta2_power"], torch.Tensor) for s in ours[1].state.values())


def test_optimizer_capturable_with_a_tensor_lr():
    params = [torch.nn.Parameter(torch.randn(10)), torch.nn.Parameter(torch.randn(3))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    lr = torch.tensor(0.02)
    ours = AMSGradV2(params, lr=lr, implementation="triton", capturable=True)
    theirs = AMSGradV2(twins, lr=0.02, implementation="kernel")
    for step in range(3):
        for a, b in zip(params, twins, strict=True):
            a.grad = torch.randn(a.shape)
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()
        lr.mul_(0.5)  # read by the kernel at each step
        theirs.param_groups[0]["lr"] = lr.item()
        for a, b in zip(params, twins, strict=True):
            assert bits_equal(a.detach().numpy(), b.detach().numpy()), f"step {step}"


def test_capturable_needs_the_triton_path():
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    opt = AMSGradV2([param], implementation="kernel", capturable=True)
    with pytest.raises(ValueError, match=r"capturable=True needs the Triton kernel"):
        opt.step()
    assert torch.equal(param.detach(), torch.ones(3))
    with pytest.raises(ValueError, match="capturable"):
        AMSGradV2([param], capturable="yes")


def test_optimizer_triton_refuses_bfloat16():
    param = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    param.grad = torch.ones(3, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="bfloat16"):  # refused when the group is added
        AMSGradV2([param], implementation="triton", betas=(0.5, 0.5))


# --------------------------------------------------------------------------- the PTX

FLOAT_ARITHMETIC = re.compile(r"\b(add|sub|mul)((?:\.\w+)*)\.(f16|f16x2|bf16|f32|f64)\b")


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("capturable", [False, True], ids=["numbers", "capturable"])
def test_ptx_is_exact(arch, dtype, capturable):
    ptx = compile_ptx(dtype, arch, capturable=capturable)
    assert f".target sm_{arch}" in ptx
    assert not re.search(r"\bfma\.", ptx), "a fused multiply-add"
    assert not re.search(r"\bmad\.[\w.]*f(16|32|64)", ptx), "a floating-point multiply-add"
    assert ".approx" not in ptx, "an approximate instruction"
    assert "div.full" not in ptx, "the approximate float32 division"
    assert ".ftz" not in ptx, "flush-to-zero"
    assert re.search(r"\bdiv\.rn\.f(32|64)\b", ptx), "no correctly rounded division"
    assert re.search(r"\bsqrt\.rn\.f(32|64)\b", ptx), "no correctly rounded square root"
    arithmetic = FLOAT_ARITHMETIC.findall(ptx)
    assert arithmetic
    unrounded = [match for match in arithmetic if ".rn" not in match[1]]
    assert not unrounded, f"add/sub/mul without .rn (ptxas may contract them): {unrounded}"


def test_ptx_check_sees_fusion():
    """With FMA contraction allowed, the checks above would fail: they can see it."""
    ptx = compile_ptx(torch.float32, 90, options={"enable_fp_fusion": True})
    assert re.search(r"\bfma\.", ptx) or any(
        ".rn" not in match[1] for match in FLOAT_ARITHMETIC.findall(ptx)
    )


def test_compile_ptx_arguments():
    assert compile_ptx("float64", 80) == compile_ptx(torch.float64, 80)
    with pytest.raises(TypeError, match="dtype"):
        compile_ptx(torch.bfloat16)
    with pytest.raises(ValueError, match="arch"):
        compile_ptx(torch.float32, arch="sm_90")


# --------------------------------------------------------------------------- on a GPU

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_on_the_gpu_equals_the_c_kernel(dtype, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    lists = random_lists(dtype, seed=13, sizes=(0, 1, 1000, 5000, 100_000))
    expected = c_kernel(lists, HYPERS[1])
    on_gpu = [[tensor.cuda() for tensor in tensors] for tensors in lists]
    apply_many(*on_gpu, *HYPERS[1])
    assert_lists_equal([[t.cpu() for t in ts] for ts in on_gpu[:4]], expected, str(dtype))


@cuda
def test_auto_picks_triton_on_the_gpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    param = torch.nn.Parameter(torch.randn(100, device="cuda"))
    twin = torch.nn.Parameter(param.detach().cpu().clone())
    param.grad = torch.randn(100, device="cuda")
    twin.grad = param.grad.cpu()
    AMSGradV2([param]).step()
    AMSGradV2([twin], implementation="kernel").step()
    assert bits_equal(param.detach().cpu().numpy(), twin.detach().numpy())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.complex64])
def test_master_weights_and_complex_are_refused_on_the_triton_path(dtype):
    param = torch.nn.Parameter(torch.ones(4, dtype=dtype))
    opt = AMSGradV2([param], master_weights=True, implementation="triton")
    param.grad = torch.ones(4, dtype=dtype)
    before = param.detach().clone()
    with pytest.raises(TypeError, match="Triton path does not take master_weights or complex"):
        opt.step()
    assert torch.equal(param.detach(), before)
    assert not opt.state
