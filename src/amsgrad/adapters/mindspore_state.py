"""Optimizer state in MindSpore checkpoints, for any framework: names, checks, counters.

``mindspore.save_checkpoint(optimizer)`` of ``nn.Adam(use_amsgrad=True)`` writes, in this order:

* ``global_step``: int32 ``(1,)``, the number of steps done (it indexes a per-step lr list);
* ``learning_rate``: float32 ``()`` for a constant lr (here); a per-step list is float32
  ``(steps,)``, written last; with parameter groups of their own lr also
  ``learning_rate_group_<i>``; a schedule writes its own parameters instead;
* each parameter under its name (``fc1.weight``);
* ``beta1_power``, ``beta2_power``: float32 ``()``, ONE pair for the whole optimizer, the
  products of the betas over the steps done (the next step multiplies them once more first);
* ``moment1.<name>`` for every parameter, then ``moment2.<name>``, then ``vhat.<name>``, each of
  its parameter's shape and dtype.

This module turns such a checkpoint into checked arrays for a list of parameters (a
:class:`Slot` each: the caller's label, the MindSpore name, shape and dtype), and back. It holds
what the torch and Optax adapters share (:mod:`amsgrad.adapters.torch_mindspore`,
:mod:`amsgrad.adapters.optax_mindspore`): mapping names, checking every entry before anything is
returned (all-or-nothing), reducing per-parameter counters to MindSpore's single
``global_step`` and beta powers, and comparing learning rates. It imports no framework.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amsgrad.adapters.mindspore_checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "LR_POLICIES",
    "MOMENTS",
    "NameMap",
    "OptimizerState",
    "Slot",
    "check_learning_rates",
    "checked_beta_power",
    "checked_global_step",
    "common_counters",
    "learning_rate_entry",
    "map_names",
    "read_state",
    "write_state",
]

#: MindSpore's prefixes of the three per-parameter states, in the order it writes them.
MOMENTS = ("moment1", "moment2", "vhat")
#: What ``lr_mismatch`` may be: warn (the default), raise ValueError, or say nothing.
LR_POLICIES = ("warn", "raise", "ignore")
#: A name map: a dict (names it lacks are kept) or a callable from a name to the MindSpore name.
NameMap = Mapping[str, str] | Callable[[str], str] | None

_INT32_MAX = 2**31 - 1
_MAX_LISTED = 12  # problems listed in one message
#: The entries that hold learning rates: ``learning_rate``, ``learning_rate_group_<i>``.
_LR_ENTRY = re.compile(r"learning_rate(_group_[0-9]+)?")
#: What such an entry must be (MindSpore writes a constant lr as a float32 scalar and a dynamic
#: one, a per-step list, as float32 ``(steps,)``).
_LR_EXPECTED = (
    "float32 () (a constant learning rate) or float32 (steps,) (a per-step list, as MindSpore "
    "stores a dynamic one), finite and >= 0"
)


@dataclass(frozen=True)
class Slot:
    """One parameter of an optimizer, as the checkpoint must hold it."""

    label: str  # how the caller's framework names it (a torch name, a tree path)
    name: str  # its MindSpore name in the checkpoint
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class OptimizerState:
    """A checkpoint's optimizer state, one array per slot in the slots' order."""

    global_step: int
    beta1_power: np.float32
    beta2_power: np.float32
    params: list[np.ndarray]
    moment1: list[np.ndarray]
    moment2: list[np.ndarray]
    vhat: list[np.ndarray]
    #: ``learning_rate`` and ``learning_rate_group_<i>`` entries found, copied as they are
    #: (:func:`check_learning_rates` checks them: float32 ``()`` or ``(steps,)``).
    learning_rates: dict[str, np.ndarray]


# --------------------------------------------------------------------------- names


def map_names(labels: Sequence[str], name_map: NameMap, argument: str = "name_map") -> list[str]:
    """The MindSpore name of each label: ``name_map[label]`` (the label itself when the dict
    lacks it) or ``name_map(label)``. Raises TypeError for a map of another type or a name that
    is not a non-empty string, ValueError when two labels get the same name."""
    if name_map is None:
        names = list(labels)
    elif isinstance(name_map, Mapping):
        names = [name_map.get(label, label) for label in labels]
    elif callable(name_map):
        names = [name_map(label) for label in labels]
    else:
        raise TypeError(
            f"{argument}: expected a dict or a callable from names to MindSpore names, got "
            f"{type(name_map).__name__}"
        )
    owner: dict[str, str] = {}
    for label, name in zip(labels, names, strict=True):
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{argument}: the MindSpore name of {label!r} must be a non-empty string, got "
                f"{name!r}"
            )
        if name in owner:
            raise ValueError(
                f"{argument}: {owner[name]!r} and {label!r} both map to the MindSpore name {name!r}"
            )
        owner[name] = label
    return names


# --------------------------------------------------------------------------- reading


def _tensors(checkpoint: Any, argument: str) -> Mapping[str, Any]:
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_checkpoint(checkpoint)
    if isinstance(checkpoint, Mapping):
        return checkpoint
    raise TypeError(
        f"{argument}: expected a checkpoint file's path or a dict of arrays (as "
        f"amsgrad.mindspore.load_checkpoint returns), got {type(checkpoint).__name__}"
    )


def _describe(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{dtype} {shape}"


def _array(value: Any) -> np.ndarray | None:
    try:
        array = np.asarray(value)
    except Exception:
        return None
    return array if array.dtype.kind in "biuf" else None


def _copy(value: Any) -> np.ndarray:
    """A copy of an entry as an array, whatever it holds (an object array when it is none)."""
    try:
        return np.array(value, copy=True)
    except Exception:
        return np.array(None, dtype=object)


def read_state(
    checkpoint: Any, slots: Sequence[Slot], argument: str = "checkpoint"
) -> OptimizerState:
    """Read and check the optimizer state of ``slots`` from ``checkpoint`` (a path or a dict).

    Every entry is checked before anything is returned: each parameter, ``moment1.``,
    ``moment2.`` and ``vhat.`` entry must be present with the slot's shape and dtype (no
    conversion: a different dtype could not continue bit for bit), ``beta1_power`` and
    ``beta2_power`` one float32 value in [0, 1], ``global_step`` one integer in [0, 2**31).
    Raises ValueError listing every missing or wrong entry by name (and what was expected);
    a file that cannot be read raises :class:`~amsgrad.mindspore.CheckpointError`.
    Entries for other names are ignored. The arrays returned are copies; the learning-rate
    entries are returned as they are, for :func:`check_learning_rates` to check when it
    compares them.
    """
    tensors = _tensors(checkpoint, argument)
    problems: list[str] = []
    missing: list[str] = []

    def get(name: str, expected: str) -> np.ndarray | None:
        if name not in tensors:
            missing.append(f"{name!r} ({expected})")
            return None
        array = _array(tensors[name])
        if array is None:
            problems.append(f"{name!r} is not a numeric array (expected {expected})")
        return array

    found: dict[str, list[np.ndarray]] = {kind: [] for kind in ("param", *MOMENTS)}
    for slot in slots:
        expected = _describe(slot.dtype, slot.shape)
        for kind in ("param", *MOMENTS):
            name = slot.name if kind == "param" else f"{kind}.{slot.name}"
            what = f"{expected}, " + (
                f"the parameter {slot.label!r}"
                if kind == "param"
                else f"the {kind} state of {slot.label!r}"
            )
            array = get(name, what)
            if array is None:
                continue
            if array.shape != slot.shape or array.dtype != slot.dtype:
                problems.append(
                    f"{name!r} is {_describe(array.dtype, array.shape)}, expected {what}"
                )
                continue
            found[kind].append(np.array(array, dtype=array.dtype.newbyteorder("="), copy=True))

    powers = []
    for name in ("beta1_power", "beta2_power"):
        array = get(name, "float32 (), in [0, 1]")
        if array is None:
            continue
        if array.dtype != np.float32 or array.size != 1 or array.ndim > 1:
            problems.append(
                f"{name!r} is {_describe(array.dtype, array.shape)}, expected float32 ()"
            )
        elif not 0 <= float(array.reshape(())) <= 1:
            problems.append(f"{name!r} is {float(array.reshape(()))!r}, expected a value in [0, 1]")
        else:
            powers.append(np.float32(array.reshape(())))

    step = get("global_step", "int32 (1,), >= 0")
    global_step = 0
    if step is not None:
        if step.dtype.kind not in "iu" or step.size != 1 or step.ndim > 1:
            problems.append(
                f"'global_step' is {_describe(step.dtype, step.shape)}, expected int32 (1,)"
            )
        elif not 0 <= int(step.reshape(())) <= _INT32_MAX:
            problems.append(
                f"'global_step' is {int(step.reshape(()))}, expected an int in [0, 2**31)"
            )
        else:
            global_step = int(step.reshape(()))

    if missing:
        problems.insert(0, f"missing {', '.join(missing)}")
    if problems:
        listed = problems[:_MAX_LISTED]
        if len(problems) > _MAX_LISTED:
            listed.append(f"and {len(problems) - _MAX_LISTED} more")
        raise ValueError(
            f"{argument}: not the MindSpore optimizer state of these parameters: "
            + "; ".join(listed)
        )

    learning_rates = {
        name: _copy(value) for name, value in tensors.items() if _LR_ENTRY.fullmatch(name)
    }
    return OptimizerState(
        global_step=global_step,
        beta1_power=powers[0],
        beta2_power=powers[1],
        params=found["param"],
        moment1=found["moment1"],
        moment2=found["moment2"],
        vhat=found["vhat"],
        learning_rates=learning_rates,
    )


# --------------------------------------------------------------------------- counters


def checked_global_step(step: Any, what: str = "global_step") -> int:
    """``step`` as MindSpore's ``global_step`` (int32): raises ValueError, naming it ``what``
    (``"state: count"``), unless it is an int in [0, 2**31 - 1]."""
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"{what} is {step!r}, expected an int (MindSpore's global_step)")
    if not 0 <= int(step) <= _INT32_MAX:
        raise ValueError(
            f"{what} is {int(step)}, expected an int in [0, 2**31 - 1] (MindSpore's "
            "global_step is int32)"
        )
    return int(step)


def checked_beta_power(value: Any, name: str, what: str | None = None) -> np.float32:
    """``value`` as MindSpore's float32 ``name`` (``beta1_power``, ``beta2_power``): raises
    ValueError, naming it ``what`` (default ``name``), unless it is a finite number in [0, 1]."""
    number = None
    if not isinstance(value, (bool, np.bool_, str, bytes)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not 0 <= number <= 1:
        given = repr(value) if number is None else repr(number)
        raise ValueError(
            f"{what or name} is {given}, expected a finite number in [0, 1] (MindSpore's "
            f"{name} is float32)"
        )
    return np.float32(number)


def common_counters(
    rows: Sequence[tuple[str, int, float, float]],
) -> tuple[int, np.float32, np.float32]:
    """MindSpore's single ``(global_step, beta1_power, beta2_power)`` from per-parameter
    ``(label, step, beta1_power, beta2_power)`` rows (a parameter never updated: step 0, powers
    1.0). Raises ValueError naming two parameters whose counters differ: MindSpore keeps one
    step count and one pair of beta powers for all of an optimizer's parameters, so such a
    state has no MindSpore equivalent (it arises when some parameters had no gradient at some
    step, or when groups use different betas)."""
    if not rows:
        raise ValueError("the optimizer has no parameters to save")
    first = rows[0]
    for row in rows[1:]:
        if (row[1], np.float32(row[2]), np.float32(row[3])) != (
            first[1],
            np.float32(first[2]),
            np.float32(first[3]),
        ):
            raise ValueError(
                "MindSpore keeps one global_step and one pair of beta powers for all the "
                f"optimizer's parameters, but {first[0]!r} has step {first[1]}, beta powers "
                f"({first[2]!r}, {first[3]!r}) and {row[0]!r} has step {row[1]}, beta powers "
                f"({row[2]!r}, {row[3]!r}) (a parameter that had no gradient at some step, or "
                "groups with different betas). A frozen parameter (requires_grad=False, step "
                "0) does not belong in the optimizer: give it only the trainable ones, "
                "[p for p in model.parameters() if p.requires_grad] (MindSpore's "
                "trainable_params()); otherwise save such an optimizer with state_dict()"
            )
    return first[1], np.float32(first[2]), np.float32(first[3])


# --------------------------------------------------------------------------- learning rates


def _lr_number(value: Any, where: str) -> float:
    """One learning rate: a real number, finite and >= 0 also in float32."""
    kind = getattr(getattr(value, "dtype", None), "kind", "f")  # NumPy's and JAX's; torch's: none
    number = None
    if not isinstance(value, (bool, np.bool_, str, bytes)) and kind in "iuf":
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None:
        raise TypeError(
            f"{where}: expected a number or a per-step list of numbers, got {type(value).__name__}"
        )
    with np.errstate(over="ignore"):
        stored = np.float32(number)
    if not (math.isfinite(number) and number >= 0 and np.isfinite(stored)):
        raise ValueError(
            f"{where}: expected a learning rate >= 0, finite in float32 (MindSpore's "
            f"learning_rate), got {number!r}"
        )
    return number


def _lr_array(lr: Any, where: str = "learning_rate") -> np.ndarray:
    """An lr (a number, or a per-step list: a list, tuple or 1-D array) as MindSpore stores it:
    float32 () or (n,). Raises TypeError for what is not a number, ValueError for a value not
    finite and >= 0, an empty list or an array of more dimensions (messages start ``where``)."""
    ndim = len(lr.shape) if hasattr(lr, "shape") and not isinstance(lr, (list, tuple)) else None
    if ndim is not None and ndim > 1:
        raise ValueError(
            f"{where}: expected a number or a per-step list of numbers, got an array of shape "
            f"{tuple(lr.shape)}"
        )
    if isinstance(lr, (list, tuple)) or ndim == 1:
        items = list(lr)
        if not items:
            raise ValueError(f"{where}: expected a number or a per-step list, got an empty list")
        values = [_lr_number(x, f"{where}[{i}]") for i, x in enumerate(items)]
        return np.array(values, dtype=np.float64).astype(np.float32)
    return np.asarray(np.float32(_lr_number(lr, where)))


def _stored_learning_rates(
    stored: Mapping[str, Any], source: str, argument: str
) -> dict[str, np.ndarray]:
    """The checkpoint's learning-rate entries as float32 arrays, each checked to be what
    MindSpore writes (:data:`_LR_EXPECTED`); raises ValueError naming every other one."""
    out: dict[str, np.ndarray] = {}
    problems = []
    for name, value in stored.items():
        array = _array(value)
        if array is None:
            problems.append(f"{name!r} is not a numeric array")
        elif array.dtype.newbyteorder("=") != np.float32 or array.ndim > 1 or array.size == 0:
            problems.append(f"{name!r} is {_describe(array.dtype, array.shape)}")
        else:
            flat = array.reshape(-1)
            bad = np.flatnonzero(~np.isfinite(flat) | (flat < 0))
            if bad.size == 0:
                out[name] = array.astype(np.float32)
            elif array.ndim == 0:
                problems.append(f"{name!r} is {float(flat[0])!r}")
            else:
                problems.append(
                    f"{name!r} is a list of {flat.size} holding {float(flat[bad[0]])!r} at "
                    f"[{int(bad[0])}]"
                )
    if problems:
        raise ValueError(
            f"{source}: {'; '.join(problems)}, expected {_LR_EXPECTED} (pass "
            f"{argument}='ignore' to load without comparing learning rates)"
        )
    return out


def check_learning_rates(
    stored: Mapping[str, np.ndarray],
    ours: Sequence[tuple[str, Any]],
    policy: str,
    argument: str = "lr_mismatch",
    source: str = "checkpoint",
) -> None:
    """Compare the optimizer's learning rates with a checkpoint's.

    ``ours``: ``(label, lr)`` per group of parameters (an lr is a number or a per-step list).
    Each must equal, as MindSpore stores it (float32, element by element for a list), one of the
    ``stored`` entries (``learning_rate``, ``learning_rate_group_<i>``); nothing is compared
    when the checkpoint has none (a schedule's checkpoint). ``policy``: ``"warn"`` (a
    UserWarning), ``"raise"`` (ValueError) or ``"ignore"`` (nothing is checked).

    Unless ``policy`` is ``"ignore"``, a stored entry that is not what MindSpore writes (float32
    ``()`` for a constant lr or ``(steps,)`` for a per-step list, finite and >= 0) raises
    ValueError naming it (``source``: the checkpoint's argument), whatever the policy: it cannot
    be compared.
    """
    if policy not in LR_POLICIES:
        raise ValueError(
            f"{argument}: expected one of {', '.join(map(repr, LR_POLICIES))}, got {policy!r}"
        )
    if policy == "ignore" or not stored:
        return
    stored = _stored_learning_rates(stored, source, argument)
    differ = []
    for label, lr in ours:
        mine = _lr_array(lr, label)
        if not any(
            value.shape == mine.shape and value.tobytes() == mine.tobytes()
            for value in stored.values()
        ):
            differ.append(f"{label} has lr {_lr_text(mine)}")
    if not differ:
        return
    theirs = "; ".join(f"{k} = {_lr_text(v)}" for k, v in stored.items())
    text = (
        f"the checkpoint's learning rate ({theirs}) "
        f"differs from the optimizer's: {'; '.join(differ)}. The optimizer keeps its own; "
        "MindSpore, loading this checkpoint, would use the checkpoint's, so the runs differ "
        f"(pass {argument}='ignore' when the change is intended)"
    )
    if policy == "raise":
        raise ValueError(text)
    warnings.warn(text, UserWarning, stacklevel=4)


def _lr_text(value: np.ndarray) -> str:
    if value.ndim == 0:
        return repr(float(value))
    head = ", ".join(repr(float(x)) for x in value[:3])
    return f"a list of {value.size} [{head}{', ...' if value.size > 3 else ''}]"


def learning_rate_entry(
    lrs: Sequence[Any], labels: Sequence[str] | None = None
) -> np.ndarray | None:
    """The ``learning_rate`` entry for the groups' lrs (numbers or per-step lists): float32
    ``()`` or ``(n,)`` when they all agree, None when they differ (MindSpore's per-group
    entries follow its own group numbering, which another framework's groups need not share).
    Raises TypeError for an lr that is not a number or a list of numbers, ValueError for one
    not finite and >= 0 (in float32), an empty list or a 2-D array; messages name each lr by
    ``labels`` (default ``learning_rate``)."""
    if labels is None:
        labels = ["learning_rate"] * len(lrs)
    arrays = [_lr_array(lr, label) for lr, label in zip(lrs, labels, strict=True)]
    if not arrays:
        return None
    first = arrays[0]
    if all(a.shape == first.shape and a.tobytes() == first.tobytes() for a in arrays[1:]):
        return first
    return None


# --------------------------------------------------------------------------- writing


def write_state(
    path: str | os.PathLike[str],
    slots: Sequence[Slot],
    state: OptimizerState,
    format: str | None = None,
) -> None:
    """Write ``state`` as ``mindspore.save_checkpoint(optimizer)`` does (same names, order,
    dtypes: the same bytes for the same state), atomically
    (:func:`~amsgrad.mindspore.save_checkpoint`). ``learning_rate`` is written from
    ``state.learning_rates["learning_rate"]`` when present. Raises ValueError, before writing,
    for a ``global_step`` outside int32's [0, 2**31 - 1], a beta power not a finite number in
    [0, 1], or a learning rate that is not a number or per-step list, finite and >= 0."""
    global_step = checked_global_step(state.global_step, "state: global_step")
    powers = [
        checked_beta_power(getattr(state, name), name, f"state: {name}")
        for name in ("beta1_power", "beta2_power")
    ]
    entries: dict[str, Any] = {"global_step": np.array([global_step], dtype=np.int32)}
    lr = state.learning_rates.get("learning_rate")
    lr = None if lr is None else _lr_array(lr, "state: learning_rates['learning_rate']")
    if lr is not None and lr.ndim == 0:
        entries["learning_rate"] = lr
    for slot, array in zip(slots, state.params, strict=True):
        entries[slot.name] = array
    entries["beta1_power"] = np.asarray(powers[0])
    entries["beta2_power"] = np.asarray(powers[1])
    for kind in MOMENTS:
        for slot, array in zip(slots, getattr(state, kind), strict=True):
            entries[f"{kind}.{slot.name}"] = array
    if lr is not None and lr.ndim == 1:
        entries["learning_rate"] = lr  # a list's lives in a cell MindSpore builds last
    save_checkpoint(entries, path, format=format)
