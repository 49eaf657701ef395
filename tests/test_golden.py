"""Golden tests: ``amsgrad.apply_adam_with_amsgrad_v2`` against MindSpore 2.10.

MindSpore's operator is ``mindspore.ops.ApplyAdamWithAmsgradV2``.

The data in ``tests/golden`` was recorded from MindSpore 2.10.0 (CPU, PyNative) by
``tests/golden/generate.py``; this module never imports MindSpore. For every case the arguments
are rebuilt from their descriptors (fresh copies each time) and:

* ``ok`` cases: var, m, v, vhat after our call equal MindSpore's bit for bit (any NaN equals any
  NaN), keep their dtype and shape, and are the very objects returned;
* ``error`` cases: we raise the class MindSpore raised (its "data type conversion" TypeError is
  our :class:`amsgrad.DtypeConversionError`), name the argument MindSpore's message names, and
  leave var, m, v, vhat untouched;
* ``deliberate`` cases (where the project decided to differ from MindSpore, see SPEC.md) are not
  compared with MindSpore; the documented behaviour is asserted instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import amsgrad

# Each test runs on every backend: native at each instruction-set level, and NumPy.
pytestmark = pytest.mark.usefixtures("each_backend")

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = json.loads((GOLDEN / "ms210_cases.json").read_text())
with np.load(GOLDEN / "ms210_arrays.npz") as _z:
    ARRAYS = {k: _z[k] for k in _z.files}

NAMES = (
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
STATE = NAMES[:4]
HYPERS = NAMES[4:10]
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


# ------------------------------------------------------------------------------------ helpers


def decode(desc):
    """The Python value a descriptor stands for (arrays are fresh, writeable copies)."""
    kind = desc["kind"]
    if kind == "array":
        return np.array(ARRAYS[desc["key"]], copy=True)
    if kind == "pyfloat":
        return float.fromhex(desc["hex"])
    if kind == "pyint":
        return int(desc["value"])
    if kind == "pybool":
        return bool(desc["value"])
    if kind == "npscalar":
        return np.frombuffer(bytes.fromhex(desc["hex"]), dtype=np.dtype(desc["dtype"]))[0]
    if kind == "object":
        t, v = desc["type"], desc["value"]
        if t == "str":
            return v
        if t == "none":
            return None
        if t == "list":
            return list(v)
        if t == "tuple":
            return tuple(v)
        if t == "complex":
            return complex(v[0], v[1])
    raise ValueError(f"unknown descriptor {desc!r}")


def build(case):
    values = [decode(case["args"][n]) for n in NAMES]
    ul = case["use_locking"]
    use_locking = ul if isinstance(ul, bool) else decode(ul)
    return values, use_locking


def same_bits(a, b) -> bool:
    """Same dtype, shape and bits; every NaN equals every NaN."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return a.tobytes() == b.tobytes()
    uint = UINT[a.dtype.itemsize]
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all((a.view(uint) == b.view(uint)) | both_nan))


def assert_same_bits(actual, expected, what):
    assert same_bits(actual, expected), (
        f"{what}: bits differ\n  ours:     {np.asarray(actual)!r}\n"
        f"  expected: {np.asarray(expected)!r}"
    )


def snapshot(values):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else None for a in values[:4]]


def assert_untouched(values, before):
    for name, a, b in zip(STATE, values[:4], before, strict=True):
        if b is not None:
            assert_same_bits(a, b, f"{name} was written although the call failed")


def call(values, use_locking):
    return amsgrad.apply_adam_with_amsgrad_v2(*values, use_locking=use_locking)


def check_returns_state(result, values):
    assert isinstance(result, tuple) and len(result) == 4, type(result)
    for name, r, a in zip(STATE, result, values[:4], strict=True):
        assert r is a, f"the returned {name} is not the array passed in"


def expected_class(case, values):
    exp = case["expect"]
    if exp["type"] == "TypeError":
        # MindSpore's "Data type conversion is not supported for a 'Parameter' ..." between two
        # float dtypes, with a float var, is what the project calls DtypeConversionError. With an
        # integer, bool or complex dtype involved any TypeError will do.
        m = re.search(
            r"data type (\w+), which cannot be converted to data type (\w+)", exp["message"]
        )
        var = values[0]
        if (
            m
            and m.group(1).startswith("Float")
            and m.group(2).startswith("Float")
            and isinstance(var, np.ndarray)
            and var.dtype in FLOAT_DTYPES
        ):
            return amsgrad.DtypeConversionError
        return TypeError
    return {"ValueError": ValueError, "RuntimeError": RuntimeError}[exp["type"]]


def names_in(message):
    """The argument names MindSpore's message mentions."""
    names = re.findall(r"the \d+(?:st|nd|rd|th) input (\w+)", message)
    names += re.findall(r"evaluator arg '(\w+)'", message)
    if "'use_locking'" in message:
        names.append("use_locking")
    return names


def assert_names(text, name):
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text), (
        f"the message does not name {name!r}: {text!r}"
    )


def deliberate_kind(case):
    kinds = [t.split(":", 1)[1] for t in case["tags"] if t.startswith("deliberate:")]
    assert len(kinds) == 1, case["tags"]
    return kinds[0]


def is_batched(h, var):
    return (
        isinstance(h, np.ndarray) and h.ndim >= 1 and h.size > 1 and h.shape == var.shape[: h.ndim]
    )


