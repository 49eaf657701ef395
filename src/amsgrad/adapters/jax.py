"""ApplyAdamWithAmsgradV2 as a pure JAX function (works under ``jax.jit``, ``jax.vmap``, sharding).

``import amsgrad.jax`` imports JAX; ``import amsgrad`` does not. Inside this module ``jax`` is
the absolute import of the JAX package.

:func:`apply_adam_with_amsgrad_v2` takes JAX (or NumPy) arrays and returns the four new arrays
``(var, m, v, vhat)``; it never writes its inputs. The arithmetic is the SPEC's, operation by
operation, in var's dtype T:

    lr_t = (lr * sqrt(1 - beta2_power)) / (1 - beta1_power)
    m    = m + (grad - m) * (1 - beta1)
    v    = v + (grad * grad - v) * (1 - beta2)
    vhat = v if vhat < v else vhat
    var  = var - (lr_t * m) / (sqrt(vhat) + epsilon)

Exactness. XLA's CPU (and GPU) code generator contracts a multiplication that feeds an addition
into one fused multiply-add (FMA), which skips the rounding of the product: with plain ``jnp``
operations about 30 % of the float32 and float64 ``m`` values differ by one ULP from MindSpore's
kernel. Each product that feeds an addition or subtraction therefore goes through
:func:`_rounded`, a select (``where(p != p, p + p, p)``) that is the identity on every value,
NaN included, but that stands between the multiplication and the addition, so that no FMA can be
formed. Every input goes through it too: inside a larger jitted program an input may itself be
a product (``beta1_power * beta1`` in the Optax state) that XLA would fuse into ``1 - beta1_power``.
With it, the results equal the NumPy path (:func:`amsgrad.apply_adam_with_amsgrad_v2`) bit for
bit on XLA:CPU for float16, float32 and float64 (float64 needs ``jax_enable_x64``); the test suite
holds this. float16 is computed as XLA computes it: each operation rounded to half, which is the
SPEC's rule. No XLA flag is needed or set.

Subnormals: XLA:CPU runs with flush-to-zero and denormals-are-zero (hard-wired in its runtime).
Where an input, an intermediate or a result of float32/float64 arithmetic is subnormal, XLA uses
zero and the result differs from the NumPy path (float16 is computed in float32, where its
subnormals are normal, and stays exact). ``docs/frameworks.md`` gives the measured figures.

Scalars follow the SPEC: Python floats, NumPy floating scalars and weakly-typed JAX scalars (a
Python float traced by ``jax.jit``) are rounded to float32, then to T; Python ints and bools
convert exactly; a JAX or NumPy array of higher float precision than T is a
:class:`amsgrad.DtypeConversionError`; lower-precision, integer and bool arrays are converted to
T. A hyper-parameter may be a scalar, a single-element array, or an array whose shape is a
leading prefix of var's shape (one value per row), as in the NumPy API. bfloat16 is refused.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from amsgrad.core.contract import (
    HYPER_NAMES,
    DtypeConversionError,
    _describe,
    _label,
    scalar_to_dtype,
)

__all__ = ["apply_adam_with_amsgrad_v2"]

_STATE_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_FLOAT_RANK = {np.dtype(np.float16): 1, np.dtype(np.float32): 2, np.dtype(np.float64): 3}
_STATE_DTYPE_TEXT = "float16, float32 or float64"


# --------------------------------------------------------------------------- arithmetic


def _rounded(product: jax.Array) -> jax.Array:
    """The product itself, rounded to its dtype, kept out of any fused multiply-add.

    ``p != p`` is true only for NaN, and ``p + p`` is then the same NaN, so the select is the
    identity on every value; but a select between a multiplication and an addition is not a
    pattern that XLA or LLVM contract into an FMA, so the product is rounded as the SPEC says.
    (``jax.lax.reduce_precision`` and ``optimization_barrier`` do not do this: XLA removes them.)
    """
    return jnp.where(product != product, product + product, product)


def _sqrt64(x: jax.Array) -> jax.Array:
    """The square root computed in float64 and rounded to x's dtype (SPEC ``sqrt64``).

    For float16 and float32 the correctly rounded square root in float32 (float16 first widened)
    rounded to T is the same value (no double-rounding error: 24 >= 2 * 11 + 2), so float64 is
    only needed, and only used, for float64 inputs.
    """
    if x.dtype == jnp.float16:
        return jnp.sqrt(x.astype(jnp.float32)).astype(jnp.float16)
    return jnp.sqrt(x)


def moments(
    m: jax.Array,
    v: jax.Array,
    vhat: jax.Array,
    grad: jax.Array,
    beta1_power: jax.Array,
    beta2_power: jax.Array,
    lr: jax.Array,
    beta1: jax.Array,
    beta2: jax.Array,
    epsilon: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(step, m, v, vhat)`` with ``var_new = var - step``; all inputs of one dtype T.

    Every input also goes through :func:`_rounded`: inside a larger jitted computation an input
    may be a product computed by the caller (a beta power ``beta1_power * beta1``, a gradient
    ``2 * error``) that XLA would otherwise fuse into our first subtraction as an FMA.
    """
    m, v, vhat, grad = (_rounded(x) for x in (m, v, vhat, grad))
    beta1_power, beta2_power, lr, beta1, beta2, epsilon = (
        _rounded(x) for x in (beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    )
    dtype = m.dtype
    one = jnp.ones((), dtype)
    lr_t = (lr * _sqrt64(one - beta2_power)) / (one - beta1_power)
    m_new = m + _rounded((grad - m) * (one - beta1))
    v_new = v + _rounded((_rounded(grad * grad) - v) * (one - beta2))
    # A NaN in v keeps the old vhat (the comparison is false); a NaN in vhat stays.
    vhat_new = jnp.where(vhat < v_new, v_new, vhat)
    step = (lr_t * m_new) / (_sqrt64(vhat_new) + epsilon)
    return step, m_new, v_new, vhat_new


# --------------------------------------------------------------------------- arguments


def _is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _state_dtype(name: str, array: Any) -> np.dtype:
    if not _is_array(array):
        raise TypeError(
            f"{_label(name)}: expected a JAX or NumPy array of dtype {_STATE_DTYPE_TEXT}, got "
            f"{_describe(array)}"
        )
    dtype = np.dtype(array.dtype)
    if dtype not in _STATE_DTYPES:
        raise TypeError(
            f"{_label(name)}: expected dtype {_STATE_DTYPE_TEXT}, got an array of dtype {dtype}"
        )
    return dtype


def _check_states(var: Any, m: Any, v: Any, vhat: Any) -> tuple[np.dtype, tuple[int, ...]]:
    dtype = _state_dtype("var", var)
    shape = tuple(var.shape)
    for name, array in (("m", m), ("v", v), ("vhat", vhat)):
        other = _state_dtype(name, array)
        if other != dtype:
            raise DtypeConversionError(
                f"{_label(name)}: has dtype {other} but var has dtype {dtype}; var, m, v and "
                "vhat must share one dtype (data type conversion of a variable is not supported)"
            )
        if tuple(array.shape) != shape:
            raise ValueError(
                f"{_label(name)}: expected var's shape {shape}, got shape {tuple(array.shape)}"
            )
    return dtype, shape


def _tensor_to_dtype(name: str, value: Any, dtype: np.dtype) -> jax.Array:
    """A grad or hyper-parameter array converted to T by the SPEC's tensor rules."""
    source = np.dtype(value.dtype)
    weak = bool(getattr(value, "weak_type", False))
    if source.kind == "f" and source in _FLOAT_RANK:
        if weak:
            # A Python float that JAX traced: the Python-float rule (float32, then T).
            return jnp.asarray(value).astype(jnp.float32).astype(dtype)
        if _FLOAT_RANK[source] > _FLOAT_RANK[dtype]:
            raise DtypeConversionError(
                f"{_label(name)}: has dtype {source}, higher than var's dtype {dtype}; it would "
                "force a conversion of var, m, v and vhat, which is not supported"
            )
        return jnp.asarray(value).astype(dtype)
    if source.kind in "biu":
        return jnp.asarray(value).astype(dtype)
    raise TypeError(
        f"{_label(name)}: expected a tensor of dtype float16, float32, float64, an integer or "
        f"bool dtype, got an array of dtype {source}"
    )


def _hyper(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> jax.Array:
    """One hyper-parameter as a JAX array of T, shaped to broadcast against var."""
    if not _is_array(value):
        if isinstance(value, (numbers.Real, np.generic)) and not isinstance(
            value, (np.complexfloating, np.datetime64, np.timedelta64)
        ):
            return jnp.asarray(scalar_to_dtype(name, value, dtype))
        raise TypeError(
            f"{_label(name)}: expected a float, int, bool, NumPy scalar or a JAX or NumPy array "
            f"of a real dtype, got {_describe(value)}"
        )
    converted = _tensor_to_dtype(name, value, dtype)
    vshape = tuple(value.shape)
    if int(np.prod(vshape, dtype=np.int64)) == 1:
        return converted.reshape(())
    if vshape != shape[: len(vshape)]:
        raise ValueError(
            f"{_label(name)}: expected a scalar, a single-element array or an array whose shape "
            f"is a leading prefix of var's shape {shape} (one value per row), got shape {vshape}"
        )
    return converted.reshape(vshape + (1,) * (len(shape) - len(vshape)))


def _grad(grad: Any, dtype: np.dtype, shape: tuple[int, ...]) -> jax.Array:
    if not _is_array(grad):
        raise TypeError(
            f"{_label('grad')}: expected a JAX or NumPy array of var's shape {shape}, got "
            f"{_describe(grad)}"
        )
    converted = _tensor_to_dtype("grad", grad, dtype)
    if tuple(grad.shape) != shape:
        raise ValueError(
            f"{_label('grad')}: expected var's shape {shape}, got shape {tuple(grad.shape)}"
        )
    return converted


def _hypers(values: tuple[Any, ...], dtype: np.dtype, shape: tuple[int, ...]) -> list[jax.Array]:
    return [
        _hyper(name, value, dtype, shape) for name, value in zip(HYPER_NAMES, values, strict=True)
    ]


# --------------------------------------------------------------------------- public


def apply_adam_with_amsgrad_v2(
    var: Any,
    m: Any,
    v: Any,
    vhat: Any,
    beta1_power: Any,
    beta2_power: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    epsilon: Any,
    grad: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One AMSGrad step of MindSpore's ApplyAdamWithAmsgradV2; returns new ``(var, m, v, vhat)``.

    A pure function of JAX arrays: use it under ``jax.jit``, ``jax.vmap``, ``jax.grad`` of an
    outer computation, or on sharded arrays (every operation is elementwise, so the outputs
    keep the inputs' sharding and no communication is needed).

    var, m, v, vhat: arrays of one dtype (float16, float32, or float64 with ``jax_enable_x64``)
    and one shape. grad: an array of var's shape. Hyper-parameters: scalars, single-element
    arrays, or arrays whose shape is a leading prefix of var's shape (one value per row).
    Conversions follow the SPEC (see the module docstring); errors name the argument, as in
    :func:`amsgrad.apply_adam_with_amsgrad_v2`. Bit-exact to the NumPy path on XLA:CPU.
    """
    dtype, shape = _check_states(var, m, v, vhat)
    hypers = _hypers((beta1_power, beta2_power, lr, beta1, beta2, epsilon), dtype, shape)
    grad_t = _grad(grad, dtype, shape)
    var, m, v, vhat = (jnp.asarray(array) for array in (var, m, v, vhat))
    step, m_new, v_new, vhat_new = moments(m, v, vhat, grad_t, *hypers)
    return _rounded(var) - step, m_new, v_new, vhat_new
