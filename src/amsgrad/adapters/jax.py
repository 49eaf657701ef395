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
:func:`rounded`, a select (``where(p != p, nan, p)``) that is the identity on every number
(a NaN stays a NaN, with the sign and payload of the quiet NaN constant: like the test suite,
which counts any NaN equal to any NaN, nothing here promises NaN bits), but that stands between
the multiplication and the addition, so that no FMA can be formed. Every input goes through it
too: inside a larger jitted program an input may itself be a product (``beta1_power * beta1`` in
the Optax state, a gradient ``2 * error``) that XLA would fuse into our first subtraction.
With it, the results equal the NumPy path (:func:`amsgrad.apply_adam_with_amsgrad_v2`) bit for
bit on XLA:CPU for float16, float32 and float64 (float64 needs ``jax_enable_x64``); the test suite
holds this. XLA also rewrites a division by a broadcast value as a multiplication by its
reciprocal; the divisor of ``lr_t`` is kept from that rewrite (:func:`_not_broadcast`), so a
learning rate per row or under ``jax.vmap`` is exact too. float16 is computed as XLA computes
it: each operation rounded to half, which is the SPEC's rule. No XLA flag is needed or set
(XLA's flags are process-wide: not an option for a library).

What the barrier costs, and the cheaper ones tried (jaxlib 0.10.2, a jitted Optax step on a
4-layer 512x512 float32 MLP, ``docs/frameworks.md`` has the figures): the earlier select
``where(p != p, p + p, p)`` made the step about 15 % slower than without any barrier; this one
(a comparison and a blend, no addition) costs about as much as the measurement's noise.
``jax.lax.reduce_precision`` to the dtype's own precision, ``optimization_barrier`` (on the
product, or on a factor of one it is multiplied by), a bitcast round trip through an integer
and ``maximum(p, -inf)`` all leave FMAs in the result (XLA removes or looks through them). An
addition of a ``-0.0`` that XLA cannot prove constant (derived from the Optax state's count)
also works (an FMA with a zero addend rounds the product), at about the same cost, but needs a
run-time value that the pure function does not have.

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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from amsgrad.core.contract import (
    HYPER_NAMES,
    STATE_NAMES,
    Hyper,
    check_grad_meta,
    check_state_meta,
    grad_type_error,
    hyper_shape,
    scalar_to_dtype,
    state_type_error,
    tensor_dtype_to,
)

__all__ = ["apply_adam_with_amsgrad_v2"]


# --------------------------------------------------------------------------- arithmetic


def rounded(product: jax.Array) -> jax.Array:
    """The product itself, rounded to its dtype, kept out of any fused multiply-add.

    ``p != p`` is true only for NaN, and the select then gives a NaN, so it is the identity on
    every number; but a select between a multiplication and an addition is not a pattern that
    XLA or LLVM contract into an FMA, so the product is rounded as the SPEC says. (See the
    module docstring for the barriers that do not work: XLA removes or looks through them.)
    """
    return jnp.where(product != product, jnp.asarray(jnp.nan, product.dtype), product)


def _sqrt64(x: jax.Array) -> jax.Array:
    """The square root computed in float64 and rounded to x's dtype (SPEC ``sqrt64``).

    For float16 and float32 the correctly rounded square root in float32 (float16 first widened)
    rounded to T is the same value (no double-rounding error: 24 >= 2 * 11 + 2), so float64 is
    only needed, and only used, for float64 inputs.
    """
    if x.dtype == jnp.float16:
        return jnp.sqrt(x.astype(jnp.float32)).astype(jnp.float16)
    return jnp.sqrt(x)


def _not_broadcast(divisor: jax.Array, numerator: jax.Array) -> jax.Array:
    """The divisor, as an array that XLA cannot see to be a broadcast of fewer values.

    XLA rewrites ``x / broadcast(d)`` as ``x * broadcast(1 / d)``, which rounds twice: with a
    learning rate per row (or under ``jax.vmap``) and scalar beta powers, a third of the float32
    ``lr_t`` values came out one ULP off. A select on the numerator (``where(x != x, x, d)``:
    ``d`` for every number; for a NaN numerator the quotient is a NaN either way) gives the
    divisor the numerator's shape and makes it depend on its data, so no such rewrite applies.
    """
    return jnp.where(numerator != numerator, numerator, divisor)


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

    Every input also goes through :func:`rounded`: inside a larger jitted computation an input
    may be a product computed by the caller (a beta power ``beta1_power * beta1``, a gradient
    ``2 * error``) that XLA would otherwise fuse into our first subtraction as an FMA.
    """
    m, v, vhat, grad = (rounded(x) for x in (m, v, vhat, grad))
    beta1_power, beta2_power, lr, beta1, beta2, epsilon = (
        rounded(x) for x in (beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    )
    dtype = m.dtype
    one = jnp.ones((), dtype)
    numerator = lr * _sqrt64(one - beta2_power)
    lr_t = numerator / _not_broadcast(one - beta1_power, numerator)
    m_new = m + rounded((grad - m) * (one - beta1))
    v_new = v + rounded((rounded(grad * grad) - v) * (one - beta2))
    # A NaN in v keeps the old vhat (the comparison is false); a NaN in vhat stays.
    vhat_new = jnp.where(vhat < v_new, v_new, vhat)
    step = (lr_t * m_new) / (_sqrt64(vhat_new) + epsilon)
    return step, m_new, v_new, vhat_new


# --------------------------------------------------------------------------- arguments
#
# This module decides only what is an array (a JAX or NumPy array, traced ones included) and
# reads its dtype, shape and weak type; every check and message is the contract's, as for the
# NumPy API (amsgrad.core.contract).


def _is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _meta(array: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """An array's dtype as a NumPy dtype and its shape as a tuple."""
    return np.dtype(array.dtype), tuple(array.shape)


def _cast(value: Any, casts: tuple[np.dtype, ...]) -> jax.Array:
    converted = jnp.asarray(value)
    for dtype in casts:
        converted = converted.astype(dtype)
    return converted


def _state_meta(name: str, array: Any) -> tuple[np.dtype, tuple[int, ...]]:
    if not _is_array(array):
        raise state_type_error(name, array)
    return _meta(array)


def x64_enabled() -> bool:
    """Whether JAX computes in 64 bits here (``jax_enable_x64``, globally or in a context)."""
    return bool(jax.dtypes.canonicalize_dtype(np.float64) == np.float64)


def check_x64(name: str, dtype: np.dtype) -> None:
    """Refuse a 64-bit (float64 or complex128) ``name`` when JAX would compute it in 32 bits.

    Without ``jax_enable_x64`` JAX converts a NumPy float64 array to float32 on entry, so the
    update would silently be the float32 one; a TypeError naming the argument says so instead.
    """
    if np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.complex128)) and not x64_enabled():
        raise TypeError(
            f"{name}: an array of dtype {np.dtype(dtype)} needs jax_enable_x64 (JAX would "
            "compute it in 32 bits); call jax.config.update('jax_enable_x64', True) first, or "
            "pass 32-bit arrays"
        )


