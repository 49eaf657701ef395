""":func:`load_mindspore` and :func:`save_mindspore`: the parameters and the
:class:`~amsgrad.optax.AmsgradV2State` of :func:`~amsgrad.optax.amsgrad_v2` from and to MindSpore
checkpoints of ``nn.Adam(use_amsgrad=True)`` (the names, checks and counters are
:mod:`amsgrad.adapters.mindspore_state`'s).

A leaf of the parameters' pytree is named by its path: dict keys, attribute names and sequence
indices joined by ``"."`` (``{"fc1": {"weight": w}}`` is ``fc1.weight``, ``[w, b]`` is ``0``
and ``1``), then ``name_map`` where MindSpore's names differ; two leaves whose paths join to
the same name (``{"a.b": x, "a": {"b": y}}``) are refused. The state's ``count`` is
MindSpore's ``global_step`` (a schedule is called with it), ``beta1_power``/``beta2_power``
MindSpore's, and ``m``, ``v``, ``vhat`` hold ``moment1.<name>``, ``moment2.<name>``,
``vhat.<name>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from amsgrad.adapters.mindspore_state import (
    NameMap,
    OptimizerState,
    Slot,
    checked_beta_power,
    checked_global_step,
    learning_rate_entry,
    map_names,
    read_state,
    write_state,
)
from amsgrad.adapters.optax import AmsgradV2State
from amsgrad.core.dtypes import STATE_DTYPES_TEXT, is_state_dtype

__all__ = ["load_mindspore", "save_mindspore", "tree_names"]


def _key_text(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def tree_names(params: Any) -> list[str]:
    """The name of each leaf of ``params`` (in ``jax.tree`` order): its path's keys, attribute
    names and indices joined by ``"."``. Raises ValueError when two leaves get the same name
    (``{"a.b": x, "a": {"b": y}}``, ``{"a": {1: x}, "a.1": y}``): they would be one entry of a
    checkpoint."""
    names = []
    first: dict[str, Any] = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = ".".join(_key_text(key) for key in path)
        if name in first:
            raise ValueError(
                f"params: the leaves at {jax.tree_util.keystr(first[name])} and "
                f"{jax.tree_util.keystr(path)} are both named {name!r} (their keys joined by "
                "'.'), and a checkpoint holds one entry per name; rename a key so that the names "
                "differ (a name_map cannot separate them: it maps these names)"
            )
        first[name] = path
        names.append(name)
    return names


def _slots(params: Any, name_map: NameMap, argument: str) -> tuple[list[Slot], Any]:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if not leaves:
        raise ValueError(f"{argument}: the pytree has no leaves")
    labels = tree_names(params)
    names = map_names(labels, name_map)
    slots = []
    for label, name, leaf in zip(labels, names, leaves, strict=True):
        dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
        if not is_state_dtype(dtype):
            raise TypeError(
                f"{argument}: the leaf {label!r} has dtype {dtype}, expected {STATE_DTYPES_TEXT}"
            )
        slots.append(Slot(label, name, tuple(np.shape(leaf)), dtype))
    return slots, treedef


def load_mindspore(
    checkpoint: Any, params: Any, name_map: NameMap = None
) -> tuple[Any, AmsgradV2State]:
    """The parameters and :class:`~amsgrad.optax.AmsgradV2State` saved by
    ``mindspore.save_checkpoint(optimizer)`` of an ``nn.Adam(use_amsgrad=True)``.

    checkpoint: a ``.ckpt``/``.safetensors`` path, or the dict
      :func:`amsgrad.mindspore.load_checkpoint` returns.
    params: a pytree like the parameters (its leaves give the names, shapes and dtypes; their
      values are not read).
    name_map: MindSpore's name of each leaf name where they differ: a dict (names it lacks are
      kept) or a callable.

    Returns ``(params, state)``: a pytree of the same structure with the checkpoint's values, and
    the state that ``amsgrad_v2(...).update`` continues from, as MindSpore's next step. The
    learning rate is the transformation's, not the checkpoint's (it is not compared here).
    Raises ValueError naming every missing or wrong entry (shape and dtype must be the leaf's).
    """
    slots, treedef = _slots(params, name_map, "params")
    for slot in slots:
        if jax.dtypes.canonicalize_dtype(slot.dtype) != slot.dtype:
            raise TypeError(
                f"params: the leaf {slot.label!r} is {slot.dtype}, which JAX holds only with "
                "jax_enable_x64"
            )
    state = read_state(checkpoint, slots)

    def tree(arrays: Sequence[np.ndarray]) -> Any:
        return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in arrays])

    return tree(state.params), AmsgradV2State(
        count=jnp.asarray(state.global_step, jnp.int32),
        beta1_power=jnp.asarray(state.beta1_power, jnp.float32),
        beta2_power=jnp.asarray(state.beta2_power, jnp.float32),
        m=tree(state.moment1),
        v=tree(state.moment2),
        vhat=tree(state.vhat),
    )


def _leaves(where: str, tree: Any, treedef: Any, slots: list[Slot]) -> list[np.ndarray]:
    """The leaves of ``tree`` as NumPy copies, checked against the parameters' slots."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    if structure != treedef:
        raise ValueError(f"{where}: has the structure {structure}, expected the params' {treedef}")
    out = []
    for slot, leaf in zip(slots, leaves, strict=True):
        array = np.array(leaf, copy=True)
        if array.shape != slot.shape or array.dtype != slot.dtype:
            raise ValueError(
                f"{where}: the leaf {slot.label!r} is {array.dtype} {array.shape}, expected the "
                f"parameter's {slot.dtype} {slot.shape}"
            )
        out.append(array)
    return out


def _scalar(name: str, value: Any, kind: str) -> Any:
    if "i" in kind and isinstance(value, int) and not isinstance(value, bool):
        return value  # a Python int of any size (NumPy holds none beyond 64 bits)
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in kind:
        raise ValueError(f"state: {name} is {array.dtype} {array.shape}, expected one number")
    return array.reshape(())


def save_mindspore(
    path: str | os.PathLike[str],
    params: Any,
    state: AmsgradV2State,
    name_map: NameMap = None,
    *,
    learning_rate: float | Sequence[float] | None = None,
    format: str | None = None,
) -> None:
    """Write ``params`` and ``state`` as ``mindspore.save_checkpoint(optimizer)`` of an
    ``nn.Adam(use_amsgrad=True)`` would (the names of :func:`load_mindspore`), so that
    MindSpore's ``load_param_into_net`` on its network and optimizer continues from here.

    state: the :class:`~amsgrad.optax.AmsgradV2State` (in a chain, its element of the chain's
      state); its ``m``, ``v``, ``vhat`` must have the structure, shapes and dtypes of ``params``.
    learning_rate: written as ``learning_rate`` (float32, a number or a per-step list, each
      finite and >= 0) when given; MindSpore then uses it. Left out by default (the
      transformation's lr is not known here): MindSpore keeps its own.
    format: ``"ckpt"`` or ``"safetensors"`` (default: the extension's). Written atomically.

    Everything is checked before the file is written: ``count`` must fit MindSpore's int32
    ``global_step`` ([0, 2**31 - 1]) and the beta powers be finite numbers in [0, 1] (float32),
    else ValueError naming them.
    """
    if not isinstance(state, AmsgradV2State):
        raise TypeError(
            "state: expected the AmsgradV2State of amsgrad_v2 (in a chain, its element of the "
            f"chain's state), got {type(state).__name__}"
        )
    slots, treedef = _slots(params, name_map, "params")
    count = checked_global_step(int(_scalar("count", state.count, "iu")), "state: count")
    powers = [
        checked_beta_power(_scalar(name, getattr(state, name), "f"), name, f"state: {name}")
        for name in ("beta1_power", "beta2_power")
    ]
    lr = None if learning_rate is None else learning_rate_entry([learning_rate])
    snapshot = OptimizerState(
        global_step=count,
        beta1_power=powers[0],
        beta2_power=powers[1],
        params=_leaves("params", params, treedef, slots),
        moment1=_leaves("state.m", state.m, treedef, slots),
        moment2=_leaves("state.v", state.v, treedef, slots),
        vhat=_leaves("state.vhat", state.vhat, treedef, slots),
        learning_rates={} if lr is None else {"learning_rate": lr},
    )
    write_state(path, slots, snapshot, format=format)
