"""ApplyAdamWithAmsgradV2 as an Optax transformation, with ``mindspore.nn.Adam``'s training step.

``import amsgrad.optax`` imports JAX and Optax; ``import amsgrad`` does not. Inside this module
``optax`` is the absolute import of the Optax package.

Usage::

    import optax
    from amsgrad.optax import amsgrad_v2

    tx = amsgrad_v2(learning_rate=1e-3)          # or a schedule, or a list of per-step values
    state = tx.init(params)
    updates, state = tx.update(grads, state)     # params are needed only for weight decay
    params = optax.apply_updates(params, updates)

Each update is one call of ``mindspore.nn.Adam(use_amsgrad=True)`` (MindSpore 2.10, see
``docs/mindspore_training.md``), leaf by leaf:

1. weight decay, for the leaves that ``mask`` selects when ``weight_decay * loss_scale > 0``:
   ``g = p * float32(weight_decay * loss_scale) + g`` (the product of the two Python floats
   rounded once to float32, then converted to the leaf's dtype; the multiply and the add each
   rounded in that dtype), on the still loss-scaled gradient;
2. with ``grad_centralization``, for leaves of rank >= 2 whose ``shape[1]`` is a multiple of
   16: ``g = g - mean(g)`` over every axis but the first (MindSpore's ``Centralization``; its
   kernel exists on Ascend only, so its rounding is ours: the mean in float64 where JAX has
   float64, else float32, rounded once to the leaf's dtype);
3. loss scale, when ``loss_scale != 1``: ``g = g * float32(1 / loss_scale)``;
4. the learning rate of this update, read at ``count`` (before it is incremented) and rounded to
   float32: the constant, ``schedule(count)``, or ``learning_rate[count]`` of a per-step list;
5. ``beta1_power = float32(beta1_power * float32(b1))`` (and beta2), before the update;
6. the operator (see :mod:`amsgrad.adapters.jax`) with those float32 scalars converted to the
   leaf's dtype. The transformation returns ``updates = -(lr_t * m) / (sqrt(vhat) + eps)``, so
   that ``optax.apply_updates`` computes ``var + (-step)``, bit-identical to ``var - step``.

State (:class:`AmsgradV2State`): ``count`` (int32, the number of updates done),
``beta1_power`` and ``beta2_power`` (float32 scalars: ONE pair for the whole tree, as MindSpore
keeps one pair per optimizer), and per leaf ``m``, ``v``, ``vhat``.

Leaf dtypes: float16, float32, float64 (with ``jax_enable_x64``) are the operator's, computed in
that dtype. Two extensions, for leaves that ``optax.amsgrad`` accepts and the operator has no
dtype for: a bfloat16 leaf is updated by the float32 operator on its float32 value, its ``m``,
``v``, ``vhat`` are kept in float32, and its update is rounded once to bfloat16; a complex leaf
is a pair of real numbers per element (torch's ``view_as_real`` convention: real and imaginary
parts updated as two independent real parameters), its moments stored as complex numbers of the
leaf's dtype whose parts are the moments of the two parts.

A per-step list past its end: an IndexError when ``update`` runs eagerly; under ``jax.jit`` the
count is traced and nothing can be raised, so that update's learning rate is NaN (never a
clamped value). ``optax.inject_hyperparams(amsgrad_v2)`` works: its numeric hyper-parameters
arrive as 0-d arrays, checked as numbers when concrete, converted in float32 when traced (a
traced ``weight_decay * loss_scale`` is then a float32 product); a callable ``mask`` must be one
of its ``static_args``; for float16 or bfloat16 parameters it needs
``hyperparam_dtype=jnp.float32`` (half-precision hyper-parameters are refused). Without
``jax_enable_x64`` a float64 (or complex128) leaf is refused: JAX would compute it in float32.

Parameter groups with their own learning rate or weight decay: one :func:`amsgrad_v2` per group
under ``optax.multi_transform``. Every inner transformation counts the same updates with the same
betas, so their beta powers are equal, bit for bit, to the one pair MindSpore keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from amsgrad.adapters.jax import check_x64, moments, rounded, x64_enabled
from amsgrad.core.contract import scalar_to_dtype
from amsgrad.core.dtypes import STATE_DTYPES_TEXT, is_state_dtype
from amsgrad.core.optimizers import (
    as_number,
    centralizes,
    check_decay,
    check_hyper_in_dtype,
    check_optimizer_hyper,
)

__all__ = ["AmsgradV2State", "amsgrad_v2", "mindspore_decay_mask"]

_increment = getattr(optax, "safe_increment", None) or optax.safe_int32_increment
#: How this API spells (lr, beta1, beta2, eps) in messages (see check_optimizer_hyper).
_NAMES = ("learning_rate", "b1", "b2", "eps")
_F32 = np.dtype(np.float32)
_BF16 = np.dtype(jnp.bfloat16)
_REAL_OF_COMPLEX: dict[np.dtype, np.dtype] = {
    np.dtype(np.complex64): _F32,
    np.dtype(np.complex128): np.dtype(np.float64),
}


class AmsgradV2State(NamedTuple):
    """State of :func:`amsgrad_v2`."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    beta1_power: jax.Array
    beta2_power: jax.Array
    m: optax.Updates
    v: optax.Updates
    vhat: optax.Updates


