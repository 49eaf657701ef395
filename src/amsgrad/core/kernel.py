"""Backends that carry out a checked :class:`~amsgrad.core.contract.Plan`: native C or NumPy.

The native extension ``amsgrad.core._native`` (built at install time) is used when it imported; the
NumPy reference is the fallback. Both detect memory shared between the five arrays and report it
before writing anything. The native kernel works on C-contiguous memory: other layouts go through
contiguous copies that are written back once the update is done.
"""

from __future__ import annotations

import operator
import os
import threading
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from amsgrad.core import reference as _reference
from amsgrad.core.contract import (
    ARRAY_ROLES,
    ManyPlan,
    Plan,
    fast_hyper,
    find_overlap,
    overlap_error,
)

_BUILD_ERROR_FILE = Path(__file__).with_name("_native_build_error.txt")


def _build_failure_reason(error: ImportError) -> str:
    """Why the extension did not import: the build's recorded error, else the import error."""
    try:
        recorded = _BUILD_ERROR_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    return recorded.splitlines()[-1][:300] if recorded else f"{type(error).__name__}: {error}"


_native: Any
_NATIVE_MISSING = ""  # why the native kernel is not available, when it is not
try:
    from amsgrad.core import _native  # type: ignore[attr-defined,no-redef]
except ImportError as error:  # no compiler at install time: the NumPy path runs
    _native = None
    _NATIVE_MISSING = _build_failure_reason(error)
    warnings.warn(
        f"amsgrad: the native kernel is not available ({_NATIVE_MISSING}); the NumPy path runs "
        "(same results, slower). Reinstall with a C compiler; set AMSGRAD_REQUIRE_NATIVE=1 "
        "while installing to make a failed build an error",
        RuntimeWarning,
        stacklevel=2,
    )

# The backend in use: the native module, or None for NumPy (see select_backend).
_active: Any = _native

#: The native fast path of the functional API, or None on the NumPy backend: called with the
#: operator's eleven arguments, it returns True when it checked and ran the call, False (nothing
#: written, no exception) when the call needs the full contract. Read on every call by
#: :func:`amsgrad.core.functional.apply_adam_with_amsgrad_v2`; :func:`select_backend` updates it.
fast_apply: Callable[..., bool] | None = None
if _native is not None:
    _native.set_fast_types(np.ndarray, np.float64, np.float32, np.float16)
    fast_apply = _native.apply_fast

__all__ = [
    "apply_addresses",
    "available_backends",
    "backend",
    "execute",
    "execute_many",
    "fast_apply",
    "get_num_threads",
    "select_backend",
    "selected_backend",
    "set_num_threads",
]

_MANY_ROLES = ("vars", "ms", "vs", "vhats", "grads")
_numpy_threads = 1


def backend() -> str:
    """Which kernel runs: ``"native (<instruction set>)"`` or ``"numpy"``.

    When the native kernel was not built, ``"numpy (native kernel not built: <why>)"``.
    """
    if _active is None:
        return f"numpy (native kernel not built: {_NATIVE_MISSING})" if _NATIVE_MISSING else "numpy"
    return f"native ({_active.simd()})"


def available_backends() -> tuple[str, ...]:
    """The backends this installation can run, best first: ``"native:<isa>"``..., ``"numpy"``.

    ``<isa>`` is an instruction-set level of the native kernel that this CPU supports
    (``avx512``, ``avx2``, ``portable``).
    """
    levels = tuple(_native.simd_levels()) if _native is not None else ()
    return (*(f"native:{level}" for level in levels), "numpy")


