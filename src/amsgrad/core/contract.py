"""The operator's contract: argument checking and dtype resolution, shared by every backend.

Nothing here does arithmetic on the state and nothing here writes to the caller's arrays. The
functions turn the eleven user arguments into a :class:`Plan` (arrays of one dtype T plus a
``(6, rows)`` table of hyper-parameters) or raise an error that names the argument, what it got
and what was expected. The rules are those of ``SPEC.md`` (MindSpore 2.10 CPU):

* var, m, v, vhat are float16, float32 or float64 arrays of one dtype and shape; never converted.
* The target dtype T is var's. A tensor (NumPy array, 0-d included) of higher float precision
  than T would force a conversion of the state: :class:`DtypeConversionError`. Lower-precision
  float, integer and bool tensors are converted to T.
* Python floats and NumPy floating scalars are rounded to float32 first, then to T; Python ints
  and bools are rounded once, straight to T; overflow gives +-inf. Integers must fit in int64
  (:class:`ScalarRangeError` otherwise). NumPy scalars are accepted in the kinds MindSpore 2.10
  accepts (bool, int8, int16, int64, uint8, uint16, uint64, float16, float32, float64); int32,
  uint32, longlong, longdouble and complex scalars are a TypeError, as there.
* Hyper-parameters are scalars, single-element arrays, or arrays whose shape is a leading prefix
  of var's shape (applied per row).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from threading import Lock
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ARG_NAMES",
    "HYPER_NAMES",
    "STATE_NAMES",
    "DtypeConversionError",
    "ManyPlan",
    "Plan",
    "ScalarRangeError",
    "check_use_locking",
    "fast_hyper",
    "find_overlap",
    "lock_for",
    "overlap_error",
    "resolve",
    "resolve_many",
]

ARG_NAMES = (
    "var",
    "m",
    "v",
    "vhat",
    "beta1_power",
    "beta2_power",
    "lr",
    "beta1",
    "beta2",
    "epsilon",
    "grad",
)
STATE_NAMES = ("var", "m", "v", "vhat")
HYPER_NAMES = ("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon")
#: Names of the five arrays in the order the kernels number them (0..4).
ARRAY_ROLES = ("var", "m", "v", "vhat", "grad")

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
_FLOAT_RANK = {_F16: 1, _F32: 2, _F64: 3}
_STATE_DTYPES = "float16, float32 or float64"
# Rounding a float64 at or above this magnitude to float32 overflows to inf (2**128 - 2**103).
_F32_OVERFLOW = 3.4028235677973366e38


class DtypeConversionError(TypeError, RuntimeError):
    """An input would force a conversion of var, m, v or vhat.

    MindSpore 2.10 raises TypeError here and documents RuntimeError; this class is both.
    """


class ScalarRangeError(ValueError, RuntimeError):
    """An integer hyper-parameter outside the int64 range.

    MindSpore 2.10 raises RuntimeError (its int64 conversion fails); this class is also a
    ValueError, which is what the mistake is.
    """


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# NumPy scalar types MindSpore 2.10 takes as scalars (measured); others are a TypeError there.
_NP_SCALAR_TYPES = frozenset(
    (
        np.bool_,
        np.int8,
        np.int16,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
)


class Plan(NamedTuple):
    """A checked call: everything a backend needs, all of dtype ``dtype``.

    ``hyper`` has shape ``(6, rows)`` in the order of :data:`HYPER_NAMES`; row r applies to the
    flat elements ``[r*L, (r+1)*L)`` of the C-ordered state, with ``L = var.size // rows``.
    ``grad`` is the caller's array when no conversion was needed, else a converted copy.
    """

    dtype: np.dtype
    var: np.ndarray
    m: np.ndarray
    v: np.ndarray
    vhat: np.ndarray
    grad: np.ndarray
    hyper: np.ndarray
    rows: int


class ManyPlan(NamedTuple):
    """A checked multi-tensor call: K quintuples of arrays and one ``(6, 1)`` hyper table."""

    dtype: np.dtype
    vars: list[np.ndarray]
    ms: list[np.ndarray]
    vs: list[np.ndarray]
    vhats: list[np.ndarray]
    grads: list[np.ndarray]
    hyper: np.ndarray


# --------------------------------------------------------------------------- descriptions


def _ordinal(position: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(position if position < 20 else position % 10, "th")
    return f"{position}{suffix}"


def _label(name: str) -> str:
    """``lr (the 7th input)``: how messages name an argument of the operator."""
    if name in ARG_NAMES:
        return f"{name} (the {_ordinal(ARG_NAMES.index(name) + 1)} input)"
    return name


def _describe(value: Any) -> str:
    """A short description of what a caller passed, for error messages."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, np.generic):
        return f"a NumPy {value.dtype} scalar"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def overlap_error(first: str, second: str) -> ValueError:
    """The error for two state/gradient arrays that share memory."""
    return ValueError(
        f"{first} and {second} share memory: var, m, v, vhat and grad must be distinct, "
        "non-overlapping arrays (the update writes four of them in place)"
    )


