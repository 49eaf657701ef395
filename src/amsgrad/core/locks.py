"""Locks on memory for ``use_locking=True``: calls whose variables overlap in memory are serialized.

A lock is keyed on the memory itself, the byte range ``[low, high)`` that var's elements occupy,
not on a Python object: two arrays built separately over one buffer (``np.frombuffer`` of one
``bytearray`` in two threads, a ``memoryview``, ``multiprocessing.shared_memory``, torch's
``tensor.numpy()``) are different objects with no common ndarray base, yet the same memory.

The registry holds the byte ranges locked *now* (sorted, pairwise disjoint): a call waits while
any of its ranges intersects a held one, then records them all at once, and removes them when it
is done. Held ranges are disjoint, so the test for a new range is one binary search (O(log n) in
the number of ranges held); the registry holds nothing once no call is running (it cannot grow
without bound). A multi-tensor call takes the ranges of all its vars together, all or nothing,
so that two calls can never each hold part of what the other waits for (no deadlock).

Limits: the memory is known by its address in this process. Two mappings of one shared-memory
segment at different addresses (the segment opened twice) are not recognized as one, and other
processes are not excluded: ``use_locking`` serializes the threads of one process.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from types import TracebackType

import numpy as np

from amsgrad.core.overlap import byte_bounds

__all__ = ["MemoryLock", "held_ranges", "lock_for", "lock_many"]

_condition = threading.Condition(threading.Lock())
_starts: list[int] = []  # lower bounds of the held ranges, sorted
_ends: list[int] = []  # their upper bounds, in the same order


def _free(low: int, high: int) -> bool:
    """True when ``[low, high)`` intersects no held range (the caller holds ``_condition``)."""
    position = bisect.bisect_left(_starts, high)  # held ranges starting before high
    return position == 0 or _ends[position - 1] <= low


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Non-empty ranges, sorted, overlapping ones joined (a call's vars may overlap each other:
    that is reported as an error later, under the lock, and must not deadlock here)."""
    result: list[tuple[int, int]] = []
    for low, high in sorted(r for r in ranges if r[1] > r[0]):
        if result and low < result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], high))
        else:
            result.append((low, high))
    return result


class MemoryLock:
    """The lock of the memory of one or more variables (a context manager; not reentrant).

    ``acquire()`` waits until no other holder's memory intersects these ranges, then holds them;
    ``release()`` gives them back and wakes the waiting threads.
    """

    __slots__ = ("_held", "_ranges")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._ranges = _merged(ranges)
        self._held = False

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The byte ranges this lock covers, sorted and disjoint."""
        return list(self._ranges)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Hold the ranges; with ``blocking=False`` (or a ``timeout``), False if they are busy."""
        if self._held:
            raise RuntimeError("this MemoryLock is already held (it is not reentrant)")
        with _condition:
            wait = None if timeout < 0 else timeout
            ready = _condition.wait_for(
                lambda: all(_free(low, high) for low, high in self._ranges),
                wait if blocking else 0,
            )
            if not ready:
                return False
            for low, high in self._ranges:
                position = bisect.bisect_left(_starts, low)
                _starts.insert(position, low)
                _ends.insert(position, high)
            self._held = True
            return True

    def release(self) -> None:
        """Give the ranges back (RuntimeError if they are not held by this lock)."""
        with _condition:
            if not self._held:
                raise RuntimeError("release of a MemoryLock that is not held")
            for low, _ in self._ranges:
                position = bisect.bisect_left(_starts, low)
                del _starts[position]
                del _ends[position]
            self._held = False
            _condition.notify_all()

    def locked(self) -> bool:
        """True while another holder (or this one) holds memory that intersects these ranges."""
        with _condition:
            return self._held or not all(_free(low, high) for low, high in self._ranges)

    def __enter__(self) -> MemoryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def lock_for(var: np.ndarray) -> MemoryLock:
    """The lock of one variable's memory: calls whose vars overlap it in memory (views of one
    buffer, however they were made) wait for each other; others do not."""
    return MemoryLock((byte_bounds(var),))


def lock_many(vars: Iterable[np.ndarray]) -> MemoryLock:
    """One lock over the memory of several variables, taken all at once (no deadlock)."""
    return MemoryLock(byte_bounds(var) for var in vars)


def held_ranges() -> list[tuple[int, int]]:
    """The byte ranges held right now (for tests and diagnostics)."""
    with _condition:
        return list(zip(_starts, _ends, strict=True))
