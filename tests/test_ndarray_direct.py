"""The native kernel's direct reading of exact ndarrays (``core/native/ndarray.c``) against the
buffer protocol it stands in for.

The direct path may only accept: every array it does not certainly accept goes through the
buffer protocol, which makes every decision and every message. So each call below is run twice
on identical fresh arguments, once with the direct path and once with the buffer protocol alone
(``_native.set_ndarray_direct(False)``), and must give the same result, exception, message,
warnings and bytes afterwards. An array the direct path wrongly took (read-only, strided,
byte-swapped, unaligned, of another dtype, flagged "warn on write", a subclass with its own
buffer) would be written, or refused with another message, in one run and not the other.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import amsgrad

_native = pytest.importorskip("amsgrad.core._native")

if not _native.ndarray_direct()["available"]:
    pytest.skip(f"no direct path: {_native.ndarray_direct()['reason']}", allow_module_level=True)

DTYPES = (np.float16, np.float32, np.float64)
HYPER = (0.5, 0.25, 1e-3, 0.9, 0.999, 1e-8)


class Sub(np.ndarray):
    pass


if sys.version_info >= (3, 12):

    class OwnBuffer(np.ndarray):
        """A subclass whose buffer is a private copy: writes never reach the array."""

        def __buffer__(self, flags: int) -> memoryview:
            return memoryview(np.array(self.view(np.ndarray), copy=True))

else:
    OwnBuffer = None


@pytest.fixture
def direct() -> Iterator[Callable[[bool], None]]:
    before = _native.set_ndarray_direct(True)
    yield _native.set_ndarray_direct
    _native.set_ndarray_direct(before)


def unaligned(a: np.ndarray) -> np.ndarray:
    raw = np.frombuffer(bytearray(a.nbytes + 1), np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def warn_on_write(a: np.ndarray) -> np.ndarray:
    """C-contiguous, writeable, and flagged by NumPy to warn when written (shape (1, *shape))."""
    return np.broadcast_arrays(a, np.zeros((1, *a.shape), a.dtype))[0]


def other_float(a: np.ndarray) -> np.ndarray:
    return a.astype(DTYPES[(DTYPES.index(a.dtype.type) + 1) % 3])


def readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


#: Ways to replace one array of a call, each from the array it replaces.
VARIANTS: dict[str, Callable[[np.ndarray], Any]] = {
    "plain": lambda a: a,
    "view": lambda a: np.concatenate([a.reshape(-1), a.reshape(-1)])[a.size :].reshape(a.shape),
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a[()],
    "fortran": lambda a: np.asfortranarray(a),
    "transposed": lambda a: a.T.copy().T,
    "readonly": readonly,
    "byteswapped": lambda a: a.astype(a.dtype.newbyteorder("S")),
    "other float": other_float,
    "int32": lambda a: a.astype(np.int32),
    "longdouble": lambda a: a.astype(np.longdouble),
    "complex": lambda a: a.astype(np.complex64),
    "structured": lambda a: a.copy().view([("x", a.dtype)]).reshape(a.shape),
    "metadata": lambda a: a.astype(np.dtype(a.dtype, metadata={"k": 1})),
    "subclass": lambda a: a.view(Sub),
    "unaligned": unaligned,
    "warn on write": warn_on_write,
    "flat": lambda a: a.reshape(-1),
    "shorter": lambda a: a.reshape(-1)[: max(a.size - 1, 0)],
    "empty": lambda a: np.empty((0,), a.dtype),
    "frombuffer": lambda a: np.frombuffer(bytearray(a.tobytes()), a.dtype).reshape(a.shape),
    "list": lambda a: a.tolist(),
}
if OwnBuffer is not None:
    VARIANTS["own buffer"] = lambda a: a.view(OwnBuffer)

#: Overlaps: the array is replaced by another slot's array, or a view sharing part of it.
ALIASES = ("same object", "partial view")
SHAPES = ((), (0,), (1,), (7,), (4, 5), (2, 3, 4), (65,))


def build(seed: int, spec: list[tuple[int, int, str]], dtype: type, shape: tuple, count: int):
    """Fresh arguments of a call: five lists of ``count`` arrays and the hyper table, with the
    replacements ``spec`` ((tensor, role, variant); role 5 is the hyper table)."""
    rng = np.random.default_rng(seed)
    lists = [[] for _ in range(5)]
    for _ in range(count):
        for role in range(5):
            values = rng.standard_normal(shape)
            lists[role].append(np.asarray(np.abs(values) if role in (2, 3) else values, dtype))
    hyper = np.array(HYPER, np.float32).astype(dtype)
    for tensor, role, kind in spec:
        if role == 5:
            hyper = VARIANTS[kind](hyper)
        elif kind == "same object":
            lists[role][tensor] = lists[(role + 1) % 5][(tensor + 1) % count]
        elif kind == "partial view":
            base = lists[(role + 2) % 5][tensor]
            if base.size > 1:
                wide = np.concatenate([base.reshape(-1), base.reshape(-1)])
                lists[(role + 2) % 5][tensor] = wide[: base.size].reshape(base.shape)
                lists[role][tensor] = wide[1 : base.size + 1].reshape(base.shape)
        else:
            lists[role][tensor] = VARIANTS[kind](lists[role][tensor])
    return lists, hyper


def state(lists: list, hyper: Any) -> list:
    out = []
    for x in [*(a for items in lists for a in items), hyper]:
        if not hasattr(x, "dtype"):
            out.append(x)
        elif x.dtype == np.longdouble:  # padding bytes are not values
            out.append(np.asarray(x).tolist())
        else:
            out.append((type(x).__name__, x.dtype.str, np.asarray(x).tobytes()))
    return out


def outcome(call: Callable[[], Any], strict: bool) -> tuple:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error" if strict else "always")
        try:
            result = call()
        except Exception as error:  # the decision being compared
            result = ("raised", type(error).__name__, str(error))
    if isinstance(result, tuple) and result and isinstance(result[0], list | np.ndarray):
        result = "returned its arguments"  # the functional API
    return result, [f"{w.category.__name__}: {w.message}" for w in caught]


def calls(lists: list, hyper: Any) -> dict[str, Callable[[], Any]]:
    first = [items[0] for items in lists]
    return {
        "apply_many": lambda: _native.apply_many(*lists, hyper),
        "apply_many exact": lambda: _native.apply_many(*lists, hyper, np.ndarray),
        "apply": lambda: _native.apply(*first, hyper, 1),
        "apply_fast": lambda: _native.apply_fast(*first[:4], *HYPER, first[4]),
        "functional many": lambda: amsgrad.apply_adam_with_amsgrad_v2_many(
            *lists[:4], *HYPER, lists[4]
        ),
        "functional": lambda: amsgrad.apply_adam_with_amsgrad_v2(*first[:4], *HYPER, first[4]),
    }


def compare(seed: int, spec: list, dtype: type, shape: tuple, count: int, strict: bool) -> int:
    """Every call on fresh arguments with and without the direct path; returns how many arrays
    the direct path read."""
    names = list(calls(*build(seed, spec, dtype, shape, count)))
    read = 0
    for name in names:
        runs = []
        for on in (True, False):
            _native.set_ndarray_direct(on)
            lists, hyper = build(seed, spec, dtype, shape, count)
            before = _native.ndarray_direct()["acquired"]
            result = outcome(calls(lists, hyper)[name], strict)
            taken = _native.ndarray_direct()["acquired"] - before
            if on:
                read += taken
            else:
                assert taken == 0, "the buffer protocol alone read an array directly"
            runs.append((result, state(lists, hyper)))
        where = f"{name}: {spec} {np.dtype(dtype)} {shape} strict={strict}"
        assert runs[0][0] == runs[1][0], f"{where}: direct {runs[0][0]} != buffer {runs[1][0]}"
        assert runs[0][1] == runs[1][1], f"{where}: the arrays differ afterwards"
    return read


@pytest.mark.parametrize("strict", [True, False], ids=["warnings-as-errors", "warnings"])
@pytest.mark.parametrize("kind", [*VARIANTS, *ALIASES])
def test_one_odd_array_same_decision(direct, kind, strict):
    """Each variant in each role (the hyper table included) of a call of three tensors."""
    read = 0
    for dtype_index, dtype in enumerate(DTYPES):
        for role in range(6 if kind not in ALIASES else 5):
            shape = SHAPES[(role + dtype_index) % len(SHAPES)]
            spec = [(1, role, kind)]
            read += compare(7 * role + dtype_index, spec, dtype, shape, 3, strict)
    assert read > 0  # the direct path took part (the other arrays at least)


def test_random_combinations_same_decision(direct):
    rng = np.random.default_rng(20261128)
    kinds = [*VARIANTS, *ALIASES]
    read = 0
    for trial in range(150):
        count = int(rng.integers(1, 4))
        spec = []
        for _ in range(int(rng.integers(0, 4))):
            kind = kinds[int(rng.integers(0, len(kinds)))]
            spec.append(
                (int(rng.integers(0, count)), int(rng.integers(0, 6 - (kind in ALIASES))), kind)
            )
        shape = SHAPES[trial % len(SHAPES)]
        read += compare(trial, spec, DTYPES[trial % 3], shape, count, strict=bool(trial % 2))
    assert read > 1000


def taken_directly(array: Any, writable: bool) -> bool:
    """Whether the direct path read ``array`` as vars[0] (writable) or grads[0] (read only) of
    a one-tensor apply_many whose other arrays are plain: it reads hyper, then vars[0] to
    grads[0] in order, so all six only when it took ``array`` too."""
    dtype = array.dtype if array.dtype in DTYPES and array.dtype.isnative else np.float32
    others = [np.zeros(array.shape, dtype) for _ in range(5)]
    others[0 if writable else 4] = array
    before = _native.ndarray_direct()["acquired"]
    with contextlib.suppress(TypeError, ValueError, BufferError):
        _native.apply_many(*([a] for a in others), np.zeros(6, dtype))
    return _native.ndarray_direct()["acquired"] - before == 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_what_the_direct_path_takes(direct, dtype):
    """Only exact, C-contiguous, aligned, native float16/32/64 arrays (writeable when written),
    whatever their shape or size; the rest goes to the buffer protocol."""

    def a_() -> np.ndarray:  # fresh each time: the probes write to their arrays
        return np.arange(12, dtype=dtype).reshape(3, 4)

    taken = {
        "plain": a_,
        "0-d": lambda: np.array(1.0, dtype),
        "empty": lambda: np.empty((0, 3), dtype),
        "row view": lambda: a_()[1],
        "frombuffer": lambda: np.frombuffer(bytearray(a_().tobytes()), dtype),
        "metadata": lambda: a_().astype(np.dtype(dtype, metadata={"k": 1})),
    }
    refused = {
        "strided": lambda: a_()[:, ::2],
        "fortran": lambda: np.asfortranarray(a_()),
        "byteswapped": lambda: a_().astype(np.dtype(dtype).newbyteorder("S")),
        "unaligned": lambda: unaligned(a_()),
        "subclass": lambda: a_().view(Sub),
        "warn on write": lambda: warn_on_write(a_()),  # NumPy clears the flag once it warns
        "int32": lambda: a_().astype(np.int32),
        "longdouble": lambda: a_().astype(np.longdouble),
        "structured": lambda: a_().copy().view([("x", dtype)]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, make in taken.items():
            assert taken_directly(make(), True), name
            assert taken_directly(make(), False), name
        for name, make in refused.items():
            assert not taken_directly(make(), True), name
            assert not taken_directly(make(), False), name
    assert not taken_directly(readonly(a_()), True)
    assert taken_directly(readonly(a_()), False)  # grads are only read
    assert taken_directly(np.frombuffer(bytes(a_().tobytes()), dtype), False)
    direct(False)
    assert not taken_directly(a_(), True)
    direct(True)
    assert taken_directly(a_(), True)


def test_buffer_protocol_formats_match():
    """The formats the direct path reports are the ones NumPy's buffer gives these arrays (they
    appear in error messages)."""
    for dtype, fmt in zip(DTYPES, "efd", strict=True):
        assert memoryview(np.zeros(3, dtype)).format == fmt


def test_direct_path_is_in_use_by_default():
    info = _native.ndarray_direct()
    assert info["enabled"] and info["reason"] is None
    a = [np.zeros(4, np.float32) for _ in range(5)]
    before = info["acquired"]
    assert _native.apply_fast(*a[:4], *HYPER, a[4]) is True
    assert _native.ndarray_direct()["acquired"] - before == 5


def test_without_numpy_c_api_the_buffer_protocol_does_it_all():
    """When NumPy's C-API does not load at import, the module still loads, says why, and every
    array goes through the buffer protocol."""
    code = """if True:
        import sys, numpy as np
        names = ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath")
        saved = {name: sys.modules.get(name) for name in names}
        sys.modules.update(dict.fromkeys(names))  # importing them now fails
        from amsgrad.core import _native
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
        info = _native.ndarray_direct()
        assert not info["available"] and "C-API did not load" in info["reason"], info
        a = [np.zeros(4, np.float32) for _ in range(5)]
        h = (0.5, 0.25, 1e-3, 0.9, 0.999, 1e-8)
        assert _native.apply_fast(*a[:4], *h, a[4]) is True
        t = np.zeros(6, np.float32)
        assert _native.apply_many(*([x] for x in a), t) is None
        assert _native.apply_many([a[0]], [a[0]], *([x] for x in a[2:]), t) == (0, 0, 0, 1)
        assert _native.ndarray_direct()["acquired"] == 0
        print("ok")
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