# --------------------------------------------------------------------------- hyper-parameters


def _traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _read(value: Any) -> float | None:
    """A number, or a concrete single-element real array (``inject_hyperparams`` passes 0-d
    arrays), as a float; None for anything else."""
    number = as_number(value)
    if number is not None:
        return number
    if (
        isinstance(value, (jax.Array, np.ndarray))
        and not _traced(value)
        and np.size(value) == 1
        and np.dtype(value.dtype).kind in "fiu"
    ):
        return float(np.asarray(value).reshape(()))
    return None


def _checkable(value: Any, stand_in: float) -> Any:
    """The value to check: a traced array (``inject_hyperparams`` under ``jax.jit``) cannot be
    read, so a valid stand-in replaces it; it was checked when the transformation was built."""
    return stand_in if _traced(value) else value


def _as_checked(value: Any, stand_in: float) -> Any:
    """What :func:`check_decay` checks: the value read as a number where it can be (a 0-d
    array from ``inject_hyperparams``), a stand-in for a traced one, else the value itself."""
    if _traced(value):
        return stand_in
    number = _read(value)
    return value if number is None or isinstance(value, bool) else number


def _f32(value: Any) -> jax.Array:
    """A hyper-parameter as a 0-d float32 array: a number rounded once (the SPEC's rule for
    Python floats), an array converted."""
    number = as_number(value)
    if number is not None:
        return jnp.asarray(np.float32(number))
    return jnp.asarray(value).astype(jnp.float32).reshape(())


def _in_dtype(name: str, value: Any, dtype: np.dtype) -> jax.Array:
    """A hyper-parameter rounded to float32, then to the compute dtype."""
    if as_number(value) is not None:
        return jnp.asarray(scalar_to_dtype(name, value, dtype))
    return _f32(value).astype(dtype)


def _lr_table(learning_rate: Any) -> Any:
    """A per-step list (or 1-d array) of learning rates as a float32 array; None otherwise."""
    if isinstance(learning_rate, (list, tuple)):
        if not learning_rate:
            raise ValueError("learning_rate: an empty list of per-step learning rates")
        numbers = [_lr_element(index, value) for index, value in enumerate(learning_rate)]
        # Each element rounded once to float32, as MindSpore's np.array(list).astype(float32).
        return jnp.asarray(np.asarray(numbers, np.float64).astype(np.float32))
    if isinstance(learning_rate, (jax.Array, np.ndarray)) and np.ndim(learning_rate) == 1:
        if not np.size(learning_rate):
            raise ValueError("learning_rate: an empty array of per-step learning rates")
        if not _traced(learning_rate):  # a traced one (inject_hyperparams) cannot be read
            for index, value in enumerate(np.asarray(learning_rate).tolist()):
                _lr_element(index, value)
        return jnp.asarray(learning_rate).astype(jnp.float32)
    return None


def _lr_element(index: int, value: Any) -> float:
    """One element of a per-step list: a number >= 0 (a 0-d array holding one counts)."""
    number = None if np.ndim(value) else _read(value)
    if number is None or not number >= 0:
        raise ValueError(f"learning_rate[{index}]: expected a number >= 0, got {value!r}")
    return number


_HALF = (np.dtype(np.float16), _BF16)


