"""One contract for every backend: the same mistake gets the same exception and message.

* NumPy (``amsgrad.apply_adam_with_amsgrad_v2``) and JAX (``amsgrad.jax``, with JAX arrays,
  NumPy arrays and under ``jax.jit``) raise the same type with the same message for each bad
  argument, since both decide through ``amsgrad.core.contract``.
* PyTorch's ``AMSGradV2`` and Optax's ``amsgrad_v2`` raise the same message for the same bad
  lr, beta or eps. The rule: ``"{name}: expected ..., got {value!r}"``, where only ``{name}`` is
  the API's own spelling of the argument (torch ``lr``, ``betas[0] (beta1)``, ``betas[1]
  (beta2)``, ``eps``; optax ``learning_rate``, ``b1``, ``b2``, ``eps``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import amsgrad
from amsgrad.core import contract, dtypes
from helpers import DOC_HYPER, assert_bits_equal, doc_state

NAMES = contract.ARG_NAMES
SRC = Path(__file__).resolve().parent.parent / "src" / "amsgrad"


def _args(dtype=np.float32):
    var, m, v, vhat, grad = doc_state(dtype)
    return dict(zip(NAMES, (var, m, v, vhat, *DOC_HYPER, grad), strict=True))


def _bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.ones((2, 2), ml_dtypes.bfloat16)


# (case id, {argument: bad value}, whether every bad value is an array (so jit can trace it))
CASES = [
    ("var-int32", {"var": np.ones((2, 2), np.int32)}, True),
    ("var-list", {"var": [[0.2, 0.2], [0.2, 0.2]]}, False),
    ("var-none", {"var": None}, False),
    ("m-float64", {"m": np.ones((2, 2), np.float64)}, True),
    ("vhat-float16", {"vhat": np.ones((2, 2), np.float16)}, True),
    ("v-int8", {"v": np.ones((2, 2), np.int8)}, True),
    ("m-shape", {"m": np.ones((2, 3), np.float32)}, True),
    ("v-shape", {"v": np.ones((4,), np.float32)}, True),
    ("vhat-shape", {"vhat": np.ones((2, 2, 1), np.float32)}, True),
    ("lr-float64-0d", {"lr": np.array(0.01, np.float64)}, True),
    ("epsilon-float64-1", {"epsilon": np.array([1e-8], np.float64)}, True),
    ("beta1-prefix", {"beta1": np.array([0.9, 0.8, 0.7], np.float32)}, True),
    ("lr-too-deep", {"lr": np.ones((2, 2, 2), np.float32)}, True),
    ("epsilon-not-prefix", {"epsilon": np.ones((3,), np.float32)}, True),
    ("lr-complex-array", {"lr": np.array(0.1, np.complex64)}, True),
    ("lr-str", {"lr": "0.01"}, False),
    ("lr-none", {"lr": None}, False),
    ("beta1-list", {"beta1": [0.9]}, False),
    ("beta2-tuple", {"beta2": (0.9,)}, False),
    ("epsilon-complex", {"epsilon": 1e-8 + 0j}, False),
    ("beta1_power-np-complex", {"beta1_power": np.complex64(1)}, False),
    ("beta2_power-np-int32", {"beta2_power": np.int32(1)}, False),
    ("lr-np-longdouble", {"lr": np.longdouble(0.01)}, False),
    ("lr-int-above-int64", {"lr": 2**63}, False),
    ("beta1-int-below-int64", {"beta1": -(2**63) - 1}, False),
    ("grad-shape", {"grad": np.ones((1, 2), np.float32)}, True),
    ("grad-float64", {"grad": np.ones((2, 2), np.float64)}, True),
    ("grad-complex", {"grad": np.ones((2, 2), np.complex64)}, True),
    ("grad-float-scalar", {"grad": 0.5}, False),
    ("grad-np-scalar", {"grad": np.float32(0.5)}, False),
    ("grad-list", {"grad": [[0.1, 0.2], [0.3, 0.4]]}, False),
    ("grad-none", {"grad": None}, False),
    # Two mistakes: the first argument in order is reported, by every backend.
    ("m-and-lr", {"m": np.ones((2, 2), np.float64), "lr": "x"}, False),
    ("lr-and-grad", {"lr": np.ones(3, np.float32), "grad": np.ones(3, np.float32)}, True),
]


def _numpy_error(args):
    state = [np.array(args[name], copy=True) for name in contract.STATE_NAMES]
    with pytest.raises(Exception) as info:
        amsgrad.apply_adam_with_amsgrad_v2(*(args[name] for name in NAMES))
    for name, before in zip(contract.STATE_NAMES, state, strict=True):
        assert np.array_equal(args[name], before), f"{name} written on error"
    return info.value


def _to_jax(value):
    jnp = pytest.importorskip("jax.numpy")
    if isinstance(value, np.ndarray) and value.dtype.kind != "O":
        return jnp.asarray(value)
    return value


# JAX arrays, NumPy arrays, and jit (tracers: only where every bad value is an array).
JAX_CALLS = [
    pytest.param(how, bad, id=f"{how}-{case}")
    for how in ("jax-arrays", "numpy-arrays", "jit")
    for case, bad, arrays_only in CASES
    if how != "jit" or arrays_only
]


@pytest.mark.parametrize(("how", "bad"), JAX_CALLS)
def test_numpy_and_jax_raise_the_same_error(how, bad):
    jax = pytest.importorskip("jax")
    from amsgrad.jax import apply_adam_with_amsgrad_v2 as jax_apply

    args = _args()
    args.update(bad)
    expected = _numpy_error(args)
    assert str(expected).startswith(contract.label(next(iter(bad)))), str(expected)
    with jax.enable_x64(True):
        values = [args[name] if how == "numpy-arrays" else _to_jax(args[name]) for name in NAMES]
        function = jax.jit(jax_apply) if how == "jit" else jax_apply
        with pytest.raises(Exception) as info:
            function(*values)
    assert type(info.value) is type(expected), (info.value, expected)
    assert str(info.value) == str(expected)


def test_bfloat16_state_is_the_same_error():
    pytest.importorskip("jax")
    from amsgrad.jax import apply_adam_with_amsgrad_v2 as jax_apply

    args = _args()
    args["var"] = _bfloat16()
    expected = _numpy_error(args)
    assert "bfloat16" in str(expected)
    with pytest.raises(TypeError) as info:
        jax_apply(*(_to_jax(args[name]) for name in NAMES))
    assert str(info.value) == str(expected)


def test_a_weak_python_float_under_jit_is_not_a_higher_precision_tensor():
    """A Python float traced by jit (weakly typed, float64 with x64) keeps the Python rule."""
    jax = pytest.importorskip("jax")
    from amsgrad.jax import apply_adam_with_amsgrad_v2 as jax_apply

    args = _args(np.float16)
    want = [np.array(args[name], copy=True) for name in contract.STATE_NAMES]
    amsgrad.apply_adam_with_amsgrad_v2(*want, *DOC_HYPER, args["grad"])
    with jax.enable_x64(True):
        got = jax.jit(jax_apply)(*(args[name] for name in NAMES))
    for g, w in zip(got, want, strict=True):
        assert_bits_equal(np.asarray(g), w)


# --------------------------------------------------------------------------- metadata functions


def test_tensor_dtype_to_returns_the_casts():
    f16, f32, f64 = dtypes.F16, dtypes.F32, dtypes.F64
    assert contract.tensor_dtype_to("lr", f32, f32) == ()
    assert contract.tensor_dtype_to("lr", f16, f32) == (f32,)
    assert contract.tensor_dtype_to("lr", np.dtype(np.int64), f16) == (f16,)
    assert contract.tensor_dtype_to("lr", np.dtype(np.bool_), f64) == (f64,)
    assert contract.tensor_dtype_to("lr", f64, f16, weak=True) == (f32, f16)
    with pytest.raises(amsgrad.DtypeConversionError, match=r"^lr \(the 7th input\): has dtype"):
        contract.tensor_dtype_to("lr", f64, f32)
    with pytest.raises(TypeError, match=r"^grad \(the 11th input\): expected a tensor"):
        contract.tensor_dtype_to("grad", np.dtype(np.complex128), f64)


def test_hyper_shape_scalar_or_prefix():
    assert contract.hyper_shape("lr", (), (2, 3)) == 0
    assert contract.hyper_shape("lr", (1, 1), (2, 3)) == 0
    assert contract.hyper_shape("lr", (2,), (2, 3)) == 1
    assert contract.hyper_shape("lr", (2, 3), (2, 3)) == 2
    with pytest.raises(ValueError, match="leading prefix"):
        contract.hyper_shape("lr", (3,), (2, 3))


def test_the_dtype_table_is_the_one_everyone_uses():
    assert dtypes.STATE_DTYPES == (dtypes.F16, dtypes.F32, dtypes.F64)
    assert [dtypes.float_rank(d) for d in dtypes.STATE_DTYPES] == [1, 2, 3]
    assert dtypes.float_rank(np.dtype(np.int64)) == 0
    assert not dtypes.is_state_dtype(np.dtype(np.int32))
    assert contract.HYPER_NAMES == contract.Hyper._fields == NAMES[4:10]


def test_adapters_refuse_other_dtypes_with_the_core_text():
    torch = pytest.importorskip("torch")
    pytest.importorskip("optax")
    from amsgrad.optax import amsgrad_v2
    from amsgrad.torch import AMSGradV2

    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float32))
    opt = AMSGradV2([p], implementation="kernel")
    p.data = p.data.to(torch.float8_e4m3fn)
    p.grad = torch.zeros(2, dtype=torch.float8_e4m3fn)
    with pytest.raises(TypeError, match=dtypes.STATE_DTYPES_TEXT):
        opt.step()
    with pytest.raises(TypeError, match=dtypes.STATE_DTYPES_TEXT):
        amsgrad_v2(1e-3).init({"w": np.zeros(2, np.int32)})


# --------------------------------------------------------------------------- torch and optax

TORCH_NAMES = dict(zip(("lr", "beta1", "beta2", "eps"), contract.OPTIMIZER_NAMES, strict=True))
TORCH_NAMES.update(beta1="betas[0] (beta1)", beta2="betas[1] (beta2)")
OPTAX_NAMES = {"lr": "learning_rate", "beta1": "b1", "beta2": "b2", "eps": "eps"}
GOOD = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
BAD = [
    ("lr", -1e-3),
    ("lr", math.nan),
    ("lr", "0.1"),
    ("lr", None),
    ("lr", True),
    ("lr", np.int32(1)),
    ("beta1", 1.0),
    ("beta1", -0.5),
    ("beta1", math.nan),
    ("beta1", "0.9"),
    ("beta2", 1.5),
    ("beta2", np.float64(1.0)),
    ("beta2", np.uint32(0)),
    ("eps", -1e-8),
    ("eps", math.inf * 0),
    ("eps", [1e-8]),
]


def _torch_error(values, where_group=False):
    torch = pytest.importorskip("torch")
    from amsgrad.torch import AMSGradV2

    kwargs = {"lr": values["lr"], "betas": (values["beta1"], values["beta2"]), "eps": values["eps"]}
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(Exception) as info:
        if where_group:
            AMSGradV2([{"params": [p]}, {"params": [q], **kwargs}])
        else:
            AMSGradV2([p], **kwargs)
    return info.value


def _optax_error(values):
    pytest.importorskip("optax")
    from amsgrad.optax import amsgrad_v2

    with pytest.raises(Exception) as info:
        amsgrad_v2(values["lr"], b1=values["beta1"], b2=values["beta2"], eps=values["eps"])
    return info.value


@pytest.mark.parametrize(("argument", "value"), BAD, ids=[f"{a}={v!r}" for a, v in BAD])
def test_torch_and_optax_give_the_same_message(argument, value):
    values = dict(GOOD, **{argument: value})
    torch_error, optax_error = _torch_error(values), _optax_error(values)
    assert type(torch_error) is type(optax_error)
    torch_text, optax_text = str(torch_error), str(optax_error)
    torch_name, optax_name = TORCH_NAMES[argument], OPTAX_NAMES[argument]
    assert torch_text.startswith(f"{torch_name}: "), torch_text
    assert optax_text.startswith(f"{optax_name}: "), optax_text
    assert torch_text[len(torch_name) :] == optax_text[len(optax_name) :]
    if isinstance(torch_error, ValueError):
        assert torch_text.endswith(f", got {value!r}"), torch_text


@pytest.mark.parametrize(("argument", "value"), BAD[:8], ids=[f"{a}={v!r}" for a, v in BAD[:8]])
def test_torch_group_prefix_is_the_only_addition(argument, value):
    values = dict(GOOD, **{argument: value})
    plain, grouped = str(_torch_error(values)), str(_torch_error(values, where_group=True))
    assert grouped == f"param_groups[1]: {plain}"


def test_torch_paths_convert_numpy_float_hyper_parameters_alike():
    """The kernel and the torch-operations path both use the contract's scalar rule."""
    torch = pytest.importorskip("torch")
    from amsgrad.torch import AMSGradV2

    results = []
    for implementation in ("kernel", "torch"):
        gen = torch.Generator().manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, dtype=torch.float64, generator=gen))
        opt = AMSGradV2(
            [p], lr=np.float64(0.1234567891), eps=np.float64(1e-7), implementation=implementation
        )
        for _ in range(3):
            p.grad = torch.randn(64, dtype=torch.float64, generator=gen)
            opt.step()
        results.append(p.detach().numpy().copy())
    assert_bits_equal(results[0], results[1])
