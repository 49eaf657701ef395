"""The operator's contract: argument checking and dtype resolution, shared by every backend.

Nothing here does arithmetic on the state and nothing here writes to the caller's arrays. The
rules are those of ``SPEC.md`` (MindSpore 2.10 CPU):

* var, m, v, vhat are float16, float32 or float64 arrays of one dtype and shape; never converted.
* The target dtype T is var's. A tensor (an array, 0-d included) of higher float precision than
  T would force a conversion of the state: :class:`DtypeConversionError`. Lower-precision float,
  integer and bool tensors are converted to T.
* Python floats and NumPy floating scalars are rounded to float32 first, then to T; Python ints
  and bools are rounded once, straight to T; overflow gives +-inf. Integers must fit in int64
  (:class:`ScalarRangeError` otherwise). NumPy scalars are accepted in the kinds MindSpore 2.10
  accepts (bool, int8, int16, int64, uint8, uint16, uint64, float16, float32, float64); int32,
  uint32, longlong, longdouble and complex scalars are a TypeError, as there. A weakly-typed
  traced scalar (a Python scalar that a tracer such as ``jax.jit`` turned into an array) keeps
  the Python scalar's rule.
* Hyper-parameters are scalars, single-element arrays, or arrays whose shape is a leading prefix
  of var's shape (applied per row).

Two layers. The *metadata* checks (:func:`check_state_meta`, :func:`tensor_dtype_to`,
:func:`hyper_shape`, :func:`check_grad_meta`, :func:`scalar_to_dtype` and the ``*_type_error``
builders) decide from an argument's dtype, shape and kind alone, so every backend (NumPy here,
JAX in :mod:`amsgrad.adapters.jax`) raises the same exception with the same message for the same
mistake. :func:`resolve` and :func:`resolve_many` apply them to NumPy arrays and turn the eleven
arguments into a :class:`Plan` (arrays of dtype T plus a ``(6, rows)`` hyper-parameter table).
The optimizer adapters' own checks are in :mod:`amsgrad.core.optimizers`, memory overlap in
:mod:`amsgrad.core.overlap`, ``use_locking``'s locks in :mod:`amsgrad.core.locks` (re-exported
here), the dtype table in :mod:`amsgrad.core.dtypes`.

Messages name the argument with :func:`label` (``lr (the 7th input)``) and say what was expected
and what was got (:func:`describe`); they are built only when an error is raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from amsgrad.core.dtypes import (
    F16,
    F32,
    F32_OVERFLOW,
    INT64_MAX,
    INT64_MIN,
    NP_SCALAR_TYPES,
    STATE_DTYPES_TEXT,
    TENSOR_DTYPES_TEXT,
    float_rank,
    is_state_dtype,
    is_tensor_dtype,
)
from amsgrad.core.locks import lock_for, lock_many
from amsgrad.core.overlap import (
    OverlapUndecidedError,
    byte_bounds,
    find_overlap,
    may_overlap_itself,
    overlap_error,
    undecided_error,
)

__all__ = [
    "ARG_NAMES",
    "ARRAY_ROLES",
    "HYPER_NAMES",
    "OPTIMIZER_NAMES",
    "STATE_NAMES",
    "DtypeConversionError",
    "Hyper",
    "ManyPlan",
    "OverlapUndecidedError",
    "Plan",
    "ScalarRangeError",
    "check_grad_meta",
    "check_state_meta",
    "check_use_locking",
    "describe",
    "fast_hyper",
    "find_overlap",
    "grad_type_error",
    "hyper_shape",
    "is_scalar",
    "label",
    "lock_for",
    "lock_many",
    "many_names",
    "overlap_error",
    "refused_scalar_error",
    "resolve",
    "resolve_many",
    "scalar_to_dtype",
    "separate_grads",
    "state_type_error",
    "tensor_dtype_to",
    "undecided_error",
]


class Hyper(NamedTuple):
    """The six hyper-parameters of the operator, in its argument order (any values: scalars,
    arrays or converted arrays of dtype T, as the holder needs)."""

    beta1_power: Any
    beta2_power: Any
    lr: Any
    beta1: Any
    beta2: Any
    epsilon: Any


#: The four state arrays, updated in place (NumPy) or returned anew (JAX).
STATE_NAMES = ("var", "m", "v", "vhat")
#: The six hyper-parameters, in argument order (the fields of :class:`Hyper`).
HYPER_NAMES: tuple[str, ...] = Hyper._fields
#: The operator's eleven arguments, in order; messages number them from 1 (:func:`label`).
ARG_NAMES: tuple[str, ...] = (*STATE_NAMES, *HYPER_NAMES, "grad")
#: Names of the five arrays in the order the kernels number them (0..4).
ARRAY_ROLES: tuple[str, ...] = (*STATE_NAMES, "grad")
#: How the optimizer adapters' own signatures name (lr, beta1, beta2, eps) by default.
OPTIMIZER_NAMES = ("lr", "beta1", "beta2", "eps")


class DtypeConversionError(TypeError, RuntimeError):
    """An input would force a conversion of var, m, v or vhat.

    MindSpore 2.10 raises TypeError here and documents RuntimeError; this class is both.
    """


class ScalarRangeError(ValueError, RuntimeError):
    """An integer hyper-parameter outside the int64 range.

    MindSpore 2.10 raises RuntimeError (its int64 conversion fails); this class is also a
    ValueError, which is what the mistake is.
    """


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


def label(name: str) -> str:
    """How messages name an argument: ``lr (the 7th input)`` for the operator's eleven
    (:data:`ARG_NAMES`), any other name (``vars[2]``, ``b1``) as it is."""
    if name in ARG_NAMES:
        return f"{name} (the {_ordinal(ARG_NAMES.index(name) + 1)} input)"
    return name


def describe(value: Any) -> str:
    """A short description of what a caller passed, for messages: ``an array of dtype float32
    and shape (2,)``, ``a NumPy int32 scalar``, ``str '0.1'`` (type and a repr cut to 40)."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, np.generic):
        # The type's own name: np.longlong is not np.int64 although both are 64-bit integers
        return f"a NumPy {type(value).__name__} scalar"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