def _refuse_half(**values: Any) -> None:
    """Refuse a hyper-parameter given as a float16 or bfloat16 array (traced ones included).

    Each hyper-parameter is rounded to float32, as MindSpore does; a half-precision value has
    already lost bits (eps = 1e-8 is 0 in float16: NaN updates). ``optax.inject_hyperparams``
    converts its numeric hyper-parameters to the parameters' dtype unless told otherwise.
    """
    for name, value in values.items():
        dtype = getattr(value, "dtype", None)
        if isinstance(value, (jax.Array, np.ndarray)) and np.dtype(dtype) in _HALF:
            raise TypeError(
                f"amsgrad_v2: {name}: an array of dtype {np.dtype(dtype)}; hyper-parameters "
                "are rounded to float32 (as MindSpore does), and a half-precision value has "
                "already lost bits (eps = 1e-8 is 0 in float16); optax.inject_hyperparams "
                "converts them to the parameters' dtype: pass it hyperparam_dtype=jnp.float32"
            )


def _check_hyper(learning_rate: Any, b1: Any, b2: Any, eps: Any, listed: bool) -> None:
    """The contract's optimizer checks on every value that can be read here (a schedule's
    values, and traced arrays, cannot; a list's elements were checked one by one)."""
    lr = learning_rate
    if callable(lr) or listed:
        lr = 0.0
    elif isinstance(lr, (jax.Array, np.ndarray)) and np.ndim(lr) > 1:
        raise ValueError(
            f"learning_rate: expected a number, a 0-d array, a 1-d array or list of per-step "
            f"values, or a schedule, got an array of shape {np.shape(lr)}"
        )
    check_optimizer_hyper(
        _checkable(lr, 0.0),
        _checkable(b1, 0.0),
        _checkable(b2, 0.0),
        _checkable(eps, 0.0),
        names=_NAMES,
        read=_read,
        finite=True,
    )


def _decay_factors(weight_decay: Any, loss_scale: Any) -> tuple[Any, Any, bool, bool]:
    """``(wd32, r, decays, scales)``: the float32 factors of steps 1 and 2 and whether each step
    can happen. For numbers: ``float32(wd * ls)`` from the Python product, ``float32(1 / ls)``,
    and static decisions. For traced arrays (``inject_hyperparams`` under ``jax.jit``): the same
    factors computed in float32, decided per update by the traced values."""
    wd = 0.0 if weight_decay is None else weight_decay
    ls = 1.0 if loss_scale is None else loss_scale
    wd_n, ls_n = _read(wd), _read(ls)
    if wd_n is not None and ls_n is not None:
        return np.float32(wd_n * ls_n), np.float32(1.0 / ls_n), wd_n * ls_n > 0, ls_n != 1.0
    ls32 = _f32(ls)
    wd32 = _f32(wd) * ls32
    return wd32, jnp.float32(1) / ls32, True, True


# --------------------------------------------------------------------------- leaves


class _Kind(NamedTuple):
    """How one leaf is computed: ``compute`` is the operator's T, ``state`` the dtype of m, v,
    vhat, ``pairs`` whether the leaf is complex (a pair of reals per element)."""

    dtype: np.dtype
    compute: np.dtype
    state: np.dtype
    pairs: bool


def _kind(leaf: Any, where: str) -> _Kind:
    dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
    if is_state_dtype(dtype):
        check_x64(where, dtype)
        return _Kind(dtype, dtype, dtype, False)
    if dtype == _BF16:
        return _Kind(dtype, _F32, _F32, False)
    if dtype in _REAL_OF_COMPLEX:
        check_x64(where, dtype)
        return _Kind(dtype, _REAL_OF_COMPLEX[dtype], dtype, True)
    raise TypeError(
        f"amsgrad_v2: expected parameters and gradients of dtype {STATE_DTYPES_TEXT} (or "
        f"bfloat16, complex64, complex128: see amsgrad.optax), got {where} of dtype {dtype}"
    )


def _real(x: Any, kind: _Kind) -> jax.Array:
    """A leaf (or its state) in the compute dtype: complex as (..., 2) real pairs, bfloat16
    widened to float32 (exact), others unchanged."""
    x = jnp.asarray(x)
    if kind.pairs:
        return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    return x.astype(kind.compute)


def _unreal(y: jax.Array, dtype: np.dtype, kind: _Kind) -> jax.Array:
    """The inverse of :func:`_real`, rounded once to ``dtype`` (bfloat16 updates)."""
    if kind.pairs:
        return jax.lax.complex(y[..., 0], y[..., 1])
    return y.astype(dtype)