def select_backend(name: str) -> None:
    """Run later calls on ``name``, one of :func:`available_backends` or ``"best"``.

    For tests and benchmarks: every backend gives the same bits. ``"best"`` is the default,
    the native kernel with the best instruction set of this CPU (or NumPy without it).
    """
    global _active, fast_apply
    choices = ("best", *available_backends())
    if name not in choices:
        raise ValueError(f"select_backend: expected one of {', '.join(choices)}, got {name!r}")
    if name == "numpy":
        _active = None
        fast_apply = None
        return
    _active = _native
    if _native is not None:
        fast_apply = _native.apply_fast
        _native.set_simd("best" if name == "best" else name.split(":", 1)[1])


_LEVEL_OF_SIMD = {"avx512f+avx2+f16c": "avx512", "avx2+f16c": "avx2", "portable": "portable"}


def selected_backend() -> str:
    """The backend in use, as :func:`select_backend` names it (``"native:avx2"``, ``"numpy"``):
    at import, the best one, or the level ``AMSGRAD_SIMD`` asked for."""
    if _active is None:
        return "numpy"
    return f"native:{_LEVEL_OF_SIMD[_active.simd()]}"


def set_num_threads(count: int) -> None:
    """Set how many threads the native kernel may use for large arrays (an int >= 1).

    The default comes from the environment variable ``AMSGRAD_NUM_THREADS``, else the number of
    CPUs available to the process. Results do not depend on it.
    """
    global _numpy_threads
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected an int >= 1, got {count!r}")
    if count < 1:
        raise ValueError(f"set_num_threads: expected an int >= 1, got {count!r}")
    if _native is not None:
        _native.set_num_threads(int(count))
    _numpy_threads = int(count)


def get_num_threads() -> int:
    """The number of threads the native kernel may use (recorded only, on the NumPy backend)."""
    if _native is not None:
        return int(_native.get_num_threads())
    return _numpy_threads


def _contiguous(arrays: Sequence[np.ndarray]) -> bool:
    return all(array.flags.c_contiguous for array in arrays)


def _numpy_apply(
    var: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    vhat: np.ndarray,
    grad: np.ndarray,
    hyper: np.ndarray,
    rows: int,
) -> None:
    """The reference arithmetic on rows of the state, written back in place."""
    shape = var.shape
    as_rows = [array.reshape(rows, -1) for array in (var, m, v, vhat, grad)]
    columns = [hyper[k].reshape(rows, 1) for k in range(6)]
    beta1_power, beta2_power, lr, beta1, beta2, epsilon = columns
    r_var, r_m, r_v, r_vhat, r_grad = as_rows
    new = _reference.step(
        r_var, r_m, r_v, r_vhat, r_grad, beta1_power, beta2_power, lr, beta1, beta2, epsilon
    )
    _write_back((var, m, v, vhat), [value.reshape(shape) for value in new])


def _write_back(targets: Sequence[np.ndarray], values: Sequence[np.ndarray]) -> None:
    """``target[...] = value`` for each pair, with no Python code between the first write and
    the last: ``map`` calls ``operator.setitem`` from C, so no signal handler (CPython runs them
    between bytecodes) can stop the update with only some of the arrays written."""
    setitem: Callable[[Any, Any, Any], None] = operator.setitem
    deque(map(setitem, targets, repeat(Ellipsis), values), maxlen=0)


# Strided (non-contiguous) arrays are copied to contiguous blocks of about this many elements,
# cut along axis 0, so that the extra memory stays bounded whatever the size of the arrays.
COPY_BLOCK_ELEMENTS = 1 << 20


