"""Memory overlap between the arrays of a call: which pairs share memory, found in O(n log n).

Two arrays can only share memory when their byte bounds intersect; :func:`find_overlap` sorts the
arrays by their lower bound and sweeps, so that only pairs whose bounds intersect are tested
exactly, with ``np.shares_memory``. That exact test is a bounded integer program, exponential in
the worst case (a hostile ``as_strided`` layout can take seconds to minutes): it is given
:data:`MAX_WORK`, and a pair it cannot decide within that bound is refused as if it overlapped,
with :class:`OverlapUndecidedError` (the message says the arrays *may* share memory).

NumPy and the standard library only; the messages name arrays as the caller does (``var``,
``grads[3]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAX_WORK",
    "OverlapUndecidedError",
    "byte_bounds",
    "find_overlap",
    "may_overlap_itself",
    "overlap_error",
    "shares_memory",
    "undecided_error",
]

#: The bound given to ``np.shares_memory`` for one pair of arrays (candidate solutions explored).
#: Layouts made by slicing, transposing or reshaping are decided in a few units of work; a
#: pathological ``as_strided`` layout stops here (about a millisecond) instead of running on.
MAX_WORK = 100_000

_TooHardError: type[Exception] = getattr(
    getattr(np, "exceptions", np), "TooHardError", getattr(np, "TooHardError", RuntimeError)
)


class OverlapUndecidedError(ValueError):
    """Two arrays may share memory: proving that they do not would cost more than
    :data:`MAX_WORK`. ``pair`` holds their positions ``(i, j)``, ``i < j``, in the sequence that
    was checked, so that the caller can name them (:func:`undecided_error`)."""

    def __init__(self, message: str, pair: tuple[int, int]) -> None:
        super().__init__(message)
        self.pair = pair


def overlap_error(first: str, second: str) -> ValueError:
    """The error for two state/gradient arrays that share memory."""
    return ValueError(
        f"{first} and {second} share memory: var, m, v, vhat and grad must be distinct, "
        "non-overlapping arrays (the update writes four of them in place)"
    )


def undecided_error(first: str, second: str, pair: tuple[int, int] = (0, 1)) -> ValueError:
    """The error for two arrays that may share memory (the exact check was too costly)."""
    return OverlapUndecidedError(
        f"{first} and {second} may share memory: their layouts interleave in a way that would "
        f"take too long to check exactly (more than {MAX_WORK} steps of np.shares_memory), so "
        "the call is refused before anything is written; pass arrays with simpler strides "
        "(e.g. np.ascontiguousarray copies)",
        pair,
    )


def byte_bounds(array: np.ndarray) -> tuple[int, int]:
    """The addresses ``[low, high)`` of the bytes an array's elements occupy (``low == high``
    for an empty array)."""
    interface = array.__array_interface__
    low = high = interface["data"][0]
    if array.size == 0:
        return low, low
    strides = interface["strides"]
    if strides is None:  # C-contiguous
        return low, low + array.nbytes
    for length, stride in zip(array.shape, strides, strict=True):
        if stride < 0:
            low += stride * (length - 1)
        else:
            high += stride * (length - 1)
    return low, high + array.itemsize


def may_overlap_itself(array: np.ndarray) -> bool:
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


def shares_memory(first: np.ndarray, second: np.ndarray) -> bool:
    """``np.shares_memory`` within :data:`MAX_WORK`; raises ``TooHardError`` beyond it."""
    return bool(np.shares_memory(first, second, max_work=MAX_WORK))  # type: ignore[arg-type]


def find_overlap(
    arrays: Sequence[np.ndarray], may_share: Sequence[bool] | None = None
) -> tuple[int, int] | None:
    """A pair ``(i, j)``, ``i < j``, of arrays that share memory, or None.

    ``may_share``: optional flags, one per array; two arrays that are both flagged (inputs that
    are only read, such as gradients) are allowed to share memory and are not reported.

    Sorts the arrays by their byte bounds and sweeps by index (no copies), so that n arrays cost
    O(n log n) plus one exact test per pair whose bounds intersect. Raises
    :class:`OverlapUndecidedError` (a ValueError; its ``pair`` names the positions) for a pair
    the exact test cannot decide within :data:`MAX_WORK`.
    """
    spans = sorted((*byte_bounds(array), index) for index, array in enumerate(arrays) if array.size)
    count = len(spans)
    for position in range(count):
        _, high, i = spans[position]
        shared_i = may_share is not None and may_share[i]
        following = position + 1
        while following < count:
            low_j, _, j = spans[following]
            if low_j >= high:
                break
            following += 1
            if shared_i and may_share is not None and may_share[j]:
                continue
            pair = (i, j) if i < j else (j, i)
            try:
                found = shares_memory(arrays[i], arrays[j])
            except _TooHardError:
                raise OverlapUndecidedError(
                    f"arrays {pair[0]} and {pair[1]} may share memory (too costly to check)",
                    pair,
                ) from None
            if found:
                return pair
    return None
