"""ApplyAdamWithAmsgradV2 as an ``optax.GradientTransformation``: :func:`amsgrad_v2`.

``import amsgrad.optax`` imports JAX and Optax; ``import amsgrad`` does not. Inside this module
``optax`` is the absolute import of the Optax package.

Usage::

    import optax
    from amsgrad.optax import amsgrad_v2

    tx = amsgrad_v2(learning_rate=1e-3)          # or a schedule: optax.cosine_decay_schedule(...)
    state = tx.init(params)
    updates, state = tx.update(grads, state)     # params are not needed
    params = optax.apply_updates(params, updates)

The update of each leaf is MindSpore's ApplyAdamWithAmsgradV2 (see :mod:`amsgrad.jax`). The
transformation returns ``updates = -(lr_t * m) / (sqrt(vhat) + epsilon)``, so that
``optax.apply_updates`` computes ``var + (-step)``, which is bit-identical to the operator's
``var - step``.

State (:class:`AmsgradV2State`): ``count`` (int32, the number of updates done),
``beta1_power`` and ``beta2_power`` (float32 scalars that start at 1 and are multiplied by b1
and b2 in float32 before each update, as MindSpore's Adam optimizers keep them), and per leaf
``m``, ``v``, ``vhat`` of the leaf's dtype.

Scalars: ``b1``, ``b2``, ``eps`` and the learning rate (a float, or the value of the schedule at
``count``) are rounded to float32, then to each leaf's dtype, as the SPEC converts Python floats;
the beta powers, float32, are converted to the leaf's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from amsgrad.adapters.jax import moments
from amsgrad.core.contract import Hyper, scalar_to_dtype
from amsgrad.core.dtypes import STATE_DTYPES_TEXT, is_state_dtype
from amsgrad.core.optimizers import check_hyper_in_dtype, check_optimizer_hyper

__all__ = ["AmsgradV2State", "amsgrad_v2"]

_increment = getattr(optax, "safe_increment", None) or optax.safe_int32_increment
#: How this API spells (lr, beta1, beta2, eps) in messages (see check_optimizer_hyper).
_NAMES = ("learning_rate", "b1", "b2", "eps")


class AmsgradV2State(NamedTuple):
    """State of :func:`amsgrad_v2`."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    beta1_power: jax.Array
    beta2_power: jax.Array
    m: optax.Updates
    v: optax.Updates
    vhat: optax.Updates


def _check_hyper(learning_rate: Any, b1: Any, b2: Any, eps: Any) -> None:
    """The contract's optimizer checks; a schedule and a traced learning rate are not checked."""
    lr = learning_rate
    if callable(lr):
        lr = 0.0  # a schedule: its values are not known here
    elif isinstance(lr, (jax.Array, np.ndarray)) and np.size(lr) == 1:
        try:  # a concrete single-element array
            lr = float(np.asarray(lr).reshape(()))
        except Exception:  # a traced one
            lr = 0.0
    check_optimizer_hyper(lr, b1, b2, eps, names=_NAMES)