# --------------------------------------------------------------------------- checks


def check_use_locking(use_locking: Any) -> bool:
    """``use_locking`` must be a Python bool (NumPy's bool_ is refused, as by MindSpore)."""
    if isinstance(use_locking, bool):
        return use_locking
    raise TypeError(f"use_locking: expected a Python bool, got {_describe(use_locking)}")


def _check_state(
    name: str, array: Any, dtype: np.dtype | None, shape: tuple[int, ...] | None
) -> None:
    """var, m, v, vhat: a writeable float array of var's dtype and shape."""
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"{_label(name)}: expected a NumPy array of dtype {_STATE_DTYPES}, "
            f"got {_describe(array)}"
        )
    if array.dtype not in _FLOAT_RANK:
        raise TypeError(
            f"{_label(name)}: expected dtype {_STATE_DTYPES}, got an array of dtype {array.dtype}"
        )
    if dtype is not None and array.dtype != dtype:
        raise DtypeConversionError(
            f"{_label(name)}: has dtype {array.dtype} but var has dtype {dtype}; var, m, v and "
            "vhat must share one dtype (data type conversion of a variable is not supported)"
        )
    if shape is not None and array.shape != shape:
        raise ValueError(f"{_label(name)}: expected var's shape {shape}, got shape {array.shape}")
    if not array.flags.writeable:
        raise ValueError(f"{_label(name)}: the array is read-only; the update writes it in place")
    if not array.flags.c_contiguous and _may_overlap_itself(array):
        raise ValueError(
            f"{_label(name)}: its elements overlap in memory (strides {array.strides} for shape "
            f"{array.shape}); the update writes every element, so each must have its own memory"
        )


def _may_overlap_itself(array: np.ndarray) -> bool:
    """True unless the strides prove that no two elements share memory.

    Axes of length > 1, taken by increasing absolute stride, must each step over everything the
    smaller ones span. Layouts that interleave without overlapping fail this test too; no
    ordinary slicing of an array produces one.
    """
    if array.size <= 1:
        return False
    span = array.itemsize
    for length, stride in sorted(
        ((n, abs(s)) for n, s in zip(array.shape, array.strides, strict=True) if n > 1),
        key=lambda axis: axis[1],
    ):
        if stride < span:
            return True
        span = stride * (length - 1) + span
    return False


def _tensor_kind_ok(dtype: np.dtype) -> bool:
    return dtype in _FLOAT_RANK or dtype.kind in "biu"


def _check_tensor_dtype(name: str, array: np.ndarray, dtype: np.dtype) -> None:
    """A grad or hyper-parameter tensor: real dtype, not above var's float precision."""
    if not _tensor_kind_ok(array.dtype):
        raise TypeError(
            f"{_label(name)}: expected a tensor of dtype float16, float32, float64, an integer "
            f"or bool dtype, got an array of dtype {array.dtype}"
        )
    if _FLOAT_RANK.get(array.dtype, 0) > _FLOAT_RANK[dtype]:
        raise DtypeConversionError(
            f"{_label(name)}: has dtype {array.dtype}, higher than var's dtype {dtype}; it would "
            "force a conversion of var, m, v and vhat, which is not supported"
        )