# --------------------------------------------------------------------------- metadata checks
#
# Each backend decides the *kind* of an argument (one of its arrays, or not) and reads an
# array's dtype (as a NumPy dtype) and shape (a tuple); everything else is decided here.


def check_use_locking(use_locking: Any) -> bool:
    """``use_locking`` must be a Python bool (NumPy's bool_ is refused, as by MindSpore)."""
    if isinstance(use_locking, bool):
        return use_locking
    raise TypeError(f"use_locking: expected a Python bool, got {describe(use_locking)}")


def state_type_error(name: str, value: Any) -> TypeError:
    """The error for a var, m, v or vhat that is not an array of the backend."""
    return TypeError(
        f"{label(name)}: expected an array of dtype {STATE_DTYPES_TEXT}, got {describe(value)}"
    )


def check_state_meta(
    name: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    var_dtype: np.dtype | None = None,
    var_shape: tuple[int, ...] | None = None,
) -> None:
    """var, m, v, vhat by dtype and shape: a state dtype (float16/32/64), var's dtype, var's shape.

    Pass ``var_dtype``/``var_shape`` None to check var itself (or to skip the shape). Raises
    TypeError (not float16/32/64), :class:`DtypeConversionError` (another dtype than var's) or
    ValueError (another shape).
    """
    if not is_state_dtype(dtype):
        if not dtype.isnative and is_state_dtype(dtype.newbyteorder("=")):
            raise TypeError(
                f"{label(name)}: expected dtype {STATE_DTYPES_TEXT} in the machine's byte "
                f"order, got an array of dtype {dtype.str} (byte-swapped); the update writes it "
                "in place, so it cannot be converted: pass "
                f"{name}.astype({name}.dtype.newbyteorder('=')) and keep that copy as the state"
            )
        raise TypeError(
            f"{label(name)}: expected dtype {STATE_DTYPES_TEXT}, got an array of dtype {dtype}"
        )
    if var_dtype is not None and dtype != var_dtype:
        raise DtypeConversionError(
            f"{label(name)}: has dtype {dtype} but var has dtype {var_dtype}; var, m, v and "
            "vhat must share one dtype (data type conversion of a variable is not supported)"
        )
    if var_shape is not None and shape != var_shape:
        raise ValueError(f"{label(name)}: expected var's shape {var_shape}, got shape {shape}")


