"""Differential fuzzer: every native instruction set against the NumPy reference path.

Each case draws a dtype, a shape (0-d to 5-d), a memory layout (C order, Fortran order, strided,
negative strides, misaligned), state values from random bit patterns and special values, and
hyper-parameters of every accepted kind (Python and NumPy scalars, 0-d, single-element and
per-row arrays), with now and then a mistake (a wrong shape, dtype or type, arrays that share
memory). The same call is made on every backend, on copies of the same inputs; all must agree:
the same four results bit for bit (any NaN equal to any NaN), or the same exception type and
message with every input unchanged. Single and multi-tensor calls.

    python tests/fuzz_differential.py --seconds 600        # a long run
    python tests/fuzz_differential.py --cases 2000 --seed 7

The test suite runs it with a small fixed budget (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import amsgrad
from amsgrad.core import kernel
from helpers import bits_equal

DTYPES = (np.float16, np.float32, np.float64)
LAYOUTS = ("c", "f", "strided", "negative", "misaligned")
SPECIAL = (0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 6e-8, 65504.0, 1e30, 1e300, 1.0, -1.0)
HYPER_SPECIAL = (0.0, 0.5, 0.9, 0.999, 1.0, 1e-8, -1.0, np.inf, np.nan, 1e39, 65536.0)


@dataclass
class Case:
    """One call: how to build fresh inputs, and which function to call."""

    label: str
    build: Callable[[], tuple[list[Any], dict[str, Any]]]
    many: bool


def _values(rng: np.random.Generator, dtype: type, count: int) -> np.ndarray:
    """Random bit patterns, ordinary numbers and special values, mixed."""
    itemsize = np.dtype(dtype).itemsize
    uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize]
    bits = rng.integers(0, np.iinfo(uint).max, size=count, dtype=uint, endpoint=True)
    values = bits.view(dtype).copy()
    ordinary = rng.standard_normal(count).astype(dtype)
    special = np.array(SPECIAL, dtype=np.float64).astype(dtype)[
        rng.integers(0, len(SPECIAL), count)
    ]
    pick = rng.integers(0, 3, count)
    with np.errstate(all="ignore"):
        return np.where(pick == 0, values, np.where(pick == 1, ordinary, special)).astype(dtype)


def _array(
    rng: np.random.Generator, dtype: type, shape: tuple[int, ...], layout: str
) -> np.ndarray:
    """An array of the given shape and values, laid out in memory as ``layout`` says."""
    size = int(np.prod(shape, dtype=np.int64))
    values = _values(rng, dtype, size).reshape(shape)
    if layout == "f":
        return values.copy(order="F")  # (np.asfortranarray would make a 0-d array 1-d)
    if layout == "strided" and values.ndim:
        big = np.empty(tuple(2 * n for n in shape), dtype)
        view = big[tuple(slice(None, None, 2) for _ in shape)]
        view[...] = values
        return view
    if layout == "negative" and values.ndim:
        flipped = values[::-1].copy()
        return flipped[::-1]
    if layout == "misaligned":
        itemsize = np.dtype(dtype).itemsize
        raw = bytearray(size * itemsize + 1)
        array = np.frombuffer(raw, dtype, size, 1).reshape(shape)
        array[...] = values
        return array
    return values.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)


def _scalar(rng: np.random.Generator) -> Any:
    kind = rng.integers(0, 8)
    value = float(rng.choice(HYPER_SPECIAL)) if rng.random() < 0.3 else float(rng.random())
    if kind == 0:
        return int(rng.integers(-3, 4))
    if kind == 1:
        return bool(rng.integers(0, 2))
    if kind == 2:
        return np.float32(value)
    if kind == 3:
        return np.float16(value)
    if kind == 4:
        return np.float64(value)
    if kind == 5:
        return np.int64(rng.integers(-3, 4))
    return value


def _hyper(rng: np.random.Generator, dtype: type, shape: tuple[int, ...], per_row: int) -> Any:
    """A hyper-parameter: a scalar, a 0-d or one-element array, or per-row values."""
    kind = rng.integers(0, 4)
    if per_row and kind == 3:
        rows = shape[:per_row]
        return np.asarray(rng.random(rows), dtype=dtype)
    if kind == 1:
        target = (np.float16, dtype, np.int16)[int(rng.integers(0, 3))]
        value = int(rng.integers(-3, 4)) if target is np.int16 else _scalar(rng)
        with np.errstate(all="ignore"):
            return np.asarray(value).astype(target)
    if kind == 2:
        return np.full((1,), _scalar(rng), dtype=dtype)
    return _scalar(rng)


def _mistake(rng: np.random.Generator, arrays: list[Any], hypers: list[Any], dtype: type) -> None:
    """Now and then one mistake, the same on every backend."""
    roll = rng.integers(0, 8)
    if roll == 0:
        bad: list[Any] = ["0.1", None, [0.1], 1j]
        hypers[int(rng.integers(0, 6))] = bad[int(rng.integers(0, len(bad)))]
    elif roll == 1:
        hypers[int(rng.integers(0, 6))] = np.zeros((7, 3), dtype)
    elif roll == 2 and dtype is not np.float64:
        hypers[int(rng.integers(0, 6))] = np.asarray(0.5, np.float64)
    elif roll == 3:
        arrays[int(rng.integers(1, 5))] = np.zeros((3, 2, 9), dtype)
    elif roll == 4 and arrays[0].size:
        arrays[int(rng.integers(1, 4))] = arrays[0]  # two state arrays share memory
    elif roll == 5:
        arrays[int(rng.integers(0, 4))] = arrays[0].astype(np.int32)


def draw_case(rng: np.random.Generator, index: int) -> Case:
    dtype = DTYPES[int(rng.integers(0, 3))]
    many = bool(rng.random() < 0.25)
    wrong = bool(rng.random() < 0.15)
    seed = int(rng.integers(0, 2**62))
    if many:
        count = int(rng.integers(1, 5))
        shapes = [
            tuple(int(n) for n in rng.integers(0, 6, rng.integers(0, 4))) for _ in range(count)
        ]
    else:
        shapes = [tuple(int(n) for n in rng.integers(0, 5, rng.integers(0, 6)))]
    layouts = [str(rng.choice(LAYOUTS)) for _ in range(5 * len(shapes))]
    per_row = 0 if many or not shapes[0] else int(rng.integers(0, len(shapes[0]) + 1))

    def build() -> tuple[list[Any], dict[str, Any]]:
        local = np.random.default_rng(seed)  # the same inputs on every call
        with np.errstate(all="ignore"):
            return _build(local)

    def _build(local: np.random.Generator) -> tuple[list[Any], dict[str, Any]]:
        items = [
            [_array(local, dtype, shape, layouts[5 * i + k]) for k in range(5)]
            for i, shape in enumerate(shapes)
        ]
        hypers = [_hyper(local, dtype, shapes[0], per_row) for _ in range(6)]
        if wrong:
            _mistake(local, items[0], hypers, dtype)
        if many:
            lists = [[item[k] for item in items] for k in range(5)]
            return [*lists[:4], *hypers, lists[4]], {}
        return [*items[0][:4], *hypers, items[0][4]], {}

    label = f"case {index}: {np.dtype(dtype).name} {'many ' if many else ''}{shapes} {layouts[:5]}"
    return Case(label, build, many)


def _snapshot(args: list[Any]) -> list[Any]:
    out = []
    for arg in args:
        if isinstance(arg, np.ndarray):
            out.append(arg.copy())
        elif isinstance(arg, list):
            out.append([a.copy() if isinstance(a, np.ndarray) else a for a in arg])
        else:
            out.append(arg)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bits_equal(a, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return True


def run_on(backend: str, case: Case) -> tuple[str, Any]:
    """('ok', four results) or ('error', (type name, message)); inputs checked on error."""
    args, kwargs = case.build()
    before = _snapshot(args)
    call = (
        amsgrad.apply_adam_with_amsgrad_v2_many if case.many else amsgrad.apply_adam_with_amsgrad_v2
    )
    previous = kernel.selected_backend()
    kernel.select_backend(backend)
    try:
        with np.errstate(all="ignore"):
            result = call(*args, **kwargs)
    except Exception as error:  # compared across backends below
        changed = [i for i, (x, y) in enumerate(zip(args, before, strict=True)) if not _same(x, y)]
        if changed:
            raise AssertionError(
                f"{backend}: {case.label}: inputs {changed} written by a failed call"
            ) from error
        return "error", (type(error).__name__, str(error))
    finally:
        kernel.select_backend(previous)
    flat = [list(r) if isinstance(r, list) else [r] for r in result]
    return "ok", [np.ascontiguousarray(a).copy() for part in flat for a in part]


def check(case: Case, backends: tuple[str, ...]) -> None:
    kind, expected = run_on("numpy", case)
    for backend in backends:
        got_kind, got = run_on(backend, case)
        if got_kind != kind:
            raise AssertionError(
                f"{backend}: {case.label}: {got_kind} {got!r}, numpy: {kind} {expected!r}"
            )
        if kind == "error":
            if got != expected:
                raise AssertionError(f"{backend}: {case.label}: error {got} != numpy's {expected}")
            continue
        for position, (a, b) in enumerate(zip(got, expected, strict=True)):
            if not (a.shape == b.shape and bits_equal(a, b)):
                raise AssertionError(
                    f"{backend}: {case.label}: result {position} differs from numpy"
                )


def fuzz(cases: int | None, seconds: float | None, seed: int) -> int:
    """Run until ``cases`` cases or ``seconds`` have passed; returns the number of cases run."""
    backends = tuple(b for b in kernel.available_backends() if b != "numpy")
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    done = 0
    while (cases is None or done < cases) and (
        seconds is None or time.monotonic() - started < seconds
    ):
        check(draw_case(rng, done), backends)
        done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cases is None and args.seconds is None:
        args.seconds = 60.0
    started = time.monotonic()
    done = fuzz(args.cases, args.seconds, args.seed)
    backends = ", ".join(kernel.available_backends())
    took = time.monotonic() - started
    print(f"{done} cases, {backends}: all agree ({took:.0f} s, seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