def _check_states(states: tuple[Any, ...]) -> tuple[np.dtype, tuple[int, ...]]:
    """var, m, v, vhat: arrays of one state dtype and one shape; returns (T, var's shape)."""
    dtype, shape = _state_meta("var", states[0])
    check_state_meta("var", dtype, shape)
    check_x64("var", dtype)
    for name, array in zip(STATE_NAMES[1:], states[1:], strict=True):
        check_state_meta(name, *_state_meta(name, array), dtype, shape)
    return dtype, shape


def _hyper(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> jax.Array:
    """One hyper-parameter as a JAX array of T, shaped to broadcast against var."""
    if not _is_array(value):
        return jnp.asarray(scalar_to_dtype(name, value, dtype))
    source, vshape = _meta(value)
    casts = tensor_dtype_to(name, source, dtype, weak=bool(getattr(value, "weak_type", False)))
    depth = hyper_shape(name, vshape, shape)
    converted = _cast(value, casts)
    if depth == 0:
        return converted.reshape(())
    return converted.reshape(vshape + (1,) * (len(shape) - depth))


def _grad(grad: Any, dtype: np.dtype, shape: tuple[int, ...]) -> jax.Array:
    if not _is_array(grad):
        raise grad_type_error(grad, shape)
    source, gshape = _meta(grad)
    return _cast(grad, check_grad_meta(source, gshape, dtype, shape))


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
    Conversions follow the SPEC (see the module docstring). Errors are those of
    :func:`amsgrad.apply_adam_with_amsgrad_v2` for the same mistake, type and message (both come
    from :mod:`amsgrad.core.contract`). Bit-exact to the NumPy path on XLA:CPU.
    """
    dtype, shape = _check_states((var, m, v, vhat))
    given = Hyper(beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    hyper = Hyper._make(
        _hyper(name, value, dtype, shape) for name, value in zip(HYPER_NAMES, given, strict=True)
    )
    grad_t = _grad(grad, dtype, shape)
    var, m, v, vhat = (jnp.asarray(array) for array in (var, m, v, vhat))
    step, m_new, v_new, vhat_new = moments(m, v, vhat, grad_t, *hyper)
    return rounded(var) - step, m_new, v_new, vhat_new
