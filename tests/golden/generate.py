"""Generate the golden data for ``mindspore.ops.ApplyAdamWithAmsgradV2`` from MindSpore 2.10.

Run with a Python that has mindspore==2.10.0 installed (its own virtual environment)::

    python tests/golden/generate.py               # writes ms210_cases.json, ms210_arrays.npz
    python tests/golden/generate.py --check       # and compares the ok cases to the reference
    python tests/golden/generate.py --check-only  # only compares the files (needs no MindSpore)

The reference is ``src/amsgrad/_reference.py``. MindSpore runs in PyNative mode on CPU, in fresh
worker processes (see ``Builder.run_all``). Everything is deterministic (fixed seeds, fixed zip
timestamps): running the script again rewrites the same two files.

Manifest (``ms210_cases.json``): a JSON list of cases, each::

    {"id": str, "tags": [str], "use_locking": bool | descriptor, "call": "direct" | "vmap",
     "deliberate": bool, "args": {name: descriptor for the 11 inputs}, "expect": ...}

Descriptors:

* ``{"kind": "array", "key": npz key}``: var/m/v/vhat become ``Parameter(Tensor(a))``, the
  others ``Tensor(a)``;
* ``{"kind": "pyfloat", "hex": float.hex(x)}``, ``{"kind": "pyint", "value": str}``,
  ``{"kind": "pybool", "value": bool}``;
* ``{"kind": "npscalar", "dtype": str, "hex": the scalar's bytes, little-endian}``;
* ``{"kind": "object", "type": "str" | "none" | "list" | "tuple" | "complex", "value": json}``.

``expect`` is ``{"kind": "ok", "out": [npz keys]}`` (var, m, v, vhat: the Parameters' state after
the call) or ``{"kind": "error", "type": class name, "message": ...}`` with the first 300
characters of the message, MindSpore's C++ call stack cut off. For kernel failures, whose
exception text says nothing useful, ``"detail"`` holds the reason MindSpore logged.

``call == "vmap"``: run as ``mindspore.vmap(f, in_axes)`` with ``in_axes`` 0 for every array of
rank >= 1 (var, m, v, vhat, grad and the batched hyper-parameters) and ``None`` for the rest.

``deliberate`` cases are those where the project deliberately differs from MindSpore (SPEC
table); their tag ``deliberate:<kind>`` says which documented behaviour the test asserts instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES_JSON = HERE / "ms210_cases.json"
ARRAYS_NPZ = HERE / "ms210_arrays.npz"

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

f16, f32, f64 = np.float16, np.float32, np.float64
FLOATS = (f16, f32, f64)
DT = {f16: "f16", f32: "f32", f64: "f64"}


# --------------------------------------------------------------------------------------------
# descriptors


def encode(value, key):
    """Descriptor of ``value``; arrays are returned separately as (descriptor, array or None)."""
    if isinstance(value, np.ndarray):
        return {"kind": "array", "key": key}, np.array(value, copy=True, order="C")
    if isinstance(value, np.generic):
        return {"kind": "npscalar", "dtype": value.dtype.name, "hex": value.tobytes().hex()}, None
    if isinstance(value, bool):
        return {"kind": "pybool", "value": value}, None
    if isinstance(value, int):
        return {"kind": "pyint", "value": str(value)}, None
    if type(value) is float:
        return {"kind": "pyfloat", "hex": value.hex()}, None
    if isinstance(value, str):
        return {"kind": "object", "type": "str", "value": value}, None
    if value is None:
        return {"kind": "object", "type": "none", "value": None}, None
    if isinstance(value, list):
        return {"kind": "object", "type": "list", "value": value}, None
    if isinstance(value, tuple):
        return {"kind": "object", "type": "tuple", "value": list(value)}, None
    if isinstance(value, complex):
        return {"kind": "object", "type": "complex", "value": [value.real, value.imag]}, None
    raise TypeError(f"no descriptor for {value!r}")


def decode(desc, arrays):
    kind = desc["kind"]
    if kind == "array":
        return np.array(arrays[desc["key"]], copy=True)
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
        return {
            "str": lambda: v,
            "none": lambda: None,
            "list": lambda: list(v),
            "tuple": lambda: tuple(v),
            "complex": lambda: complex(v[0], v[1]),
        }[t]()
    raise ValueError(desc)


# --------------------------------------------------------------------------------------------
# running MindSpore

_ms = None


def mindspore():
    global _ms
    if _ms is None:
        import mindspore as ms

        ms.set_device("CPU")
        ms.set_context(mode=ms.PYNATIVE_MODE)
        _ms = ms
    return _ms


class CaptureStderr:
    """Collect what the C++ side writes to file descriptor 2 (MindSpore's kernel error log)."""

    def __enter__(self):
        sys.stderr.flush()
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()
        return False


def clean_message(exc):
    text = str(exc)
    cut = text.find("\n----------------------------------------------------\n- C++ Call Stack")
    if cut >= 0:
        text = text[:cut]
    return text.strip()[:300]


def kernel_detail(log):
    lines = [m.group(1) for m in re.finditer(r"\[ERROR\][^\n]*?\] (For '[^\n]*)", log)]
    return " | ".join(lines)[:300]


def run_mindspore(values, use_locking, call):
    """Run one case; returns ("ok", [var, m, v, vhat]) or ("error", type, message, detail)."""
    ms = mindspore()
    from mindspore import Parameter, Tensor, ops

    with CaptureStderr() as cap:
        try:
            op = ops.ApplyAdamWithAmsgradV2(use_locking)
            args = []
            for name, val in zip(NAMES, values, strict=True):
                if isinstance(val, np.ndarray):
                    t = Tensor(val)
                    args.append(Parameter(t, name=name) if name in STATE else t)
                else:
                    args.append(val)
            if call == "vmap":

                def f(var, m, v, vhat, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
                    return op(
                        var, m, v, vhat, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad
                    )

                in_axes = tuple(
                    0 if isinstance(val, np.ndarray) and val.ndim >= 1 else None for val in values
                )
                out = ms.vmap(f, in_axes=in_axes)(*args)
            else:
                out = op(*args)
            state = [args[i].asnumpy().copy() for i in range(4)]
            returned = [o.asnumpy() for o in out]
            result = ("ok", state)
        except Exception as e:  # every MindSpore error is golden data
            result = None
            err = e
    if result is None:
        return ("error", type(err).__name__, clean_message(err), kernel_detail(cap.text))
    for s, r in zip(state, returned, strict=True):
        if s.shape != r.shape or not np.array_equal(s, r, equal_nan=True):
            print("WARNING: returned tuple differs from the Parameters", file=sys.stderr)
    return result


# --------------------------------------------------------------------------------------------
# building cases


class Builder:
    """Collects cases; MindSpore runs them later, in fresh processes (see ``run_all``)."""

    def __init__(self):
        self.cases = []
        self.arrays = {}
        self.ids = set()
        self.jobs = []  # (case, rebuilt values, use_locking value, call, isolate, must_fail)

    def add(
        self,
        cid,
        tags,
        values,
        *,
        use_locking=False,
        call="direct",
        deliberate=False,
        must_fail=False,
    ):
        assert re.fullmatch(r"[a-z0-9_.+-]+", cid), cid
        assert cid not in self.ids, cid
        self.ids.add(cid)
        assert len(values) == 11
        args = {}
        for name, val in zip(NAMES, values, strict=True):
            desc, arr = encode(val, f"{cid}__{name}")
            if arr is not None:
                self.arrays[desc["key"]] = arr
            args[name] = desc
        if type(use_locking) is bool:
            ul = use_locking
        else:
            ul, arr = encode(use_locking, None)
            assert arr is None
        tags = sorted(set(tags))
        case = {
            "id": cid,
            "tags": tags,
            "use_locking": ul,
            "args": args,
            "call": call,
            "deliberate": deliberate,
            "expect": None,
        }
        # MindSpore sees exactly what the test will rebuild from the descriptors.
        rebuilt = [decode(args[n], self.arrays) for n in NAMES]
        ul_value = ul if type(ul) is bool else decode(ul, self.arrays)
        isolate = has_subnormal(rebuilt)
        self.jobs.append((case, rebuilt, ul_value, call, isolate, must_fail))
        self.cases.append(case)
        return case

    def run_all(self, workers=2):
        """Run every case through MindSpore in fresh processes.

        MindSpore 2.10 (CPU, PyNative) runs the first 5 launches of a kernel with a given
        signature (input shapes and dtypes) under IEEE rules and every later launch with the
        MXCSR flags FTZ and DAZ set (subnormal inputs read as zero, subnormal results written as
        zero). The golden data records the IEEE behaviour: within one process no kernel signature
        is launched more than ``LAUNCHES`` times (counted conservatively by ``launch_keys``), and
        every case holding a subnormal value gets a process of its own.
        """
        import multiprocessing as mp

        batches = []  # [list of job indices, key counts]
        for i, job in enumerate(self.jobs):
            keys = [] if job[5] else launch_keys(job[1], job[3])
            if job[4]:
                batches.append([[i], None])  # isolated: nothing else goes in
                continue
            for bt in batches:
                if (
                    bt[1] is not None
                    and len(bt[0]) < MAX_BATCH
                    and all(bt[1].get(k, 0) + keys.count(k) <= LAUNCHES for k in keys)
                ):
                    break
            else:
                bt = [[], {}]
                batches.append(bt)
            bt[0].append(i)
            for k in keys:
                bt[1][k] = bt[1].get(k, 0) + 1
        batches = [bt[0] for bt in batches]
        payload = [
            [(self.jobs[i][1], self.jobs[i][2], self.jobs[i][3]) for i in b] for b in batches
        ]
        print(f"running {len(self.jobs)} cases in {len(batches)} fresh MindSpore processes")
        ctx = mp.get_context("spawn")
        with ctx.Pool(processes=workers, maxtasksperchild=1) as pool:
            results = pool.map(_worker, payload, chunksize=1)
        for b, res in zip(batches, results, strict=True):
            for i, r in zip(b, res, strict=True):
                case, must_fail = self.jobs[i][0], self.jobs[i][5]
                cid = case["id"]
                if r[0] == "ok":
                    out = []
                    for name, a in zip(STATE, r[1], strict=True):
                        key = f"{cid}__out_{name}"
                        self.arrays[key] = a
                        out.append(key)
                    case["expect"] = {"kind": "ok", "out": out}
                else:
                    case["expect"] = {"kind": "error", "type": r[1], "message": r[2]}
                    if r[3]:
                        case["expect"]["detail"] = r[3]
                if must_fail and r[0] != "error":
                    raise AssertionError(f"{cid}: MindSpore accepted it")


LAUNCHES = 5
MAX_BATCH = 60


def launch_keys(values, call):
    """Conservative keys of the kernels a case launches (the ApplyAdam kernel, and one Cast per
    tensor whose dtype is not var's)."""
    var = values[0]
    if not isinstance(var, np.ndarray):
        return [("adam", call, type(var).__name__)]
    keys = [("adam", call, var.dtype.str, var.shape)]
    for x in values[4:]:
        if isinstance(x, np.ndarray) and x.dtype != var.dtype:
            keys.append(("cast", x.dtype.str, x.shape, var.dtype.str))
    return keys


def _worker(jobs):
    ms = mindspore()
    assert ms.__version__ == "2.10.0", ms.__version__
    return [run_mindspore(values, ul, call) for values, ul, call in jobs]


def has_subnormal(values):
    for x in values:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            a = np.abs(x[np.isfinite(x)])
            if np.any((a > 0) & (a < np.finfo(x.dtype).tiny)):
                return True
        elif isinstance(x, (float, np.floating)):
            for t in (np.float32, np.float64):
                with np.errstate(all="ignore"):
                    y = abs(t(x))
                if 0 < y < np.finfo(t).tiny:
                    return True
    return False


def default_hypers():
    # beta1_power, beta2_power, lr, beta1, beta2, epsilon
    return [0.9, 0.999, 0.01, 0.9, 0.999, 1e-8]


def rand_state(rng, dt, shape, scale=1.0):
    var = np.asarray(rng.standard_normal(shape) * scale).astype(dt)
    m = np.asarray(rng.standard_normal(shape) * scale).astype(dt)
    v = np.asarray(rng.standard_normal(shape) * scale) ** 2
    vhat = np.asarray(v * rng.uniform(0.5, 1.5, shape))
    grad = np.asarray(rng.standard_normal(shape) * scale).astype(dt)
    return [var, m, np.asarray(v).astype(dt), vhat.astype(dt)], grad


def vals(state, hypers, grad):
    return [*state, *hypers, grad]


def shape_id(shape):
    return "x".join(str(s) for s in shape) if shape else "0d"


def special_pool(dt):
    fi = np.finfo(dt)
    tiny_sub = fi.smallest_subnormal
    big = np.sqrt(fi.max).astype(dt) * dt(4)  # its square overflows
    return np.array(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -2.0,
            np.nan,
            np.inf,
            -np.inf,
            tiny_sub,
            -tiny_sub,
            fi.smallest_normal - tiny_sub,
            fi.smallest_normal,
            fi.max,
            -fi.max,
            big,
            -big,
            3.0,
            1e-3,
        ],
        dtype=dt,
    )


def build(b: Builder):
    rng = np.random.default_rng(20240610)

    # ---- the documentation's worked example -------------------------------------------------
    ex = [
        np.array([[0.2, 0.2], [0.2, 0.2]], f32),
        np.array([[0.1, 0.2], [0.4, 0.3]], f32),
        np.array([[0.2, 0.1], [0.3, 0.4]], f32),
        np.array([[0.1, 0.2], [0.6, 0.2]], f32),
    ]
    b.add(
        "doc_example",
        ["doc", "f32", "random"],
        vals(ex, [0.9, 0.999, 0.01, 0.8, 0.999, 1e-8], np.array([[0.4, 0.2], [0.2, 0.3]], f32)),
    )

    # ---- random values, all dtypes, many shapes -----------------------------------------------
    shapes = [
        (1,),
        (7,),
        (33,),
        (1031,),
        (5000,),
        (70, 80),
        (2, 3),
        (4, 5, 6),
        (2, 3, 4, 5),
        (2, 1, 3, 2, 4),
        (0,),
        (3, 0, 2),
    ]
    scales = {f16: [1e-2, 1.0, 10.0], f32: [1e-3, 1.0, 1e3], f64: [1e-6, 1.0, 1e6]}
    for dt in FLOATS:
        for i, shape in enumerate(shapes):
            scale = scales[dt][i % 3]
            state, grad = rand_state(rng, dt, shape, scale)
            hyp = [
                float(rng.uniform(0.01, 0.99)),
                float(rng.uniform(0.5, 0.9999)),
                float(10 ** rng.uniform(-4, 0)),
                float(rng.uniform(0.5, 0.99)),
                float(rng.uniform(0.9, 0.9999)),
                float(10 ** rng.uniform(-8, -2)),
            ]
            if i % 4 == 1:  # hyper-parameters as 0-d tensors of var's dtype
                hyp = [np.array(h, dt) for h in hyp]
            tags = ["random", DT[dt], f"ndim{len(shape)}"]
            size = int(np.prod(shape))
            if size == 0:
                tags.append("size0")
            if size > 4096:
                tags.append("large")
            b.add(f"random_{DT[dt]}_{shape_id(shape)}", tags, vals(state, hyp, grad))
    # a few more: odd tail sizes at other scales, and bigger steps
    for dt in FLOATS:
        for n in (15, 17, 4097):
            state, grad = rand_state(rng, dt, (n,), 0.3)
            hyp = [0.5, 0.75, 0.5, 0.5, 0.75, 1e-3]
            b.add(
                f"random_bigstep_{DT[dt]}_{n}",
                ["random", DT[dt], "ndim1"] + (["large"] if n > 4096 else []),
                vals(state, hyp, grad),
            )

    # ---- special values ----------------------------------------------------------------------
    for dt in FLOATS:
        d = DT[dt]
        pool = special_pool(dt)
        n = 1500
        idx = rng.integers(0, len(pool), size=(5, n))
        var, m, v, vhat, grad = (pool[i].copy() for i in idx)
        b.add(
            f"special_combo_{d}",
            ["special", d, "ndim1"],
            vals([var, m, v, vhat], default_hypers(), grad),
        )
        idx = rng.integers(0, len(pool), size=(5, 6, 7))
        var, m, v, vhat, grad = (pool[i].copy() for i in idx)
        b.add(
            f"special_combo_eps0_{d}",
            ["special", d, "ndim2"],
            vals([var, m, v, vhat], [0.9, 0.999, 0.01, 0.9, 0.999, 0.0], grad),
        )
        # non-negative v/vhat only (the realistic domain) with specials in var/m/grad
        idx = rng.integers(0, len(pool), size=(3, 300))
        var, m, grad = (pool[i].copy() for i in idx)
        vp = np.abs(pool[rng.integers(0, len(pool), 300)])
        vh = np.abs(pool[rng.integers(0, len(pool), 300)])
        b.add(
            f"special_nonneg_v_{d}",
            ["special", d, "ndim1"],
            vals([var, m, vp, vh], [0.5, 0.25, 1.0, 0.9, 0.99, 1e-4], grad),
        )

        fi = np.finfo(dt)
        z = np.zeros(5, dt)
        b.add(
            f"special_zeros_{d}",
            ["special", d, "zeros"],
            vals([z.copy(), z.copy(), z.copy(), z.copy()], default_hypers(), z.copy()),
        )
        b.add(
            f"special_zeros_eps0_{d}",
            ["special", d, "zeros"],
            vals(
                [np.ones(5, dt), z.copy(), z.copy(), z.copy()],
                [0.9, 0.999, 0.01, 0.9, 0.999, 0.0],
                z.copy(),
            ),
        )
        b.add(
            f"special_zero_grad_eps0_{d}",
            ["special", d, "zeros"],
            vals(
                [np.ones(4, dt), np.array([1, -1, 0, -0.0], dt), z[:4].copy(), z[:4].copy()],
                [0.9, 0.999, 0.01, 0.9, 0.999, 0.0],
                z[:4].copy(),
            ),
        )
        big = np.sqrt(fi.max).astype(dt) * dt(2)
        g = np.array([big, -big, fi.max, -fi.max, big / dt(4), 1], dt)
        b.add(
            f"special_grad_sq_overflow_{d}",
            ["special", d, "overflow"],
            vals(
                [np.ones(6, dt), np.zeros(6, dt), np.ones(6, dt), np.ones(6, dt)],
                default_hypers(),
                g,
            ),
        )
        b.add(
            f"special_state_huge_{d}",
            ["special", d, "overflow"],
            vals(
                [
                    np.full(4, fi.max, dt),
                    np.array([fi.max, -fi.max, fi.max, 1], dt),
                    np.full(4, fi.max, dt),
                    np.array([fi.max, 0, 1, fi.max], dt),
                ],
                [0.5, 0.5, 2.0, 0.5, 0.5, 1e-8],
                np.array([-fi.max, fi.max, 1, -1], dt),
            ),
        )
        # vhat < v, vhat > v, equal (after the v update)
        v0 = np.array([1.0, 1.0, 1.0, 0.25, 4.0, 0.0], dt)
        vh0 = np.array([0.5, 2.0, 1.0, 0.25, 4.0, 0.0], dt)
        gg = np.array([1.0, 1.0, 1.0, 0.5, 2.0, 0.0], dt)
        b.add(
            f"special_vhat_vs_v_{d}",
            ["special", d, "vhat"],
            vals([np.ones(6, dt), np.full(6, 0.5, dt), v0, vh0], default_hypers(), gg),
        )
        b.add(
            f"special_vhat_vs_v_beta2_one_{d}",
            ["special", d, "vhat"],
            vals(
                [np.ones(6, dt), np.full(6, 0.5, dt), v0, vh0],
                [0.9, 0.999, 0.01, 0.9, 1.0, 1e-8],
                gg,
            ),
        )
        nan = np.nan
        b.add(
            f"special_nan_in_v_{d}",
            ["special", d, "nan"],
            vals(
                [
                    np.ones(4, dt),
                    np.ones(4, dt),
                    np.array([nan, nan, 1, 0], dt),
                    np.array([0.5, 2, nan, nan], dt),
                ],
                default_hypers(),
                np.ones(4, dt),
            ),
        )
        b.add(
            f"special_nan_elsewhere_{d}",
            ["special", d, "nan"],
            vals(
                [
                    np.array([nan, 1, 1, 1], dt),
                    np.array([1, nan, 1, 1], dt),
                    np.ones(4, dt),
                    np.ones(4, dt),
                ],
                default_hypers(),
                np.array([1, 1, nan, -nan], dt),
            ),
        )
        inf = np.inf
        b.add(
            f"special_inf_{d}",
            ["special", d, "inf"],
            vals(
                [
                    np.array([inf, -inf, 1, 1, 1, inf], dt),
                    np.array([1, 1, inf, -inf, 1, 1], dt),
                    np.array([1, 1, 1, 1, inf, inf], dt),
                    np.array([1, 1, 1, inf, 1, 1], dt),
                ],
                default_hypers(),
                np.array([1, 1, 1, 1, -inf, inf], dt),
            ),
        )
        b.add(
            f"special_signed_zero_{d}",
            ["special", d, "signed-zero"],
            vals(
                [
                    np.array([-0.0, -0.0, 0.0, -0.0, 0.0], dt),
                    np.array([0.0, -0.0, -0.0, -0.0, 0.0], dt),
                    np.zeros(5, dt),
                    np.array([1, 1, 1, 0, 0], dt),
                ],
                [0.9, 0.999, 0.01, 1.0, 0.999, 1e-8],
                np.array([0.0, -0.0, -0.0, 0.0, -0.0], dt),
            ),
        )
        b.add(
            f"special_signed_zero_lr0_{d}",
            ["special", d, "signed-zero"],
            vals(
                [
                    np.array([-0.0, -0.0, 0.0, 0.0], dt),
                    np.array([1, -1, 1, -1], dt),
                    np.ones(4, dt),
                    np.ones(4, dt),
                ],
                [0.9, 0.999, 0.0, 0.9, 0.999, 1e-8],
                np.array([1, -1, -1, 1], dt),
            ),
        )
        sub = fi.smallest_subnormal
        b.add(
            f"special_subnormal_{d}",
            ["special", d, "subnormal"],
            vals(
                [
                    np.array([sub, -sub, 3 * sub, 1], dt),
                    np.array([sub, sub, -sub, 0], dt),
                    np.array([sub, 0, sub, sub], dt),
                    np.array([0, sub, sub, 2 * sub], dt),
                ],
                [0.9, 0.999, 0.01, 0.9, 0.999, 0.0],
                np.array([sub, -sub, 2 * sub, sub], dt),
            ),
        )

    # ---- special hyper-parameter values ---------------------------------------------------------
    specials = {
        "b1p_one": [1.0, 0.999, 0.01, 0.9, 0.999, 1e-8],
        "b1p_gt_one": [1.5, 0.999, 0.01, 0.9, 0.999, 1e-8],
        "b2p_one": [0.9, 1.0, 0.01, 0.9, 0.999, 1e-8],
        "b2p_gt_one": [0.9, 1.5, 0.01, 0.9, 0.999, 1e-8],
        "b2p_neg": [0.9, -3.0, 0.01, 0.9, 0.999, 1e-8],
        "eps0": [0.9, 0.999, 0.01, 0.9, 0.999, 0.0],
        "eps_neg": [0.9, 0.999, 0.01, 0.9, 0.999, -1.0],
        "lr_inf": [0.9, 0.999, float("inf"), 0.9, 0.999, 1e-8],
        "lr_ninf": [0.9, 0.999, float("-inf"), 0.9, 0.999, 1e-8],
        "lr_nan": [0.9, 0.999, float("nan"), 0.9, 0.999, 1e-8],
        "lr_neg": [0.9, 0.999, -0.5, 0.9, 0.999, 1e-8],
        "lr_zero": [0.9, 0.999, 0.0, 0.9, 0.999, 1e-8],
        "beta1_one": [0.9, 0.999, 0.01, 1.0, 0.999, 1e-8],
        "beta1_zero": [0.9, 0.999, 0.01, 0.0, 0.999, 1e-8],
        "beta1_nan": [0.9, 0.999, 0.01, float("nan"), 0.999, 1e-8],
        "beta2_neg": [0.9, 0.999, 0.01, 0.9, -1.0, 1e-8],
        "b1p_inf": [float("inf"), 0.999, 0.01, 0.9, 0.999, 1e-8],
        "eps_inf": [0.9, 0.999, 0.01, 0.9, 0.999, float("inf")],
    }
    for k, (name, hyp) in enumerate(specials.items()):
        dt = FLOATS[k % 3]
        state, grad = rand_state(rng, dt, (9,), 1.0)
        state[1][0] = 0  # m = 0 somewhere
        grad[0] = 0
        b.add(
            f"hyper_special_{name}_{DT[dt]}",
            ["hyper-special", DT[dt], "special"],
            vals(state, hyp, grad),
        )
    # beta1_power = 1 with 0-d tensors in every dtype
    for dt in FLOATS:
        state, grad = rand_state(rng, dt, (5,), 1.0)
        hyp = [
            np.array(1, dt),
            np.array(0.5, dt),
            np.array(0.1, dt),
            np.array(0.9, dt),
            np.array(0.99, dt),
            np.array(1e-3, dt),
        ]
        b.add(
            f"hyper_special_b1p_one_0d_{DT[dt]}",
            ["hyper-special", DT[dt], "hyper-0d"],
            vals(state, hyp, grad),
        )

    # ---- hyper-parameter kinds ----------------------------------------------------------------
    base_val = {
        "beta1_power": 0.9**7,
        "beta2_power": 0.999**7,
        "lr": 0.1,
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-7,
    }
    dbl = 1 + 2**-11 + 2**-40  # float32 rounds it to 1 + 2**-11: a float16 tie -> 1.0
    dbl_val = {
        "beta1_power": 0.5 * dbl,
        "beta2_power": 0.5 * dbl,
        "lr": 2**-7 * dbl,
        "beta1": dbl,
        "beta2": 0.5 * dbl,
        "epsilon": 2**-10 * dbl,
    }

    def hyper_case(cid, tags, dt, name, value, shape=(33,)):
        state, grad = rand_state(rng, dt, shape, 1.0)
        hyp = dict(zip(HYPERS, [0.9, 0.999, 0.01, 0.9, 0.999, 1e-8], strict=True))
        hyp[name] = value
        return b.add(
            cid, ["hyper-kind", DT[dt], *tags], vals(state, [hyp[h] for h in HYPERS], grad)
        )

    for name in HYPERS:
        hyper_case(f"pyfloat_round32_f64_{name}", ["pyfloat"], f64, name, base_val[name])
        hyper_case(f"pyfloat_round32_f32_{name}", ["pyfloat"], f32, name, base_val[name])
        hyper_case(f"pyfloat_double_round_f16_{name}", ["pyfloat"], f16, name, dbl_val[name])
        hyper_case(
            f"npfloat64_round32_f64_{name}", ["npscalar"], f64, name, np.float64(base_val[name])
        )
        hyper_case(
            f"npfloat64_double_round_f16_{name}", ["npscalar"], f16, name, np.float64(dbl_val[name])
        )
        hyper_case(f"npfloat16_f32_{name}", ["npscalar"], f32, name, np.float16(base_val[name]))
        hyper_case(f"npfloat32_f64_{name}", ["npscalar"], f64, name, np.float32(base_val[name]))
        hyper_case(
            f"tensor0d_f16_f32_{name}", ["hyper-0d"], f32, name, np.array(base_val[name], f16)
        )
        hyper_case(
            f"tensor0d_f32_f64_{name}", ["hyper-0d"], f64, name, np.array(base_val[name], f32)
        )
        hyper_case(
            f"tensor0d_same_f16_{name}", ["hyper-0d"], f16, name, np.array(base_val[name], f16)
        )
    ints = {"beta1_power": 0, "beta2_power": 0, "lr": 2, "beta1": 0, "beta2": 1, "epsilon": 1}
    for name in HYPERS:
        hyper_case(f"pyint_{name}", ["pyint"], f32, name, ints[name])
        hyper_case(f"pybool_true_{name}", ["pybool"], f64, name, True)
        hyper_case(
            f"tensor0d_int32_{name}",
            ["hyper-0d", "int-tensor"],
            f16,
            name,
            np.array(ints[name], np.int32),
        )
    for name in ("lr", "beta1", "epsilon"):
        hyper_case(f"pybool_false_{name}", ["pybool"], f32, name, False)
        hyper_case(f"npint64_{name}", ["npscalar"], f32, name, np.int64(ints[name]))
        hyper_case(f"npbool_{name}", ["npscalar"], f16, name, np.bool_(True))
    hyper_case("npint8_lr", ["npscalar"], f32, "lr", np.int8(-3))
    hyper_case("npint16_lr", ["npscalar"], f64, "lr", np.int16(300))
    hyper_case("npuint8_beta1", ["npscalar"], f32, "beta1", np.uint8(1))
    hyper_case("npuint16_lr", ["npscalar"], f16, "lr", np.uint16(7))
    hyper_case("npuint64_lr", ["npscalar"], f64, "lr", np.uint64(2**53 + 1))
    hyper_case("tensor0d_int64_lr", ["hyper-0d", "int-tensor"], f32, "lr", np.array(3, np.int64))
    hyper_case("tensor0d_bool_beta1", ["hyper-0d", "int-tensor"], f32, "beta1", np.array(True))
    hyper_case("tensor0d_uint8_lr", ["hyper-0d", "int-tensor"], f64, "lr", np.array(200, np.uint8))
    hyper_case(
        "tensor0d_int32_overflow_f16_lr",
        ["hyper-0d", "int-tensor", "overflow"],
        f16,
        "lr",
        np.array(70000, np.int32),
    )
    hyper_case(
        "tensor0d_int64_round_f32_lr",
        ["hyper-0d", "int-tensor"],
        f32,
        "lr",
        np.array(2**60 + 2**36 + 1, np.int64),
    )
    hyper_case("tensor0d_f16_f64_lr", ["hyper-0d"], f64, "lr", np.array(0.1, f16))
    hyper_case("tensor0d_f64_f64_lr", ["hyper-0d"], f64, "lr", np.array(0.1, f64))
    hyper_case("tensor0d_f32_f32_lr", ["hyper-0d"], f32, "lr", np.array(0.1, f32))
    hyper_case("pyint_exact_f64_lr", ["pyint"], f64, "lr", 2**40 + 1)
    hyper_case("pyint_exact_f64_beta1", ["pyint"], f64, "beta1", -(2**53) - 2)
    hyper_case("pyint_round_f32_lr", ["pyint"], f32, "lr", 2**60 + 2**36 + 1)
    hyper_case("pyint_round_f64_lr", ["pyint"], f64, "lr", 2**63 - 1)
    hyper_case("pyint_min_int64_f64_lr", ["pyint"], f64, "lr", -(2**63))
    hyper_case("pyint_overflow_f16_lr", ["pyint", "overflow"], f16, "lr", 70000)
    hyper_case("pyint_overflow_f16_epsilon", ["pyint", "overflow"], f16, "epsilon", -65520)
    hyper_case("pyint_65519_f16_lr", ["pyint"], f16, "lr", 65519)
    hyper_case("pyfloat_overflow_f32_lr", ["pyfloat", "overflow"], f32, "lr", 1e39)
    hyper_case("pyfloat_overflow_f16_lr", ["pyfloat", "overflow"], f16, "lr", 1e5)
    hyper_case("pyfloat_overflow_f16_epsilon", ["pyfloat", "overflow"], f16, "epsilon", 65520.0)
    hyper_case("pyfloat_overflow_via_f32_f64_lr", ["pyfloat", "overflow"], f64, "lr", -1e39)
    hyper_case(
        "npfloat64_overflow_via_f32_f64_epsilon",
        ["npscalar", "overflow"],
        f64,
        "epsilon",
        np.float64(1e39),
    )
    hyper_case("pyfloat_underflow_f32_epsilon", ["pyfloat"], f32, "epsilon", 1e-46)
    hyper_case("pyfloat_subnormal32_f64_epsilon", ["pyfloat"], f64, "epsilon", 1e-40)
    hyper_case("pyfloat_1e-8_f16_epsilon", ["pyfloat"], f16, "epsilon", 1e-8)
    hyper_case("pyfloat_negzero_f32_beta1", ["pyfloat"], f32, "beta1", -0.0)
    hyper_case("pyfloat_round32_1031_f64_lr", ["pyfloat"], f64, "lr", 0.1, shape=(1031,))
    # single-element hyper-parameter tensors of rank >= 1 (MindSpore uses the element)
    hyper_case("single_elem_1_beta1", ["single-element"], f32, "beta1", np.array([0.5], f32))
    hyper_case(
        "single_elem_1x1_epsilon", ["single-element"], f64, "epsilon", np.array([[1e-3]], f64)
    )
    hyper_case(
        "single_elem_1_beta2_power_f16",
        ["single-element"],
        f32,
        "beta2_power",
        np.array([0.5], f16),
    )

    # ---- grad kinds ---------------------------------------------------------------------------
    def grad_case(cid, tags, dt, grad, shape=(17,)):
        state, _ = rand_state(rng, dt, shape, 1.0)
        return b.add(cid, ["grad-kind", DT[dt], *tags], vals(state, default_hypers(), grad))

    g = rng.standard_normal(17)
    grad_case("grad_f16_var_f32", ["grad-lower"], f32, g.astype(f16))
    grad_case("grad_f16_var_f64", ["grad-lower"], f64, g.astype(f16))
    grad_case("grad_f32_var_f64", ["grad-lower"], f64, g.astype(f32))
    grad_case(
        "grad_f16_specials_var_f32",
        ["grad-lower", "special"],
        f32,
        special_pool(f16)[rng.integers(0, 19, 17)],
    )
    gi = rng.integers(-5, 6, 17)
    for dt in FLOATS:
        grad_case(f"grad_int32_var_{DT[dt]}", ["grad-int"], dt, gi.astype(np.int32))
        grad_case(f"grad_int64_var_{DT[dt]}", ["grad-int"], dt, gi.astype(np.int64))
        grad_case(f"grad_bool_var_{DT[dt]}", ["grad-int"], dt, gi > 0)
    grad_case("grad_uint8_var_f32", ["grad-int"], f32, rng.integers(0, 256, 17).astype(np.uint8))
    grad_case("grad_int8_var_f16", ["grad-int"], f16, gi.astype(np.int8))
    grad_case("grad_int16_var_f64", ["grad-int"], f64, (gi * 1000).astype(np.int16))
    grad_case(
        "grad_int64_overflow_var_f16",
        ["grad-int", "overflow"],
        f16,
        np.array([70000, -70000, 65519, 65520, 2048 + 1, 1, 0, -1], np.int64),
        shape=(8,),
    )
    grad_case(
        "grad_int64_round_var_f32",
        ["grad-int"],
        f32,
        np.array([2**60 + 2**36 + 1, 2**24 + 1, -(2**62) - 1, 3], np.int64),
        shape=(4,),
    )

    # ---- errors -------------------------------------------------------------------------------
    def std(dt=f32, shape=(3,)):
        st, gr = rand_state(rng, dt, shape, 1.0)
        return st, gr

    def err_case(cid, tags, values, **kw):
        return b.add(cid, ["error", *tags], values, must_fail=True, **kw)

    one = np.ones(3)
    for dtn, dt in (("int32", np.int32), ("bool", np.bool_), ("uint8", np.uint8)):
        err_case(
            f"err_var_{dtn}",
            ["var-dtype"],
            vals([one.astype(dt) for _ in range(4)], default_hypers(), one.astype(dt)),
        )
    err_case(
        "err_var_int32_int_hypers",
        ["var-dtype"],
        vals([one.astype(np.int32) for _ in range(4)], [1, 1, 1, 1, 1, 1], one.astype(np.int32)),
    )
    err_case(
        "err_var_complex64",
        ["var-dtype"],
        vals([one.astype(np.complex64) for _ in range(4)], default_hypers(), one.astype(f32)),
    )
    err_case(
        "err_var_complex128",
        ["var-dtype"],
        vals(
            [one.astype(np.complex128) for _ in range(4)],
            default_hypers(),
            one.astype(np.complex128),
        ),
    )
    # conversions that would change var/m/v/vhat
    st, gr = std(f32)
    err_case(
        "err_conv_grad_f64_var_f32", ["conversion"], vals(st, default_hypers(), gr.astype(f64))
    )
    st, gr = std(f16)
    err_case(
        "err_conv_grad_f32_var_f16", ["conversion"], vals(st, default_hypers(), gr.astype(f32))
    )
    st, gr = std(f16)
    err_case(
        "err_conv_grad_f64_var_f16", ["conversion"], vals(st, default_hypers(), gr.astype(f64))
    )
    for name, dt, hdt in (
        ("lr", f32, f64),
        ("beta1", f16, f32),
        ("epsilon", f32, f64),
        ("beta1_power", f16, f64),
        ("beta2_power", f32, f64),
        ("beta2", f16, f32),
    ):
        st, gr = std(dt)
        hyp = dict(zip(HYPERS, default_hypers(), strict=True))
        hyp[name] = np.array(hyp[name], hdt)
        err_case(
            f"err_conv_{name}_0d_{DT[hdt]}_var_{DT[dt]}",
            ["conversion", "hyper-0d"],
            vals(st, [hyp[h] for h in HYPERS], gr),
        )
    st, gr = std(f32)
    hyp = default_hypers()
    hyp[2] = np.array([0.1], f64)
    err_case("err_conv_lr_1elem_f64_var_f32", ["conversion"], vals(st, hyp, gr))
    for name, dt, odt in (
        ("m", f32, f64),
        ("m", f32, f16),
        ("v", f16, f64),
        ("vhat", f64, f32),
        ("vhat", f32, f16),
        ("v", f64, f16),
    ):
        st, gr = std(dt)
        st[STATE.index(name)] = st[STATE.index(name)].astype(odt)
        err_case(
            f"err_conv_{name}_{DT[odt]}_var_{DT[dt]}",
            ["conversion", "state-dtype"],
            vals(st, default_hypers(), gr),
        )
    st, gr = std(f32)
    st[0] = st[0].astype(f16)
    err_case(
        "err_conv_var_f16_rest_f32", ["conversion", "state-dtype"], vals(st, default_hypers(), gr)
    )
    st, gr = std(f32)
    err_case(
        "err_complex128_grad",
        ["conversion", "complex"],
        vals(st, default_hypers(), gr.astype(np.complex128)),
    )
    st, gr = std(f64)
    err_case(
        "err_complex64_grad_var_f64",
        ["conversion", "complex"],
        vals(st, default_hypers(), gr.astype(np.complex64)),
    )
    st, gr = std(f32)
    hyp = default_hypers()
    hyp[3] = np.array(0.9, np.complex64)
    err_case("err_complex64_0d_beta1", ["conversion", "complex"], vals(st, hyp, gr))
    # shapes
    for name, shape in (
        ("m", (4,)),
        ("v", (3, 1)),
        ("vhat", (2,)),
        ("grad", (4,)),
        ("grad", (1,)),
        ("grad", ()),
        ("m", ()),
        ("vhat", (1, 3)),
    ):
        st, gr = std(f32)
        arr = rng.standard_normal(shape).astype(f32)
        values = vals(st, default_hypers(), gr)
        values[NAMES.index(name)] = arr
        err_case(f"err_shape_{name}_{shape_id(shape)}", ["shape"], values)
    st, gr = std(f64, (2, 3))
    values = vals(st, default_hypers(), gr.T.copy())
    err_case("err_shape_grad_transposed", ["shape"], values)
    st, gr = std(f32)
    err_case("err_shape_grad_pyfloat", ["shape", "spec-edge"], vals(st, default_hypers(), 0.5))
    # objects
    objects = {"str": "0.1", "none": None, "list": [0.1], "tuple": (0.1,), "complex": 0.1 + 0j}
    for name in (*HYPERS, "grad"):
        for oname, obj in objects.items():
            st, gr = std(f32)
            values = vals(st, default_hypers(), gr)
            values[NAMES.index(name)] = obj
            err_case(f"err_object_{name}_{oname}", ["object"], values)
    for name, obj, oname in (
        ("var", [0.5, 0.5, 0.5], "list"),
        ("m", None, "none"),
        ("vhat", "x", "str"),
    ):
        st, gr = std(f32)
        values = vals(st, default_hypers(), gr)
        values[NAMES.index(name)] = obj
        err_case(f"err_object_{name}_{oname}", ["object"], values)
    # NumPy scalar types MindSpore 2.10 does not accept
    for name, obj, oname in (
        ("lr", np.int32(3), "int32"),
        ("beta1", np.int32(0), "int32"),
        ("epsilon", np.uint32(1), "uint32"),
    ):
        st, gr = std(f32)
        values = vals(st, default_hypers(), gr)
        values[NAMES.index(name)] = obj
        err_case(f"err_npscalar_{oname}_{name}", ["npscalar", "spec-gap"], values)
    # Python / NumPy integers that do not fit in int64
    for cid, name, obj in (
        ("err_pyint_2p63_lr", "lr", 2**63),
        ("err_pyint_neg_2p63m1_beta1", "beta1", -(2**63) - 1),
        ("err_pyint_2p70_epsilon", "epsilon", 2**70),
        ("err_npuint64_2p63_lr", "lr", np.uint64(2**63)),
    ):
        st, gr = std(f64)
        values = vals(st, default_hypers(), gr)
        values[NAMES.index(name)] = obj
        err_case(cid, ["pyint", "spec-contradiction"], values)
    # use_locking
    for cid, ul in (
        ("err_use_locking_int1", 1),
        ("err_use_locking_str", "yes"),
        ("err_use_locking_none", None),
        ("err_use_locking_npbool", np.bool_(True)),
        ("err_use_locking_float", 0.0),
    ):
        st, gr = std(f32)
        err_case(cid, ["use-locking"], vals(st, default_hypers(), gr), use_locking=ul)
    st, gr = std(f32)
    b.add(
        "use_locking_true", ["use-locking", "f32"], vals(st, default_hypers(), gr), use_locking=True
    )

    # ---- vmap ---------------------------------------------------------------------------------
    def vmap_case(cid, tags, dt, shape, hyp, state=None, grad=None, deliberate=False):
        if state is None:
            state, grad = rand_state(rng, dt, shape, 1.0)
        c = b.add(
            cid, ["vmap", DT[dt], *tags], vals(state, hyp, grad), call="vmap", deliberate=deliberate
        )
        return c

    def rows(lo, hi, dt=f32, n=3):
        return np.sort(rng.uniform(lo, hi, n)).astype(dt)

    for dt in FLOATS:
        for n in (4, 33):
            hyp = [rows(0.1, 0.95, dt), rows(0.5, 0.999, dt), rows(1e-3, 0.5, dt), 0.9, 0.999, 1e-8]
            vmap_case(f"vmap_{DT[dt]}_3x{n}", [], dt, (3, n), hyp)
    vmap_case(
        "vmap_f32_3x1031",
        ["odd-size"],
        f32,
        (3, 1031),
        [rows(0.1, 0.95), rows(0.5, 0.999), rows(1e-3, 0.5), 0.8, 0.99, 1e-6],
    )
    vmap_case(
        "vmap_f64_3x2x5",
        ["ndim3"],
        f64,
        (3, 2, 5),
        [rows(0.1, 0.95, f64), rows(0.5, 0.999, f64), rows(1e-3, 0.5, f64), 0.8, 0.99, 1e-6],
    )
    vmap_case(
        "vmap_f32_lr_scalar",
        [],
        f32,
        (3, 7),
        [rows(0.1, 0.95), rows(0.5, 0.999), 0.01, 0.9, 0.999, 1e-8],
    )
    vmap_case(
        "vmap_f32_hyper_0d",
        ["hyper-0d"],
        f32,
        (3, 7),
        [
            rows(0.1, 0.95),
            np.array(0.99, f32),
            rows(1e-3, 0.5),
            np.array(0.9, f32),
            np.array(0.999, f32),
            np.array(1e-8, f32),
        ],
    )
    vmap_case(
        "vmap_f32_rows_f16",
        ["grad-lower"],
        f32,
        (3, 7),
        [rows(0.1, 0.95, f16), rows(0.5, 0.999, f16), rows(1e-3, 0.5, f16), 0.9, 0.999, 1e-8],
    )
    vmap_case(
        "vmap_f32_equal_rows_beta",
        [],
        f32,
        (3, 6),
        [
            rows(0.1, 0.95),
            rows(0.5, 0.999),
            rows(1e-3, 0.5),
            np.full(3, 0.8, f32),
            np.full(3, 0.99, f32),
            np.full(3, 1e-4, f32),
        ],
    )
    vmap_case(
        "vmap_f16_special_rows",
        ["special"],
        f16,
        (3, 5),
        [
            np.array([1.0, 0.5, 0.9], f16),
            np.array([0.5, 1.0, 1.5], f16),
            np.array([np.inf, 0.1, np.nan], f16),
            0.9,
            0.999,
            0.0,
        ],
    )
    # deliberate: distinct per-row beta1/beta2/epsilon (MindSpore uses row 0 for all rows)
    vmap_case(
        "vmap_rows_beta1_f32",
        ["deliberate:rows"],
        f32,
        (3, 8),
        [
            rows(0.1, 0.95),
            rows(0.5, 0.999),
            rows(1e-3, 0.5),
            np.array([0.9, 0.5, 0.1], f32),
            0.999,
            1e-8,
        ],
        deliberate=True,
    )
    vmap_case(
        "vmap_rows_all_f64",
        ["deliberate:rows"],
        f64,
        (3, 5),
        [
            rows(0.1, 0.95, f64),
            rows(0.5, 0.999, f64),
            rows(1e-3, 0.5, f64),
            np.array([0.9, 0.5, 0.1]),
            np.array([0.999, 0.9, 0.5]),
            np.array([1e-8, 1e-3, 1.0]),
        ],
        deliberate=True,
    )
    vmap_case(
        "vmap_rows_eps_f16",
        ["deliberate:rows"],
        f16,
        (3, 4),
        [
            rows(0.1, 0.95, f16),
            rows(0.5, 0.999, f16),
            rows(1e-3, 0.5, f16),
            0.9,
            0.999,
            np.array([1e-3, 0.5, 2.0], f16),
        ],
        deliberate=True,
    )

    # ---- other deliberate differences ----------------------------------------------------------
    for dt in FLOATS:
        st, gr = rand_state(rng, dt, (), 1.0)
        b.add(
            f"deliberate_0d_var_{DT[dt]}",
            ["deliberate:0d-var", DT[dt], "ndim0"],
            vals(st, default_hypers(), gr),
            deliberate=True,
        )
    st, gr = rand_state(rng, f32, (), 1.0)
    b.add(
        "deliberate_0d_var_0d_hypers",
        ["deliberate:0d-var", "f32", "ndim0"],
        vals(st, [np.array(x, f32) for x in default_hypers()], gr),
        deliberate=True,
    )
    for dt in (f32, f64):
        st, gr = rand_state(rng, dt, (6,), 1.0)
        hyp = default_hypers()
        hyp[2] = np.array([0.05], dt)
        b.add(
            f"deliberate_lr_shape1_{DT[dt]}",
            ["deliberate:lr-shape1", DT[dt]],
            vals(st, hyp, gr),
            deliberate=True,
        )
    st, gr = rand_state(rng, f32, (2, 3), 1.0)
    hyp = default_hypers()
    hyp[2] = np.array([[0.05]], f16)
    b.add(
        "deliberate_lr_shape1x1_f16_var_f32",
        ["deliberate:lr-shape1", "f32"],
        vals(st, hyp, gr),
        deliberate=True,
    )
    for name, n, k in (
        ("beta1", 5, 2),
        ("beta2", 5, 3),
        ("epsilon", 5, 2),
        ("beta1_power", 5, 2),
        ("beta2_power", 4, 2),
    ):
        st, gr = rand_state(rng, f32, (n,), 1.0)
        hyp = dict(zip(HYPERS, default_hypers(), strict=True))
        hyp[name] = np.sort(rng.uniform(0.1, 0.9, k)).astype(f32)
        b.add(
            f"deliberate_multi_{name}_{k}_var_{n}",
            ["deliberate:hyper-multi", "f32"],
            vals(st, [hyp[h] for h in HYPERS], gr),
            deliberate=True,
        )
    st, gr = rand_state(rng, f32, (3, 4), 1.0)
    b.add(
        "deliberate_direct_rows_lr",
        ["deliberate:rows", "f32"],
        vals(st, [0.9, 0.999, np.array([0.01, 0.1, 1.0], f32), 0.9, 0.999, 1e-8], gr),
        deliberate=True,
    )
    st, gr = rand_state(rng, f64, (5,), 1.0)
    b.add(
        "deliberate_direct_rows_beta1_full_shape",
        ["deliberate:rows", "f64"],
        vals(st, [0.9, 0.999, 0.01, np.linspace(0.1, 0.9, 5), 0.999, 1e-8], gr),
        deliberate=True,
    )


# --------------------------------------------------------------------------------------------
# checking against the readable reference (optional)


def to_t(x, dt):
    if isinstance(x, np.ndarray):
        return x.astype(dt)
    if isinstance(x, (bool, np.bool_)):
        return np.asarray(int(x)).astype(dt)
    if isinstance(x, (int, np.integer)):
        return (
            np.asarray(x, np.int64).astype(dt)
            if not isinstance(x, np.uint64)
            else np.asarray(x).astype(dt)
        )
    return np.asarray(np.float32(x)).astype(dt)


def check_reference(b: Builder):
    sys.path.insert(0, str(HERE.parent.parent / "src"))
    from amsgrad.core.reference import step

    bad = 0
    checked = 0
    for c in b.cases:
        if c["expect"]["kind"] != "ok":
            continue
        values = [decode(c["args"][n], b.arrays) for n in NAMES]
        dt = values[0].dtype
        conv = [to_t(x, dt) for x in values]
        var = conv[0]
        # MindSpore's model: a direct call uses element 0 of any multi-element hyper-parameter;
        # under vmap lr, beta1_power and beta2_power are per row, beta1, beta2 and epsilon row 0.
        hyp = []
        for name, h in zip(HYPERS, conv[4:10], strict=True):
            if (
                h.ndim >= 1
                and h.size > 1
                and c["call"] == "vmap"
                and name in ("lr", "beta1_power", "beta2_power")
            ):
                h = h.reshape(h.shape + (1,) * (var.ndim - h.ndim))
            elif h.ndim >= 1:
                h = h.reshape(-1)[0]
            hyp.append(h)
        with np.errstate(all="ignore"):
            ref = step(conv[0], conv[1], conv[2], conv[3], conv[10], *hyp)
        got = [b.arrays[k] for k in c["expect"]["out"]]
        checked += 1
        for name, r, g in zip(STATE, ref, got, strict=True):
            r = np.asarray(r)
            u = f"u{g.itemsize}"
            nan = np.isnan(r) & np.isnan(g)
            same = (
                r.shape == g.shape
                and r.dtype == g.dtype
                and np.array_equal(r.view(u)[~nan], g.view(u)[~nan])
                and np.array_equal(np.isnan(r), np.isnan(g))
            )
            if not same:
                bad += 1
                diff = np.flatnonzero((r.view(u) != g.view(u)) & ~nan)[:5]
                print(
                    f"MISMATCH {c['id']} {name} at {diff}: ms={g.ravel()[diff]} "
                    f"ref={r.ravel()[diff]}"
                )
    print(
        f"reference check: {checked} ok cases (deliberate ones included), {bad} mismatching arrays"
    )
    return bad


# --------------------------------------------------------------------------------------------
# writing


def write_npz(path, arrays):
    """np.savez_compressed, but with fixed zip timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--check", action="store_true", help="compare every ok case to src/amsgrad/_reference.py"
    )
    ap.add_argument(
        "--check-only",
        action="store_true",
        help="only compare the files already written (needs no MindSpore)",
    )
    args = ap.parse_args(argv)
    if args.check_only:
        b = Builder()
        b.cases = json.loads(CASES_JSON.read_text())
        with np.load(ARRAYS_NPZ) as z:
            b.arrays = {k: z[k] for k in z.files}
        return 1 if check_reference(b) else 0
    b = Builder()
    build(b)
    b.run_all()
    CASES_JSON.write_text(json.dumps(b.cases, indent=1) + "\n")
    write_npz(ARRAYS_NPZ, b.arrays)
    n_del = sum(c["deliberate"] for c in b.cases)
    n_err = sum(c["expect"]["kind"] == "error" for c in b.cases)
    print(
        f"{len(b.cases)} cases ({len(b.cases) - n_del} non-deliberate, {n_del} deliberate, "
        f"{n_err} errors); {ARRAYS_NPZ.stat().st_size} bytes of arrays"
    )
    if args.check:
        return 1 if check_reference(b) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