def amsgrad_v2(
    learning_rate: float | Callable[[jax.Array], Any],
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """MindSpore's ApplyAdamWithAmsgradV2 (AMSGrad, epsilon added to ``sqrt(vhat)``) for Optax.

    Args:
      learning_rate: a number >= 0, or a schedule: a callable of the update count (0 for the
        first update) returning the learning rate, as for ``optax.adam``.
      b1, b2: the decay rates of the first and second moments, in [0, 1).
      eps: added to ``sqrt(vhat)`` in the denominator (before any bias correction, unlike
        ``optax.amsgrad``, which adds it after), >= 0.

    Leaves must be float16, float32 or float64 (float64 with ``jax_enable_x64``) arrays; the
    arithmetic of each leaf is done in its dtype, operation by operation, as the operator's.
    Raises ValueError naming the argument for an invalid hyper-parameter, and at ``init`` for
    one that rounds to a degenerate value in a leaf's dtype (a beta below 1 that rounds to 1, an
    eps above 0 that rounds to 0: 1e-8 in float16).
    """
    _check_hyper(learning_rate, b1, b2, eps)
    b1_f32 = np.float32(b1)
    b2_f32 = np.float32(b2)

    def init_fn(params: optax.Params) -> AmsgradV2State:
        checked: set[np.dtype] = set()

        def zeros(path: Any, leaf: Any) -> jax.Array:
            dtype = _leaf_dtype(leaf)
            if dtype not in checked:  # the leaves' dtype is known here: refuse degenerate values
                check_hyper_in_dtype(
                    b1, b2, eps, dtype, names=_NAMES,
                    where=f"amsgrad_v2: for the leaf {jax.tree_util.keystr(path) or 'params'} "
                    f"of dtype {dtype}, ",
                )  # fmt: skip
                checked.add(dtype)
            return jnp.zeros_like(leaf)

        m = jax.tree_util.tree_map_with_path(zeros, params)

        return AmsgradV2State(
            count=jnp.zeros([], jnp.int32),
            beta1_power=jnp.ones([], jnp.float32),
            beta2_power=jnp.ones([], jnp.float32),
            m=m,
            v=jax.tree.map(jnp.zeros_like, m),
            vhat=jax.tree.map(jnp.zeros_like, m),
        )

    def update_fn(
        updates: optax.Updates, state: AmsgradV2State, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AmsgradV2State]:
        del params  # the update does not read the parameters
        beta1_power = state.beta1_power * b1_f32  # float32 * float32, as MindSpore
        beta2_power = state.beta2_power * b2_f32
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        # The SPEC's rule for Python floats: round to float32 first (then to each leaf's T).
        lr32 = jnp.asarray(lr).astype(jnp.float32)

        def leaf_update(grad, m, v, vhat):
            dtype = _leaf_dtype(grad)
            if np.dtype(m.dtype) != dtype:
                raise TypeError(
                    f"amsgrad_v2: a gradient of dtype {dtype} does not match its state of dtype "
                    f"{np.dtype(m.dtype)}; the state is created by init from the parameters"
                )
            hyper = Hyper(
                beta1_power=beta1_power.astype(dtype),
                beta2_power=beta2_power.astype(dtype),
                lr=lr32.astype(dtype),
                beta1=jnp.asarray(scalar_to_dtype("b1", b1, dtype)),
                beta2=jnp.asarray(scalar_to_dtype("b2", b2, dtype)),
                epsilon=jnp.asarray(scalar_to_dtype("eps", eps, dtype)),
            )
            step, m_new, v_new, vhat_new = moments(m, v, vhat, grad, *hyper)
            return -step, m_new, v_new, vhat_new

        results = jax.tree.map(
            lambda *leaves: _LeafResult(*leaf_update(*leaves)),
            updates,
            state.m,
            state.v,
            state.vhat,
        )
        new_updates, new_m, new_v, new_vhat = (
            jax.tree.map(lambda result, k=k: result.values[k], results) for k in range(4)
        )
        new_state = AmsgradV2State(
            count=_increment(state.count),
            beta1_power=beta1_power,
            beta2_power=beta2_power,
            m=new_m,
            v=new_v,
            vhat=new_vhat,
        )
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


class _LeafResult:
    """The four results of one leaf; a plain object, hence a leaf of ``jax.tree`` (unlike a
    tuple, which could be confused with tuples of the caller's pytree)."""

    __slots__ = ("values",)

    def __init__(self, *values: jax.Array) -> None:
        self.values = values


def _leaf_dtype(leaf: Any) -> np.dtype:
    dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
    if not is_state_dtype(dtype):
        raise TypeError(
            f"amsgrad_v2: expected parameters and gradients of dtype {STATE_DTYPES_TEXT}, "
            f"got a leaf of dtype {dtype}"
        )
    return dtype