def _native_apply_copies(arrays: Sequence[np.ndarray], hyper: np.ndarray, rows: int) -> None:
    """Run the native kernel on contiguous copies of strided arrays, block by block along axis 0.

    Extra memory: five blocks of at most ``max(COPY_BLOCK_ELEMENTS, var.size // var.shape[0])``
    elements. A block of axis-0 indices ``[start, stop)`` holds whole rows of the hyper table
    (rows are a leading prefix of the shape), so each block gets its own columns of it.
    """
    var = arrays[0]
    if var.ndim == 0 or var.size <= COPY_BLOCK_ELEMENTS:
        _native_apply_block(arrays, hyper, rows)
        return
    lead = var.shape[0]
    per_index = var.size // lead
    step = max(1, COPY_BLOCK_ELEMENTS // per_index)
    rows_per_index = rows // lead
    for start in range(0, lead, step):
        stop = min(start + step, lead)
        block = [array[start:stop] for array in arrays]
        if rows == 1:
            _native_apply_block(block, hyper, 1)
        else:
            columns = np.ascontiguousarray(hyper[:, start * rows_per_index : stop * rows_per_index])
            _native_apply_block(block, columns, (stop - start) * rows_per_index)


def _native_apply_block(arrays: Sequence[np.ndarray], hyper: np.ndarray, rows: int) -> None:
    """The kernel on contiguous copies of the four state arrays (and of grad when strided),
    then one uninterruptible write-back: the caller's arrays change together or not at all."""
    work = [np.array(array, order="C") for array in arrays[:4]]
    work.append(np.ascontiguousarray(arrays[4]))
    _active.apply(*work, hyper, rows)
    _write_back(arrays[:4], work[:4])


def _run_to_completion(work: Callable[[], None]) -> None:
    """Run ``work`` to its end even if a signal handler raises meanwhile, then re-raise that.

    The paths that return to the interpreter between writes (blocked copies of strided arrays,
    the NumPy backend writing back four arrays) must not stop half-way: a KeyboardInterrupt
    would leave the state partly updated. Python runs signal handlers in the main thread only,
    so from the main thread the work runs in a helper thread while the main thread waits; an
    exception a handler raises is held until the update is complete. (A ``KeyboardInterrupt``
    that arrives before the helper starts leaves everything unwritten.)
    """
    if threading.current_thread() is not threading.main_thread():
        work()
        return
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            work()
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)
        finally:
            done.set()

    interrupted: BaseException | None = None
    worker = threading.Thread(target=run, name="amsgrad-update", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # no thread can be started: run here
        work()
        return
    except BaseException as error:  # a signal handler raised while the helper started
        interrupted = error
    while not done.is_set():
        try:
            done.wait()
        except BaseException as error:
            interrupted = interrupted or error
    if failure:
        raise failure[0]
    if interrupted is not None:
        raise interrupted


def execute(plan: Plan) -> None:
    """Apply one update in place; raises ValueError (nothing written) if arrays share memory."""
    arrays = (plan.var, plan.m, plan.v, plan.vhat, plan.grad)
    if plan.var.size == 0:
        return
    if _active is not None and _contiguous(arrays):
        pair = _active.apply(*arrays, plan.hyper, plan.rows)
        if pair is not None:
            raise overlap_error(ARRAY_ROLES[pair[0]], ARRAY_ROLES[pair[1]])
        return
    pair = find_overlap(arrays)
    if pair is not None:
        raise overlap_error(ARRAY_ROLES[pair[0]], ARRAY_ROLES[pair[1]])
    if _active is None:
        _numpy_apply(*arrays, plan.hyper, plan.rows)  # computes first, then one write-back
    elif plan.var.size <= COPY_BLOCK_ELEMENTS:
        _native_apply_block(arrays, plan.hyper, plan.rows)
    else:  # several blocks, each written back in turn: finish them whatever arrives
        _run_to_completion(lambda: _native_apply_copies(arrays, plan.hyper, plan.rows))


def apply_addresses(
    addresses: np.ndarray, sizes: np.ndarray, hyper: np.ndarray, sets: np.ndarray | None = None
) -> tuple[int, int, int, int] | bool | None:
    """The multi-tensor update on memory given by address, for callers holding CPU tensors
    that are not ndarrays (the torch optimizer's fast step); False on the NumPy backend.

    ``addresses``: int64, ``5 * K`` addresses laid out ``[5 * i + role]`` (var, m, v, vhat,
    grad); ``sizes``: int64, K element counts; ``hyper``: the ``(6, 1)`` table of
    :func:`~amsgrad.core.contract.fast_hyper`, whose dtype is the tensors', or with ``sets``
    (int64, K indices into G) G such tables side by side, ``(6, G)``. The caller vouches
    that each address starts a live, C-contiguous run of that many elements of that dtype,
    var/m/v/vhat writable, kept alive for the call. Memory shared between any two runs (grads
    included) is found before anything is written: then nothing is written and
    ``(i, role_i, j, role_j)`` is returned. None when done.
    """
    if _active is None:
        return False
    if sets is None:
        found = _active.apply_addresses(addresses, sizes, hyper)
    else:
        found = _active.apply_addresses(addresses, sizes, hyper, sets)
    return None if found is None else tuple(found)


def _many_overlap_error(count: int, flat_index_a: int, flat_index_b: int) -> ValueError:
    role_a, index_a = divmod(flat_index_a, count)
    role_b, index_b = divmod(flat_index_b, count)
    return overlap_error(f"{_MANY_ROLES[role_a]}[{index_a}]", f"{_MANY_ROLES[role_b]}[{index_b}]")


def try_many_unchecked(lists: Sequence[Any], hypers: Sequence[Any]) -> bool:
    """The common multi-tensor call in one native pass, or False to take the checked path.

    Taken when the native kernel is built, the six hyper-parameters are Python floats and every
    item is an ndarray of vars[0]'s float dtype, C-contiguous, writeable (but grads), of its
    var's shape and sharing no memory with another. The kernel verifies all of that before it
    writes anything; on any doubt it writes nothing and the caller runs :func:`resolve_many`
    for the precise error (or the general path).
    """
    if _active is None or not all(type(items) in (list, tuple) for items in lists):
        return False
    vars_ = lists[0]
    if not vars_ or type(vars_[0]) is not np.ndarray:
        return False
    table = fast_hyper(hypers, vars_[0].dtype)
    if table is None:
        return False
    try:
        found = _active.apply_many(*lists, table, np.ndarray)
    except (TypeError, ValueError, BufferError):
        return False
    return found is None


def execute_many(plan: ManyPlan) -> None:
    """Apply one update to each of K quintuples of arrays, in place, as one call."""
    lists = (plan.vars, plan.ms, plan.vs, plan.vhats, plan.grads)
    count = len(plan.vars)
    if count == 0:
        return
    if _active is not None and all(_contiguous(items) for items in lists):
        found = _active.apply_many(*lists, plan.hyper)
        if found is not None:
            index_a, role_a, index_b, role_b = found
            raise _many_overlap_error(count, role_a * count + index_a, role_b * count + index_b)
        return
    flat = [array for items in lists for array in items]
    pair = find_overlap(flat)
    if pair is not None:
        raise _many_overlap_error(count, *pair)
    if count == 1 and plan.vars[0].size <= COPY_BLOCK_ELEMENTS:
        _apply_each(lists, count, plan.hyper)  # one write-back
    else:  # several write-backs: finish them whatever arrives
        _run_to_completion(lambda: _apply_each(lists, count, plan.hyper))


def _apply_each(lists: Sequence[Sequence[np.ndarray]], count: int, hyper: np.ndarray) -> None:
    """The multi-tensor update one quintuple at a time (strided arrays, or the NumPy backend)."""
    for i in range(count):
        arrays = [items[i] for items in lists]
        if arrays[0].size == 0:
            continue
        if _active is not None:
            _native_apply_copies(arrays, hyper, 1)
        else:
            _numpy_apply(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], hyper, 1)


def default_threads_from_env() -> int | None:
    """The thread count asked for by ``AMSGRAD_NUM_THREADS``, or None when unset or invalid."""
    text = os.environ.get("AMSGRAD_NUM_THREADS", "")
    return int(text) if text.isdigit() and int(text) > 0 else None


if _native is None:
    _numpy_threads = default_threads_from_env() or 1