_NO_CAST: tuple[np.dtype, ...] = ()
#: float16's largest finite value and smallest normal one: a float32 between them (or 0) rounds
#: to float16 with no overflow and no underflow; one of magnitude at most F16_ZERO rounds to 0.
F16_MAX, F16_NORMAL, F16_ZERO = 65504.0, 2.0**-14, 2.0**-25


def tensor_dtype_to(
    name: str, dtype: np.dtype, target: np.dtype, weak: bool = False
) -> tuple[np.dtype, ...]:
    """How a grad or hyper-parameter tensor of ``dtype`` becomes the compute dtype ``target``.

    Returns the dtypes to cast through, in order: ``()`` when it already is ``target``,
    ``(target,)`` for a lower-precision float, integer or bool tensor, ``(float32, target)`` for
    a weakly-typed float (a traced Python float keeps the Python-float rule). Raises TypeError for
    any other dtype (complex, object, bfloat16, ...) and :class:`DtypeConversionError` for a float
    of higher precision than ``target``.
    """
    if dtype == target and not weak:
        return _NO_CAST
    if not dtype.isnative:  # a byte-swapped grad or hyper-parameter is read, so converted
        return tensor_dtype_to(name, dtype.newbyteorder("="), target, weak) or (target,)
    if not is_tensor_dtype(dtype):
        raise TypeError(
            f"{label(name)}: expected a tensor of dtype {TENSOR_DTYPES_TEXT}, got an array of "
            f"dtype {dtype}"
        )
    rank = float_rank(dtype)
    if weak and rank:
        return (F32, target)
    if rank > float_rank(target):
        raise DtypeConversionError(
            f"{label(name)}: has dtype {dtype}, higher than var's dtype {target}; it would "
            "force a conversion of var, m, v and vhat, which is not supported"
        )
    return (target,)


def hyper_shape(name: str, shape: tuple[int, ...], var_shape: tuple[int, ...]) -> int:
    """How a hyper-parameter array of ``shape`` applies to var: 0 for a single element (a scalar),
    else the number of leading axes of var's shape it spans (one value per row of them).

    Raises ValueError unless ``shape`` is a leading prefix of ``var_shape``.
    """
    if math.prod(shape) == 1:
        return 0
    if shape != var_shape[: len(shape)]:
        raise ValueError(
            f"{label(name)}: expected a scalar, a single-element array or an array whose shape "
            f"is a leading prefix of var's shape {var_shape} (one value per row), got shape "
            f"{shape}"
        )
    return len(shape)


def is_scalar(value: Any) -> bool:
    """A Python bool, int or float, or a NumPy scalar of a kind MindSpore takes."""
    return isinstance(value, (bool, int, float)) or type(value) in NP_SCALAR_TYPES


def grad_type_error(value: Any, var_shape: tuple[int, ...], name: str = "grad") -> Exception:
    """The error for a grad that is not an array of the backend: ValueError for a scalar (it has
    no shape to match var's), TypeError for anything else."""
    text = f"{label(name)}: expected an array of var's shape {var_shape}, got {describe(value)}"
    if is_scalar(value):
        return ValueError(f"{text} (a scalar is not a gradient of that shape)")
    return TypeError(text)


def check_grad_meta(
    dtype: np.dtype,
    shape: tuple[int, ...],
    target: np.dtype,
    var_shape: tuple[int, ...],
    name: str = "grad",
) -> tuple[np.dtype, ...]:
    """grad by dtype and shape: a tensor dtype not above T, and var's shape.

    Returns the casts to T as :func:`tensor_dtype_to` does; raises its errors, or ValueError for
    another shape than var's.
    """
    casts = tensor_dtype_to(name, dtype, target)
    if shape != var_shape:
        raise ValueError(f"{label(name)}: expected var's shape {var_shape}, got shape {shape}")
    return casts