# ------------------------------------------------------------------------------------ golden


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_golden(case):
    values, use_locking = build(case)
    if case["deliberate"]:
        check_deliberate(case, values, use_locking)
        return
    exp = case["expect"]
    if exp["kind"] == "ok":
        state = values[:4]
        layout = [(a.dtype, a.shape) for a in state]
        result = call(values, use_locking)
        check_returns_state(result, values)
        for name, a, (dtype, shape), key in zip(STATE, state, layout, exp["out"], strict=True):
            assert a.dtype == dtype and a.shape == shape, f"{name} changed dtype or shape"
            assert_same_bits(a, ARRAYS[key], name)
        return

    before = snapshot(values)
    cls = expected_class(case, values)
    with pytest.raises(Exception) as info:
        call(values, use_locking)
    assert isinstance(info.value, cls), (
        f"MindSpore raised {exp['type']} ({exp['message'][:120]!r}); we raised "
        f"{type(info.value).__name__}: {info.value}"
    )
    text = str(info.value)
    assert text.strip(), "empty error message"
    for name in names_in(exp["message"]):
        assert_names(text, name)
    assert_untouched(values, before)


# ------------------------------------------------------------------------------------ deliberate


def check_deliberate(case, values, use_locking):
    kind = deliberate_kind(case)
    if kind == "0d-var":
        # Works elementwise: the same as the call on the 1-element 1-D reshape.
        assert values[0].ndim == 0
        ref = [
            np.array(x, copy=True).reshape(1) if i in (0, 1, 2, 3, 10) else x
            for i, x in enumerate(values)
        ]
        call(ref, use_locking)
        result = call(values, use_locking)
        check_returns_state(result, values)
        for name, a, r in zip(STATE, values[:4], ref[:4], strict=True):
            assert a.shape == ()
            assert_same_bits(a.reshape(1), r, name)
    elif kind == "lr-shape1":
        # A single-element lr is a scalar: the same as a 0-d lr of the same dtype.
        lr = values[NAMES.index("lr")]
        assert isinstance(lr, np.ndarray) and lr.size == 1 and lr.ndim >= 1
        ref = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in values]
        ref[NAMES.index("lr")] = lr.reshape(())
        call(ref, use_locking)
        result = call(values, use_locking)
        check_returns_state(result, values)
        for name, a, r in zip(STATE, values[:4], ref[:4], strict=True):
            assert_same_bits(a, r, name)
    elif kind == "hyper-multi":
        # More than one element and not a batch: ValueError naming the argument, nothing written.
        var = values[0]
        culprits = [
            n
            for n, h in zip(HYPERS, values[4:10], strict=True)
            if isinstance(h, np.ndarray) and h.size > 1 and not is_batched(h, var)
        ]
        assert culprits, "case has no multi-element hyper-parameter"
        before = snapshot(values)
        with pytest.raises(ValueError) as info:
            call(values, use_locking)
        assert_names(str(info.value), culprits[0])
        assert_untouched(values, before)
    elif kind == "rows":
        # A hyper-parameter whose shape is a leading prefix of var.shape applies per row: the
        # same as calling row by row.
        var = values[0]
        batched = [i for i in range(4, 10) if is_batched(values[i], var)]
        assert batched, "case has no batched hyper-parameter"
        rows = values[batched[0]].shape[0]
        expected = [np.empty_like(a) for a in values[:4]]
        for r in range(rows):
            row = []
            for i, x in enumerate(values):
                if i in (0, 1, 2, 3, 10) or i in batched:
                    row.append(np.array(x[r : r + 1], copy=True))
                else:
                    row.append(x)
            call(row, use_locking)
            for e, a in zip(expected, row[:4], strict=True):
                e[r : r + 1] = a
        result = call(values, use_locking)
        check_returns_state(result, values)
        for name, a, e in zip(STATE, values[:4], expected, strict=True):
            assert_same_bits(a, e, name)
    else:
        raise AssertionError(f"unknown deliberate kind {kind!r}")


# ------------------------------------------------------------------------------------ coverage


def test_manifest_coverage():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    plain = [c for c in CASES if not c["deliberate"]]
    assert len(plain) >= 150, len(plain)
    ok_vars = [
        ARRAYS[c["args"]["var"]["key"]]
        for c in plain
        if c["expect"]["kind"] == "ok" and c["args"]["var"]["kind"] == "array"
    ]
    assert {a.dtype for a in ok_vars} >= set(FLOAT_DTYPES)
    assert any(a.size == 0 for a in ok_vars), "no size-0 case"
    assert any(a.size > 4096 for a in ok_vars), "no case above 4096 elements"
    assert any(a.ndim == 5 for a in ok_vars), "no 5-D case"
    assert any(c["call"] == "vmap" for c in plain), "no vmap case"
    assert any(c["expect"]["kind"] == "error" for c in plain), "no error case"
    for c in CASES:
        assert c["call"] in ("direct", "vmap")
        assert set(c["args"]) == set(NAMES)
        keys = [d["key"] for d in c["args"].values() if d["kind"] == "array"]
        if c["expect"]["kind"] == "ok":
            keys += c["expect"]["out"]
        for key in keys:
            assert key in ARRAYS, (c["id"], key)
        if c["deliberate"]:
            deliberate_kind(c)
