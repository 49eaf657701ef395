"""The operator's dtype table: the one place that lists its float dtypes and scalar kinds.

Every backend refers to these names (the PyTorch adapter maps its dtypes onto
:data:`STATE_DTYPES`); the checks and messages built on them are in
:mod:`amsgrad.core.contract`. NumPy and the standard library only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "F16",
    "F32",
    "F32_OVERFLOW",
    "F64",
    "INT64_MAX",
    "INT64_MIN",
    "NP_SCALAR_TYPES",
    "STATE_DTYPES",
    "STATE_DTYPES_TEXT",
    "TENSOR_DTYPES_TEXT",
    "float_rank",
    "is_state_dtype",
    "is_tensor_dtype",
]

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)

#: The dtypes of var, m, v and vhat (and so the compute dtypes T), by increasing precision.
STATE_DTYPES: tuple[np.dtype, ...] = (F16, F32, F64)
#: How messages list :data:`STATE_DTYPES`.
STATE_DTYPES_TEXT = "float16, float32 or float64"
#: How messages list the dtypes a grad or hyper-parameter tensor may have.
TENSOR_DTYPES_TEXT = "float16, float32, float64, an integer or bool dtype"

# Precision rank of each state dtype (1, 2, 3); a plain dict, as the hot path looks it up.
_RANK = {dtype: rank for rank, dtype in enumerate(STATE_DTYPES, start=1)}

#: Rounding a float64 at or above this magnitude to float32 overflows to inf (2**128 - 2**103).
F32_OVERFLOW = 3.4028235677973366e38
#: The range of integer hyper-parameters (MindSpore converts them to int64).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: NumPy scalar types MindSpore 2.10 takes as scalars (measured); others are a TypeError there.
NP_SCALAR_TYPES: frozenset[type] = frozenset(
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


def is_state_dtype(dtype: Any) -> bool:
    """True for float16, float32 and float64 (``dtype``: a NumPy dtype, or anything hashable)."""
    return dtype in _RANK


def float_rank(dtype: np.dtype) -> int:
    """The precision rank of a float dtype: float16 1, float32 2, float64 3; 0 for any other."""
    return _RANK.get(dtype, 0)


def is_tensor_dtype(dtype: np.dtype) -> bool:
    """A dtype a grad or hyper-parameter tensor may have: a state dtype, an integer or bool."""
    return dtype in _RANK or dtype.kind in "biu"