def _check_grad(grad: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """grad: an array of var's shape; returns it as dtype T (a copy only when converted)."""
    if not isinstance(grad, np.ndarray):
        if isinstance(grad, (bool, int, float)) or type(grad) in _NP_SCALAR_TYPES:
            raise ValueError(
                f"{_label('grad')}: expected a NumPy array of var's shape {shape}, got "
                f"{_describe(grad)} (a scalar is not a gradient of that shape)"
            )
        raise TypeError(
            f"{_label('grad')}: expected a NumPy array of var's shape {shape}, got "
            f"{_describe(grad)}"
        )
    _check_tensor_dtype("grad", grad, dtype)
    if grad.shape != shape:
        raise ValueError(f"{_label('grad')}: expected var's shape {shape}, got shape {grad.shape}")
    if grad.dtype != dtype:
        return grad.astype(dtype)
    return grad


def _integer_to_dtype(name: str, value: int, dtype: np.dtype) -> np.ndarray:
    """An integer within int64, rounded once to ``dtype`` (+-inf beyond its range)."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ScalarRangeError(
            f"{_label(name)}: the integer {value} does not fit in int64 "
            f"([{_INT64_MIN}, {_INT64_MAX}]); pass a float instead"
        )
    # int64 -> float32/float64 casts are correctly rounded; an integer that float64 cannot hold
    # exactly (above 2**53) overflows float16 anyway, so the float64 step is exact for it.
    source = np.asarray(value, dtype=np.int64) if dtype is not _F16 else np.asarray(float(value))
    with np.errstate(over="ignore"):
        return source.astype(dtype)


def scalar_to_dtype(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """Convert a scalar hyper-parameter to a 0-d array of ``dtype`` by the SPEC's rules.

    bool and integers are rounded once to T; floats go through float32 first.
    """
    if isinstance(value, np.generic) and type(value) not in _NP_SCALAR_TYPES:
        raise TypeError(
            f"{_label(name)}: expected a float, int, bool, a NumPy bool, int8, int16, int64, "
            "uint8, uint16, uint64, float16, float32 or float64 scalar, or a NumPy array, got "
            f"{_describe(value)} (MindSpore 2.10 refuses this scalar type too)"
        )
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(1 if value else 0, dtype=dtype)
    if isinstance(value, (int, np.integer)):
        return _integer_to_dtype(name, int(value), dtype)
    if type(value) is float and -_F32_OVERFLOW < value < _F32_OVERFLOW:
        return np.asarray(np.float32(value), dtype=dtype)  # the common case, no overflow
    if isinstance(value, (float, np.floating)):
        with np.errstate(over="ignore"):
            return np.asarray(value).astype(np.float32).astype(dtype)
    raise TypeError(
        f"{_label(name)}: expected a float, int, bool, NumPy scalar or NumPy array of a real "
        f"dtype, got {_describe(value)}"
    )


def _hyper_value(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """One hyper-parameter as an array of dtype T: 0-d (a scalar) or of a prefix of ``shape``."""
    if not isinstance(value, np.ndarray):
        return scalar_to_dtype(name, value, dtype)
    _check_tensor_dtype(name, value, dtype)
    if value.size == 1:
        return value.reshape(()).astype(dtype)
    if value.shape != shape[: value.ndim]:
        raise ValueError(
            f"{_label(name)}: expected a scalar, a single-element array or an array whose shape "
            f"is a leading prefix of var's shape {shape} (one value per row), got shape "
            f"{value.shape}"
        )
    return value.astype(dtype)


def _hyper_table(values: Sequence[np.ndarray], shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Stack six hyper-parameters (0-d or prefix-shaped) into a ``(6, rows)`` table."""
    depth = max(value.ndim for value in values)
    if depth == 0:
        return np.stack(values).reshape(6, 1), 1
    rows_shape = shape[:depth]
    rows = int(np.prod(rows_shape, dtype=np.int64))
    table = np.empty((6, rows), dtype=values[0].dtype)
    for k, value in enumerate(values):
        if value.ndim == 0:
            table[k] = value
        elif value.ndim == depth:
            table[k] = value.reshape(rows)
        else:
            padded = value.reshape(value.shape + (1,) * (depth - value.ndim))
            table[k] = np.broadcast_to(padded, rows_shape).reshape(rows)
    return table, rows


def fast_hyper(values: Sequence[Any], dtype: np.dtype) -> np.ndarray | None:
    """The common case, six Python floats in float32 range: one conversion for all of them.

    None when a value is anything else or ``dtype`` is not a state dtype (float16/32/64).
    """
    if dtype not in _FLOAT_RANK:
        return None
    for value in values:
        if type(value) is not float or not -_F32_OVERFLOW < value < _F32_OVERFLOW:
            return None
    table = np.array(values, dtype=np.float32)
    if dtype is not _F32:
        table = table.astype(dtype)
    return table.reshape(6, 1)


def resolve(
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
) -> Plan:
    """Check the eleven arguments of the operator and resolve them to one dtype.

    Raises TypeError, :class:`DtypeConversionError` or ValueError naming the argument. Does not
    check memory overlap between arrays: backends report it (see :func:`overlap_error`), before
    they write anything.
    """
    _check_state("var", var, None, None)
    dtype, shape = var.dtype, var.shape
    _check_state("m", m, dtype, shape)
    _check_state("v", v, dtype, shape)
    _check_state("vhat", vhat, dtype, shape)
    hypers = (beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    table = fast_hyper(hypers, dtype)
    rows = 1
    if table is None:
        values = [
            _hyper_value(name, value, dtype, shape)
            for name, value in zip(HYPER_NAMES, hypers, strict=True)
        ]
        table, rows = _hyper_table(values, shape)
    grad = _check_grad(grad, dtype, shape)
    return Plan(dtype, var, m, v, vhat, grad, table, rows)


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # NumPy < 2
        byte_bounds = np.byte_bounds  # type: ignore[attr-defined]
    low, high = byte_bounds(array)
    return int(low), int(high)


def find_overlap(arrays: Sequence[np.ndarray]) -> tuple[int, int] | None:
    """A pair ``(i, j)``, ``i < j``, of arrays that share memory (exactly), or None.

    Sorts the arrays by their byte bounds and tests only pairs whose bounds intersect, so that
    many distinct arrays cost O(n log n).
    """
    spans = sorted(
        (*_byte_bounds(array), index) for index, array in enumerate(arrays) if array.size
    )
    for position, (_, high, i) in enumerate(spans):
        for low_j, _, j in spans[position + 1 :]:
            if low_j >= high:
                break
            if np.shares_memory(arrays[i], arrays[j]):
                return (i, j) if i < j else (j, i)
    return None


def _list_arg(name: str, value: Any, length: int | None) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a list or tuple of NumPy arrays, got {_describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name}: expected {length} arrays (as many as vars), got {len(value)}")
    return list(value)


def resolve_many(
    vars: Any,
    ms: Any,
    vs: Any,
    vhats: Any,
    beta1_power: Any,
    beta2_power: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    epsilon: Any,
    grads: Any,
) -> ManyPlan:
    """Check a multi-tensor call: lists of arrays of one dtype, one set of scalar hyper-parameters.

    Each tensor may have its own shape. Hyper-parameters must be scalars or single-element
    arrays (per-row batches are a single-tensor feature). Errors name the list and the index.
    """
    var_list = _list_arg("vars", vars, None)
    count = len(var_list)
    lists = [var_list] + [
        _list_arg(name, value, count)
        for name, value in (("ms", ms), ("vs", vs), ("vhats", vhats), ("grads", grads))
    ]
    if count == 0:
        dtype = _F32
    else:
        _check_state("vars[0]", var_list[0], None, None)
        dtype = var_list[0].dtype
    hypers = (beta1_power, beta2_power, lr, beta1, beta2, epsilon)
    table = fast_hyper(hypers, dtype)
    if table is None:
        values = []
        for name, value in zip(HYPER_NAMES, hypers, strict=True):
            if isinstance(value, np.ndarray) and value.size != 1:
                raise ValueError(
                    f"{_label(name)}: the multi-tensor call takes a scalar or a single-element "
                    f"array, got shape {value.shape}"
                )
            values.append(_hyper_value(name, value, dtype, ()))
        table = np.stack(values).reshape(6, 1)
    grads_out = []
    for i in range(count):
        var_i = var_list[i]
        _check_state(f"vars[{i}]", var_i, dtype, None)
        for list_name, items in zip(("ms", "vs", "vhats"), lists[1:4], strict=True):
            _check_state(f"{list_name}[{i}]", items[i], dtype, var_i.shape)
        grad_i = lists[4][i]
        try:
            grads_out.append(_check_grad(grad_i, dtype, var_i.shape))
        except (TypeError, ValueError) as error:
            raise type(error)(f"grads[{i}]: {error}") from None
    return ManyPlan(dtype, lists[0], lists[1], lists[2], lists[3], grads_out, table)


# --------------------------------------------------------------------------- locking

# Locks by id of the array that owns the memory; an entry is dropped when that array dies
# (ndarrays are weak-referenceable but not hashable).
_locks: dict[int, Lock] = {}
_locks_guard = Lock()


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory of ``array`` (views of one buffer share one lock)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _forget(key: int) -> None:
    with _locks_guard:
        _locks.pop(key, None)


def lock_for(var: np.ndarray) -> Lock:
    """The lock of one variable: calls on the same var (or views of it) share it."""
    owner = _owner(var)
    key = id(owner)
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = Lock()
            weakref.finalize(owner, _forget, key)
        return lock