def _centralized(g: jax.Array, dtype: np.dtype, pairs: bool = False) -> jax.Array:
    """``g - mean(g)`` over every axis but the first: the mean accumulated in float64 where JAX
    has it (``jax_enable_x64``), else in float32, rounded once to ``dtype``; the subtraction
    rounded in ``dtype``. ``pairs``: ``g`` holds a complex gradient as (..., 2) real pairs,
    whose real and imaginary parts are averaged apart (the complex mean)."""
    wide = jnp.float64 if x64_enabled() else jnp.float32
    axes = tuple(range(1, g.ndim - (1 if pairs else 0)))
    mean = jnp.mean(g.astype(wide), axis=axes, keepdims=True).astype(dtype)
    return rounded(g - mean)


def _label(path: Any) -> str:
    return f"the leaf {jax.tree_util.keystr(path) or 'params'}"


def mindspore_decay_mask(params: optax.Params) -> Any:
    """MindSpore's default weight-decay filter as an Optax mask: ``True`` (decays) for the
    leaves whose name holds neither ``beta`` nor ``gamma``, ``False`` for the others (MindSpore's
    LayerNorm and BatchNorm parameters are named ``gamma`` and ``beta``).

    A leaf's name is its key path joined by dots: ``{"norm": {"gamma": w}}`` and
    ``{"norm.gamma": w}`` are both ``norm.gamma``. Pass the function itself as
    ``amsgrad_v2(..., mask=mindspore_decay_mask)`` (it is called with the parameters at each
    update) or its result. It only reads names: Flax calls LayerNorm's parameters ``scale`` and
    ``bias``, which it does not spare.
    """

    def decays(path: Any, _: Any) -> bool:
        name = jax.tree_util.keystr(path, simple=True, separator=".")
        return "beta" not in name and "gamma" not in name

    return jax.tree_util.tree_map_with_path(decays, params)


def _leaves_like(treedef: Any, tree: Any, what: str) -> list[Any]:
    """The leaves of ``tree``, which must have the updates' structure ``treedef``."""
    leaves, structure = jax.tree.flatten(tree)
    if structure != treedef:
        raise ValueError(
            f"amsgrad_v2: the structure of {what} is {structure}, not the updates' {treedef}"
        )
    return leaves


def _mask_flags(mask: Any, params: Any, treedef: Any) -> list[Any]:
    """One flag per leaf of ``treedef`` from an Optax mask (a tree of bools with the parameters'
    structure or a prefix of it, or a callable of the parameters returning one)."""
    if mask is None:
        return [True] * treedef.num_leaves
    tree = mask(params) if callable(mask) else mask
    try:
        full = jax.tree.map(lambda flag, sub: jax.tree.map(lambda _: flag, sub), tree, params)
        flags = _leaves_like(treedef, full, "the mask")
    except (ValueError, TypeError) as error:
        raise ValueError(
            "mask: expected a tree of bools with the structure of the parameters (or a prefix "
            f"of it), or a callable of the parameters returning one; {error}"
        ) from None
    for flag in flags:
        if _traced(flag) or not isinstance(flag, (bool, np.bool_, jax.Array, np.ndarray)):
            raise ValueError(f"mask: expected bools, known when the update is traced, got {flag!r}")
    return [bool(flag) for flag in flags]


# --------------------------------------------------------------------------- the transformation


#: A hyper-parameter: a number, or a 0-d array (``optax.inject_hyperparams`` passes those).
Scalar = float | jax.Array | np.ndarray