def _convert(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array.astype(dtype)`` where rounding is the rule: a value beyond ``dtype``'s range
    becomes +-inf and a tiny one 0 (SPEC), with no warning and no FloatingPointError whatever
    ``np.errstate`` or the warnings filters say."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return array.astype(dtype)


def _integer_to_dtype(name: str, value: int, dtype: np.dtype) -> np.ndarray:
    """An integer within int64, rounded once to ``dtype`` (+-inf beyond its range)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ScalarRangeError(
            f"{label(name)}: the integer {value} does not fit in int64 "
            f"([{INT64_MIN}, {INT64_MAX}]); pass a float instead"
        )
    # int64 -> float32/float64 casts are correctly rounded; an integer that float64 cannot hold
    # exactly (above 2**53) overflows float16 anyway, so the float64 step is exact for it.
    source = np.asarray(value, dtype=np.int64) if dtype is not F16 else np.asarray(float(value))
    return _convert(source, dtype)


def refused_scalar_error(shown: str, value: Any) -> TypeError:
    """The error for a NumPy scalar of a kind MindSpore 2.10 refuses (``shown`` names it)."""
    note = ""
    if type(value) in (np.longlong, np.ulonglong) and type(value) not in NP_SCALAR_TYPES:
        note = (
            f"; np.{type(value).__name__} is a type of its own, distinct from np.int64 and "
            "np.uint64 even where it has the same size: pass int(value)"
        )
    return TypeError(
        f"{shown}: expected a float, int, bool, a NumPy bool, int8, int16, int64, uint8, "
        "uint16, uint64, float16, float32 or float64 scalar, or an array, got "
        f"{describe(value)} (MindSpore 2.10 refuses this scalar type too{note})"
    )


def scalar_to_dtype(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """Convert a scalar hyper-parameter to a 0-d NumPy array of ``dtype`` by the SPEC's rules.

    The one scalar rule of every backend: bool and integers (within int64, else
    :class:`ScalarRangeError`) are rounded once to ``dtype``; Python floats and NumPy floating
    scalars go through float32 first. Anything that is not a scalar MindSpore takes (a string,
    None, a list, a complex, a NumPy int32 scalar, ...) is a TypeError.
    """
    if isinstance(value, np.generic) and type(value) not in NP_SCALAR_TYPES:
        raise refused_scalar_error(label(name), value)
    if isinstance(value, (bool, np.bool_)):
        return np.asarray(1 if value else 0, dtype=dtype)
    if isinstance(value, (int, np.integer)):
        return _integer_to_dtype(name, int(value), dtype)
    if type(value) is float and -F32_OVERFLOW < value < F32_OVERFLOW and dtype is not F16:
        return np.asarray(np.float32(value), dtype=dtype)  # the common case, exact or rounded
    if isinstance(value, (float, np.floating)):
        return _convert(_convert(np.asarray(value), F32), dtype)
    raise TypeError(
        f"{label(name)}: expected a float, int, bool, NumPy scalar or an array of a real "
        f"dtype, got {describe(value)}"
    )


# --------------------------------------------------------------------------- NumPy arguments


def _check_state(
    name: str, array: Any, dtype: np.dtype | None, shape: tuple[int, ...] | None
) -> np.ndarray:
    """var, m, v, vhat: a writeable ndarray of var's dtype and shape, no element overlapping.

    Returns it as a plain ndarray (a view of the same memory for a subclass: see :func:`_plain`).
    """
    if type(array) is not np.ndarray:
        if not isinstance(array, np.ndarray):
            raise state_type_error(name, array)
        array = _plain(name, array)
    if dtype is None or array.dtype != dtype or array.shape != shape:
        check_state_meta(name, array.dtype, array.shape, dtype, shape)
    if not array.flags.writeable:
        raise ValueError(f"{label(name)}: the array is read-only; the update writes it in place")
    if not array.flags.c_contiguous and may_overlap_itself(array):
        raise ValueError(
            f"{label(name)}: its elements overlap in memory (strides {array.strides} for shape "
            f"{array.shape}); the update writes every element, so each must have its own memory"
        )
    return array


def _plain(name: str, array: np.ndarray) -> np.ndarray:
    """An ndarray subclass (``np.matrix``, ``np.memmap``, ...) as the plain ndarray of the same
    memory: only its data counts. A masked array is refused: its mask would be ignored."""
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(
            f"{label(name)}: expected an ndarray, got a masked array (its mask would be "
            f"ignored); pass {name}.filled(...) or {name}.data"
        )
    return np.asarray(array)


def _check_grad(
    grad: Any, dtype: np.dtype, shape: tuple[int, ...], name: str = "grad"
) -> np.ndarray:
    """grad: an ndarray of var's shape; returns it as dtype T (a copy only when converted)."""
    if type(grad) is not np.ndarray:
        if not isinstance(grad, np.ndarray):
            raise grad_type_error(grad, shape, name)
        grad = _plain(name, grad)
    if grad.dtype == dtype and grad.shape == shape:
        return grad
    if check_grad_meta(grad.dtype, grad.shape, dtype, shape, name):
        return _convert(grad, dtype)
    return grad


def _hyper_value(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """One hyper-parameter as an array of dtype T: 0-d (a scalar) or of a prefix of ``shape``."""
    if not isinstance(value, np.ndarray):
        return scalar_to_dtype(name, value, dtype)
    if type(value) is not np.ndarray:
        value = _plain(name, value)
    tensor_dtype_to(name, value.dtype, dtype)
    if hyper_shape(name, value.shape, shape) == 0:
        return _convert(value.reshape(()), dtype)
    return _convert(value, dtype)


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

    ``values``: the six hyper-parameters (a :class:`Hyper` or a plain tuple in its order).
    Returns their ``(6, 1)`` table of ``dtype``; None when a value is anything else or
    ``dtype`` is not a state dtype (float16/32/64).
    """
    if dtype == F16:  # ==: an unpickled array's dtype is an equal object, not NumPy's own
        return _fast_hyper_f16(values)
    if not is_state_dtype(dtype):
        return None
    for value in values:
        if type(value) is not float or not -F32_OVERFLOW < value < F32_OVERFLOW:
            return None
    table = np.array(values, dtype=np.float32)
    if dtype is not F32:
        table = table.astype(dtype)  # float32 -> float64 is exact
    return table.reshape(6, 1)


def _fast_hyper_f16(values: Sequence[Any]) -> np.ndarray | None:
    """:func:`fast_hyper` for float16, where rounding may overflow to inf or underflow to 0.

    Values that float16 rounds to zero (magnitude at most 2**-25, as eps=1e-8) are zeroed here
    (exact: float32 keeps them above 0 and rounding to float16 gives the signed zero), so that
    the common cases need no ``np.errstate``; only a value beyond float16's range or among its
    subnormals pays for it.
    """
    cleaned = []
    quiet = True
    for value in values:
        if type(value) is not float or not -F32_OVERFLOW < value < F32_OVERFLOW:
            return None
        magnitude = abs(value)
        if magnitude <= F16_ZERO:
            value = math.copysign(0.0, value)
        elif not F16_NORMAL <= magnitude <= F16_MAX:
            quiet = False
        cleaned.append(value)
    table = np.array(cleaned, dtype=np.float32)
    return (table.astype(F16) if quiet else _convert(table, F16)).reshape(6, 1)


def resolve(var: Any, m: Any, v: Any, vhat: Any, hypers: Sequence[Any], grad: Any) -> Plan:
    """Check the eleven arguments of the operator (NumPy) and resolve them to one dtype T.

    ``hypers``: the six hyper-parameters in the order of :data:`HYPER_NAMES` (a :class:`Hyper`
    or any sequence).

    var, m, v, vhat: ndarrays of float16, float32 or float64; T is var's dtype. Raises TypeError,
    :class:`DtypeConversionError` or ValueError naming the argument. Does not check memory
    overlap between arrays: backends report it (see :func:`overlap_error`), before they write
    anything.
    """
    var = _check_state("var", var, None, None)
    dtype, shape = var.dtype, var.shape
    m = _check_state("m", m, dtype, shape)
    v = _check_state("v", v, dtype, shape)
    vhat = _check_state("vhat", vhat, dtype, shape)
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


def _list_arg(name: str, value: Any, length: int | None) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a list or tuple of NumPy arrays, got {describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name}: expected {length} arrays (as many as vars), got {len(value)}")
    return list(value)


def resolve_many(
    vars: Any, ms: Any, vs: Any, vhats: Any, hypers: Sequence[Any], grads: Any
) -> ManyPlan:
    """Check a multi-tensor call: lists of arrays of one dtype, one set of scalar hyper-parameters
    (``hypers``, in the order of :data:`HYPER_NAMES`).

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
        dtype = F32
    else:
        _check_state("vars[0]", var_list[0], None, None)
        dtype = var_list[0].dtype
    table = fast_hyper(hypers, dtype)
    if table is None:
        values = []
        for name, value in zip(HYPER_NAMES, hypers, strict=True):
            if isinstance(value, np.ndarray) and value.size != 1:
                raise ValueError(
                    f"{label(name)}: the multi-tensor call takes a scalar or a single-element "
                    f"array, got shape {value.shape}"
                )
            values.append(_hyper_value(name, value, dtype, ()))
        table = np.stack(values).reshape(6, 1)
    out: list[list[np.ndarray]] = [[], [], [], [], []]
    for i in range(count):
        var_i = _check_state(f"vars[{i}]", var_list[i], dtype, None)
        out[0].append(var_i)
        for k in (1, 2, 3):
            out[k].append(_check_state(f"{MANY_ROLES[k]}[{i}]", lists[k][i], dtype, var_i.shape))
        out[4].append(_check_grad(lists[4][i], dtype, var_i.shape, f"grads[{i}]"))
    return ManyPlan(dtype, out[0], out[1], out[2], out[3], out[4], table)


#: How the multi-tensor call names its five lists (the kernels' order).
MANY_ROLES = ("vars", "ms", "vs", "vhats", "grads")


def many_names(count: int, flat: int) -> str:
    """The name of item ``flat`` of the five lists of a ``count``-tensor call laid end to end
    (vars, ms, vs, vhats, grads): ``vhats[3]``."""
    role, index = divmod(flat, count)
    return f"{MANY_ROLES[role]}[{index}]"


def separate_grads(plan: ManyPlan) -> ManyPlan | None:
    """A multi-tensor call whose grads share memory with each other, made runnable.

    Grads are only read, so several tensors may take one gradient (or overlapping ones); the
    kernels, which refuse any sharing, get a copy of each grad whose memory intersects another
    grad's. Raises the error naming both arrays when a state array (var, m, v, vhat) shares
    memory with any other array, or may (:class:`OverlapUndecidedError`); returns None when
    nothing shares memory (the kernel's refusal was for another reason).
    """
    count = len(plan.vars)
    flat = [*plan.vars, *plan.ms, *plan.vs, *plan.vhats, *plan.grads]
    try:
        pair = find_overlap(flat, [False] * (4 * count) + [True] * count)
    except OverlapUndecidedError as error:
        first, second = (many_names(count, k) for k in error.pair)
        raise undecided_error(first, second) from None
    if pair is not None:
        raise overlap_error(many_names(count, pair[0]), many_names(count, pair[1]))
    spans = sorted((*byte_bounds(g), i) for i, g in enumerate(plan.grads) if g.size)
    shared: set[int] = set()
    reach, last = 0, -1  # the highest upper bound so far, and whose it is
    for low, high, i in spans:
        if low < reach:
            shared.update((i, last))
        if high > reach:
            reach, last = high, i
    if not shared:
        return None
    grads = [np.array(g) if i in shared else g for i, g in enumerate(plan.grads)]
    return plan._replace(grads=grads)