def amsgrad_v2(
    learning_rate: Scalar | Sequence[float] | Callable[[jax.Array], Any],
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: Scalar | None = None,
    loss_scale: Scalar | None = None,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    grad_centralization: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """MindSpore's ``nn.Adam(use_amsgrad=True)`` (ApplyAdamWithAmsgradV2) for Optax.

    Args:
      learning_rate: a number >= 0 (MindSpore's constant ``learning_rate``); a schedule, a
        callable of the update count (0 for the first update), as for ``optax.adam``; or a list
        (or 1-d array) of per-step values, element ``count`` used by the update after ``count``
        updates (MindSpore's ``learning_rate=[...]`` and ``nn.dynamic_lr``). Each value is
        rounded to float32.
      b1, b2: the decay rates of the first and second moments, in [0, 1).
      eps: added to ``sqrt(vhat)`` in the denominator (before any bias correction, unlike
        ``optax.amsgrad``, which adds it after), >= 0.
      weight_decay: MindSpore's coupled weight decay, >= 0 (None or 0: none). Needs ``params``
        at ``update``.
      loss_scale: MindSpore's ``loss_scale`` > 0 (None or 1: none): the gradients given are
        the loss-scaled ones; they are divided by it after the weight decay.
      mask: which leaves decay, as for ``optax.adamw``: a tree of bools with the parameters'
        structure (or a prefix of it), or a callable of the parameters returning one. None: every
        leaf. :func:`mindspore_decay_mask` is MindSpore's default filter (no ``beta``/``gamma``
        in the name). Ignored without weight decay.
      grad_centralization: MindSpore's group option (a bool): after the decay, a gradient of
        rank >= 2 whose ``shape[1]`` is a multiple of 16 loses its mean over every axis but the
        first (see the module docstring for its rounding).

    Leaves: float16, float32, float64 (with ``jax_enable_x64``), and, as an extension,
    bfloat16 and complex (see the module docstring). Raises ValueError naming the argument for
    an invalid hyper-parameter, and at ``init`` for one that rounds to a degenerate value in a
    leaf's dtype (a beta below 1 that rounds to 1, an eps above 0 that rounds to 0: 1e-8 in
    float16). Works under ``optax.inject_hyperparams`` (numbers arrive as 0-d arrays) and
    accepts extra keyword arguments at ``update`` (it is a ``GradientTransformationExtraArgs``).
    """
    _refuse_half(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
        weight_decay=weight_decay, loss_scale=loss_scale,
    )  # fmt: skip
    table = _lr_table(learning_rate)
    _check_hyper(learning_rate, b1, b2, eps, listed=table is not None)
    if not isinstance(grad_centralization, bool):
        raise TypeError(
            f"amsgrad_v2: grad_centralization: expected a bool, got {grad_centralization!r}"
        )
    check_decay(
        "",
        _as_checked(0.0 if weight_decay is None else weight_decay, 0.0),
        _as_checked(1.0 if loss_scale is None else loss_scale, 1.0),
    )
    wd32, reciprocal, decays, scales = _decay_factors(weight_decay, loss_scale)
    static_b1, static_b2 = as_number(b1), as_number(b2)
    # A constant learning rate (a number or a concrete 0-d array) is checked against each
    # leaf's dtype at init; a schedule's or list's values are not known there.
    constant_lr = not callable(learning_rate) and table is None
    static_lr = _checkable(learning_rate, 0.0) if constant_lr else None

    def init_fn(params: optax.Params) -> AmsgradV2State:
        checked: set[np.dtype] = set()

        def zeros(path: Any, leaf: Any) -> jax.Array:
            kind = _kind(leaf, _label(path))
            if kind.compute not in checked:  # the leaves' dtype is known: refuse degenerate values
                check_hyper_in_dtype(
                    _checkable(b1, 0.0), _checkable(b2, 0.0), _checkable(eps, 0.0),
                    kind.compute, names=_NAMES, read=_read, lr=static_lr,
                    where=f"amsgrad_v2: for {_label(path)} of dtype {kind.dtype}, ",
                )  # fmt: skip
                checked.add(kind.compute)
            return jnp.zeros(jnp.shape(leaf), kind.state)

        m = jax.tree_util.tree_map_with_path(zeros, params)
        return AmsgradV2State(
            count=jnp.zeros([], jnp.int32),
            beta1_power=jnp.ones([], jnp.float32),
            beta2_power=jnp.ones([], jnp.float32),
            m=m,
            v=jax.tree.map(jnp.zeros_like, m),
            vhat=jax.tree.map(jnp.zeros_like, m),
        )

    def learning_rate_at(count: jax.Array) -> jax.Array:
        if callable(learning_rate):
            return jnp.asarray(learning_rate(count)).astype(jnp.float32).reshape(())
        if table is None:
            return _f32(learning_rate)
        if not _traced(count) and int(count) >= table.shape[0]:
            index = int(count)
            raise IndexError(
                f"amsgrad_v2: learning_rate is a list of {table.shape[0]} per-step learning "
                f"rates, and step {index + 1} (count {index}) is past its end; give a longer "
                "list (under jax.jit this cannot be raised: such a step's learning rate is NaN)"
            )
        return jnp.take(table, count, mode="fill", fill_value=jnp.nan)

    def update_fn(
        updates: optax.Updates,
        state: AmsgradV2State,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, AmsgradV2State]:
        del extra_args  # accepted, as Optax's own transformations do, and not used
        leaves, treedef = jax.tree.flatten(updates)
        moments_in = [
            _leaves_like(treedef, tree, f"the state's {name} (made by init from the parameters)")
            for name, tree in (("m", state.m), ("v", state.v), ("vhat", state.vhat))
        ]
        needs_params = decays and weight_decay is not None
        flags: list[Any] = [False] * len(leaves)
        param_leaves: list[Any] = [None] * len(leaves)
        if needs_params:
            if params is None:
                raise ValueError(
                    "amsgrad_v2: weight_decay needs the parameters; call "
                    "update(grads, state, params)"
                )
            param_leaves = _leaves_like(treedef, params, "params")
            flags = _mask_flags(mask, params, treedef)
        b1_32 = np.float32(static_b1) if static_b1 is not None else _f32(b1)
        b2_32 = np.float32(static_b2) if static_b2 is not None else _f32(b2)
        beta1_power = state.beta1_power * b1_32  # float32 * float32, as MindSpore
        beta2_power = state.beta2_power * b2_32
        lr32 = learning_rate_at(state.count)

        paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(updates)[0]]
        results = []
        for path, grad, m, v, vhat, param, flag in zip(
            paths, leaves, *moments_in, param_leaves, flags, strict=True
        ):
            kind = _kind(grad, _label(path))
            for name, moment in (("m", m), ("v", v), ("vhat", vhat)):
                if jnp.shape(moment) != jnp.shape(grad):
                    raise ValueError(
                        f"amsgrad_v2: {_label(path)} is a gradient of shape {jnp.shape(grad)}, "
                        f"and its state {name} has shape {jnp.shape(moment)}; expected the "
                        "parameter's shape, which init gave the state"
                    )
                if np.dtype(moment.dtype) != kind.state:
                    raise TypeError(
                        f"amsgrad_v2: {_label(path)} is a gradient of dtype {kind.dtype}, and "
                        f"its state {name} has dtype {np.dtype(moment.dtype)}, expected "
                        f"{kind.state}; the state is created by init from the parameters"
                    )
            dtype = kind.compute
            g = _real(grad, kind)  # rounded by moments(), or here before the decay's addition
            if flag:
                if param is None or np.dtype(param.dtype) != kind.dtype:
                    got = None if param is None else np.dtype(param.dtype)
                    raise TypeError(
                        f"amsgrad_v2: {_label(path)} is a gradient of dtype {kind.dtype}, and "
                        f"its parameter has dtype {got}; weight decay needs both of one dtype"
                    )
                if jnp.shape(param) != jnp.shape(grad):
                    raise ValueError(
                        f"amsgrad_v2: {_label(path)} is a gradient of shape {jnp.shape(grad)}, "
                        f"and its parameter has shape {jnp.shape(param)}; weight decay needs "
                        "both of one shape"
                    )
                factor = jnp.asarray(wd32).astype(dtype)
                decayed = rounded(rounded(_real(param, kind)) * factor) + rounded(g)
                g = decayed if not _traced(wd32) else jnp.where(wd32 > 0, decayed, g)
            if grad_centralization and centralizes(jnp.shape(grad)):  # complex: its own shape
                g = _centralized(rounded(g), dtype, kind.pairs)
            if scales:
                # Rounded first: XLA may fold (x * c1) * c2 into x * (c1 * c2) for constants.
                g = rounded(g) * jnp.asarray(reciprocal).astype(dtype)
            hyper = (
                beta1_power.astype(dtype),
                beta2_power.astype(dtype),
                lr32.astype(dtype),
                _in_dtype("b1", b1, dtype),
                _in_dtype("b2", b2, dtype),
                _in_dtype("eps", eps, dtype),
            )
            step, m_new, v_new, vhat_new = moments(
                _real(m, kind), _real(v, kind), _real(vhat, kind), g, *hyper
            )
            results.append(
                (
                    _unreal(-step, kind.dtype, kind),
                    *(_unreal(x, kind.state, kind) for x in (m_new, v_new, vhat_new)),
                )
            )
        columns = [[result[k] for result in results] for k in range(4)]
        new_updates, new_m, new_v, new_vhat = (
            jax.tree.unflatten(treedef, column) for column in columns
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

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
