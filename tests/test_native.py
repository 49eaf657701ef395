"""Low-level tests of the native kernel ``amsgrad.core._native`` against the reference maths.

Everything is compared bit for bit (any NaN equals any NaN). The CI always builds the extension,
so it is imported directly. Most tests run the default (best) instruction-set level; the
``level`` fixture and ``test_every_level_matches_reference`` run every level the CPU supports in
this process (``set_simd``), and a subprocess checks ``AMSGRAD_SIMD=portable`` at import.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from amsgrad.core import _native
from amsgrad.core.reference import step

DTYPES = (np.float16, np.float32, np.float64)
SIZES = (0, 1, 7, 8, 15, 16, 17, 31, 33, 1000, 4097, 300000, 600_001)
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
ROLES = ("var", "m", "v", "vhat", "grad")


# ----------------------------------------------------------------------------------------------
# helpers


def same_bits(actual: np.ndarray, expected: np.ndarray) -> bool:
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.dtype != expected.dtype or actual.shape != expected.shape:
        return False
    uint = UINT[actual.dtype.itemsize]
    both_nan = np.isnan(actual) & np.isnan(expected)
    return bool(np.all((actual.view(uint) == expected.view(uint)) | both_nan))


def assert_same(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    if same_bits(actual, expected):
        return
    a, e = np.asarray(actual).ravel(), np.asarray(expected).ravel()
    uint = UINT[a.dtype.itemsize]
    bad = np.nonzero((a.view(uint) != e.view(uint)) & ~(np.isnan(a) & np.isnan(e)))[0]
    raise AssertionError(
        f"{what}: {bad.size} elements differ, first at {bad[:5].tolist()}: "
        f"actual {a[bad[:5]].tolist()} expected {e[bad[:5]].tolist()}"
    )


def make_state(rng: np.random.Generator, n: int, dtype) -> list[np.ndarray]:
    var = rng.standard_normal(n)
    m = rng.standard_normal(n) * 0.1
    v = np.abs(rng.standard_normal(n)) * 0.01
    vhat = v * rng.uniform(0.5, 1.5, n)
    grad = rng.standard_normal(n)
    return [np.ascontiguousarray(a, dtype=dtype) for a in (var, m, v, vhat, grad)]


def make_hyper(rng: np.random.Generator, nrows: int, dtype) -> np.ndarray:
    """hyper[k, r], k in (beta1_power, beta2_power, lr, beta1, beta2, epsilon)."""
    t = rng.integers(1, 50, nrows)
    beta1 = rng.uniform(0.5, 0.99, nrows)
    beta2 = rng.uniform(0.9, 0.9999, nrows)
    lr = 10.0 ** rng.uniform(-4, -1, nrows)
    eps = 10.0 ** rng.uniform(-8, -3, nrows)
    return np.stack([beta1**t, beta2**t, lr, beta1, beta2, eps]).astype(dtype)


def expected(state, hyper: np.ndarray, nrows: int = 1) -> list[np.ndarray]:
    """The reference result for flat state arrays and hyper of shape (6, nrows)."""
    n = state[0].size
    if n == 0:
        return [a.copy() for a in state[:4]]
    rows = [np.asarray(a).reshape(nrows, n // nrows) for a in state]
    hyp = [hyper[k].reshape(nrows, 1) for k in range(6)]
    out = step(*rows, *hyp)
    return [o.reshape(np.shape(a)) for o, a in zip(out, state, strict=False)]


def run_native(state, hyper: np.ndarray, nrows: int = 1):
    work = [a.copy() for a in state]
    result = _native.apply(*work, np.ascontiguousarray(hyper.reshape(-1)), nrows)
    return result, work


def check(state, hyper: np.ndarray, nrows: int = 1, what: str = "") -> None:
    want = expected(state, hyper, nrows)
    result, got = run_native(state, hyper, nrows)
    assert result is None
    for role, g, w in zip(ROLES, got, want, strict=False):
        assert_same(g, w, f"{what} {role}")
    assert_same(got[4], state[4], f"{what} grad must not change")


@pytest.fixture
def threads():
    """Let the test change the thread count; restore it afterwards."""
    before = _native.get_num_threads()
    yield _native.set_num_threads
    _native.set_num_threads(before)


LEVEL_NAMES = {"avx512": "avx512f+avx2+f16c", "avx2": "avx2+f16c", "portable": "portable"}


def current_level() -> str:
    """The level in use, by name (simd() describes it)."""
    return {text: name for name, text in LEVEL_NAMES.items()}[_native.simd()]


@pytest.fixture(params=_native.simd_levels())
def level(request):
    """Run the test on each instruction-set level this CPU supports; restore the level after."""
    before = current_level()
    _native.set_simd(request.param)
    yield request.param
    _native.set_simd(before)


def special_values(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    vals = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        2.0,
        np.inf,
        -np.inf,
        np.nan,
        -np.nan,
        tiny,
        -tiny,
        tiny * 3,
        info.smallest_normal,
        -info.smallest_normal,
        info.smallest_normal * 0.5,
        info.max,
        -info.max,
        info.max * 0.5,
        np.sqrt(info.max) * 2,
        1e-3,
        123.25,
        info.eps,
        1 - info.epsneg,
    ]
    with np.errstate(all="ignore"):
        return np.array(vals, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# exactness


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference(dtype, n, threads):
    # the threaded path (also where the CPU count is 1): float16 and float64 from 300000
    # elements, float32 from 524288
    threads(4)
    rng = np.random.default_rng(n + 17 * np.dtype(dtype).itemsize)
    check(make_state(rng, n, dtype), make_hyper(rng, 1, dtype), what=f"{dtype.__name__} n={n}")


def test_documentation_example():
    var = np.full(4, 0.2, np.float32)
    m = np.array([0.1, 0.2, 0.4, 0.3], np.float32)
    v = np.array([0.2, 0.1, 0.3, 0.4], np.float32)
    vhat = np.array([0.1, 0.2, 0.6, 0.2], np.float32)
    grad = np.array([0.4, 0.2, 0.2, 0.3], np.float32)
    hyper = np.array([0.9, 0.999, 0.01, 0.8, 0.999, 1e-8], np.float32)
    assert _native.apply(var, m, v, vhat, grad, hyper, 1) is None
    np.testing.assert_array_equal(
        var, np.array([0.19886853, 0.1985858, 0.19853032, 0.19849943], np.float32)
    )
    assert m[0] == np.float32(0.16) and v[0] == np.float32(0.19996001) and vhat[0] == v[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_all_combinations(dtype):
    """Every (var, m, v, vhat, grad) drawn from special values, in shuffled combinations."""
    vals = special_values(dtype)
    rng = np.random.default_rng(1)
    n = 50_000
    state = [vals[rng.integers(0, vals.size, n)] for _ in range(5)]
    for hyper in (
        make_hyper(rng, 1, dtype),
        np.array([[0.9], [0.999], [0.01], [0.8], [0.999], [1e-8]], dtype),
        np.array([[0.0], [0.0], [1.0], [0.0], [0.0], [0.0]], dtype),  # eps 0: 0/0
        np.array([[1.0], [1.5], [0.1], [0.9], [0.9], [1e-3]], dtype),  # sqrt(-0.5), x/0
        np.array([[0.5], [0.25], [np.inf], [-1.0], [2.0], [np.nan]], dtype),
    ):
        check(state, hyper, what=f"{dtype.__name__} specials hyper={hyper.ravel()}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_bit_patterns(dtype, threads):
    """Uniform random bit patterns: NaNs with payloads, infinities, subnormals, huge values."""
    threads(3)
    rng = np.random.default_rng(2)
    n = 7 * 14_287
    uint = UINT[np.dtype(dtype).itemsize]
    state = [
        rng.integers(0, np.iinfo(uint).max, n, dtype=uint, endpoint=True).view(dtype)
        for _ in range(5)
    ]
    check(state, make_hyper(rng, 1, dtype), what=f"{dtype.__name__} random bits")
    # hyper-parameters made of random bits too, one set per row
    hyper = rng.integers(0, np.iinfo(uint).max, (6, 7), dtype=uint, endpoint=True).view(dtype)
    check(state, hyper, nrows=7, what=f"{dtype.__name__} random hyper")


def test_float16_every_value():
    """Each of the 65536 half values in each role, against fixed partners."""
    rng = np.random.default_rng(3)
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    for role in range(5):
        for hyper in (
            make_hyper(rng, 1, np.float16),
            np.array([0.9, 0.999, 0.01, 0.8, 0.999, 1e-4], np.float16).reshape(6, 1),
        ):
            state = make_state(rng, every.size, np.float16)
            state[role] = every.copy()
            check(state, hyper, what=f"float16 every value as {ROLES[role]}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_and_overflow_arithmetic(dtype):
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    n = 64
    var = np.full(n, tiny, dtype)
    m = np.full(n, -tiny, dtype)
    v = np.full(n, tiny, dtype)
    vhat = np.zeros(n, dtype)
    grad = np.linspace(-4, 4, n).astype(dtype) * tiny
    grad[::3] = info.max  # grad * grad overflows to inf
    grad[1::7] = -info.max
    hyper = np.array([0.9, 0.999, 1e-3, 0.9, 0.999, 0.0], dtype).reshape(6, 1)
    check([var, m, v, vhat, grad], hyper, what=f"{dtype.__name__} tiny/huge")


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_are_flat(dtype):
    rng = np.random.default_rng(4)
    for shape in ((), (1,), (3, 5), (2, 3, 4, 5), (0, 4)):
        n = int(np.prod(shape))
        state = [a.reshape(shape) for a in make_state(rng, n, dtype)]
        check(state, make_hyper(rng, 1, dtype), what=f"{dtype.__name__} shape {shape}")


def test_negative_zero_and_nan_vhat_rule():
    for dtype in DTYPES:
        var = np.array([-0.0, 0.0, 1.0, 1.0, 1.0], dtype)
        m = np.array([-0.0, -0.0, 0.0, 0.0, 0.0], dtype)
        v = np.array([-0.0, 0.0, np.nan, 1.0, 1.0], dtype)
        vhat = np.array([0.0, -0.0, 5.0, np.nan, 0.0], dtype)
        grad = np.array([-0.0, -0.0, 1.0, 1.0, np.nan], dtype)
        hyper = np.array([0.9, 0.999, 0.01, 0.9, 0.999, 1e-3], dtype).reshape(6, 1)
        check([var, m, v, vhat, grad], hyper, what=f"{dtype.__name__} signed zeros, NaN")
        _, work = run_native([var, m, v, vhat, grad], hyper)
        assert work[3][2] == 5.0  # v is NaN: the old vhat stays
        assert np.isnan(work[3][3])  # a NaN vhat stays
        assert np.isnan(work[2][4]) and work[3][4] == 0.0  # NaN grad: v NaN, vhat kept


# ----------------------------------------------------------------------------------------------
# rows (batched hyper-parameters)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("n", "nrows"),
    [
        (6, 2),
        (21, 3),
        (21, 21),
        (4097 * 5, 5),
        (1000 * 300, 300),
        (300000, 300000),
        (0, 4),
        (8 * 64, 64),
        (7 * 41, 7),
    ],
)
def test_rows(dtype, n, nrows, threads):
    threads(4)
    rng = np.random.default_rng(n + nrows)
    check(
        make_state(rng, n, dtype),
        make_hyper(rng, nrows, dtype),
        nrows=nrows,
        what=f"{dtype.__name__} n={n} rows={nrows}",
    )


def test_rows_use_their_own_hyper():
    """Row r must use column r of every one of the six hyper-parameters."""
    dtype = np.float64
    rng = np.random.default_rng(5)
    state = make_state(rng, 12, dtype)
    hyper = make_hyper(rng, 3, dtype)
    _, got = run_native(state, hyper, 3)
    for r in range(3):
        part = [a[4 * r : 4 * r + 4] for a in state]
        want = step(*part, *[hyper[k, r] for k in range(6)])
        for g, w in zip(got, want, strict=False):
            assert_same(g[4 * r : 4 * r + 4], w, f"row {r}")


# ----------------------------------------------------------------------------------------------
# threads


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_bit_identical(dtype, threads):
    rng = np.random.default_rng(6)
    n = 1_000_003
    state = make_state(rng, n, dtype)
    state[0][::1001] = np.nan
    state[4][::997] = np.inf
    hyper = make_hyper(rng, 1, dtype)
    results = []
    for count in (1, 2, 3, 8):
        threads(count)
        assert _native.get_num_threads() == count
        results.append(run_native(state, hyper)[1])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert a.tobytes() == b.tobytes()
    want = expected(state, hyper)
    for role, g, w in zip(ROLES, results[0], want, strict=False):
        assert_same(g, w, role)


def test_threads_bit_identical_rows(threads):
    rng = np.random.default_rng(7)
    n, nrows = 999 * 1001, 1001
    state = make_state(rng, n, np.float32)
    hyper = make_hyper(rng, nrows, np.float32)
    threads(1)
    one = run_native(state, hyper, nrows)[1]
    threads(5)
    five = run_native(state, hyper, nrows)[1]
    for a, b in zip(one, five, strict=True):
        assert a.tobytes() == b.tobytes()


def test_set_num_threads():
    before = _native.get_num_threads()
    try:
        _native.set_num_threads(3)
        assert _native.get_num_threads() == 3
        for bad in (0, -1, -(2**70)):
            with pytest.raises(ValueError):
                _native.set_num_threads(bad)
        assert _native.get_num_threads() == 3
    finally:
        _native.set_num_threads(before)


def run_python(code: str, **env: str) -> str:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_default_num_threads_from_environment():
    code = "from amsgrad.core import _native; print(_native.get_num_threads())"
    assert run_python(code, AMSGRAD_NUM_THREADS="3") == "3"
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for bad in ("0", "-2", "abc", ""):
        assert run_python(code, AMSGRAD_NUM_THREADS=bad) == str(available)


def test_concurrent_python_threads():
    """Calls from several Python threads at once (the GIL is released) give the same results."""
    rng = np.random.default_rng(8)
    states = [make_state(rng, 200_000 + i, np.float32) for i in range(4)]
    hyper = make_hyper(rng, 1, np.float32)
    out: list = [None] * 4

    def work(i):
        for _ in range(3):
            out[i] = run_native(states[i], hyper)[1]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for i in range(4):
        for g, w in zip(out[i], expected(states[i], hyper), strict=False):
            assert_same(g, w, f"thread {i}")


# ----------------------------------------------------------------------------------------------
# overlap detection


def test_overlap_same_array_reports_pair_and_writes_nothing():
    rng = np.random.default_rng(9)
    base = make_state(rng, 100, np.float32)
    hyper = make_hyper(rng, 1, np.float32).ravel()
    for i in range(5):
        for j in range(i + 1, 5):
            arrays = [a.copy() for a in base]
            arrays[j] = arrays[i]
            before = [a.copy() for a in arrays]
            assert _native.apply(*arrays, hyper, 1) == (i, j)
            for a, b in zip(arrays, before, strict=True):
                assert a.tobytes() == b.tobytes()


def test_overlap_partial_views_and_first_pair():
    buf = np.zeros(1000, np.float64)
    grad = np.ones(100, np.float64)
    hyper = np.array([0.9, 0.999, 0.01, 0.9, 0.999, 1e-8])
    var, m, v = buf[0:100], buf[100:200], buf[200:300]
    vhat = buf[250:350]  # overlaps v by 50 elements
    assert _native.apply(var, m, v, vhat, grad, hyper, 1) == (2, 3)
    assert not buf.any()
    # the first pair in the order (0,1), (0,2), ..., (3,4)
    vhat = buf[50:150]  # overlaps var and m
    assert _native.apply(var, m, v, vhat, buf[99:199], hyper, 1) == (0, 3)
    # one element shared (last of var, first of grad)
    assert _native.apply(var, m, v, buf[300:400], buf[99:199], hyper, 1) == (0, 4)
    # adjacent is not overlapping
    assert _native.apply(var, m, v, buf[300:400], grad, hyper, 1) is None
    assert buf[0:100].any()


def test_overlap_read_only_grad_and_empty_arrays():
    x = np.arange(16, dtype=np.float32)
    ro = x[:]
    ro.flags.writeable = False
    others = [np.zeros(16, np.float32) for _ in range(3)]
    hyper = np.array([0.9, 0.999, 0.01, 0.9, 0.999, 1e-8], np.float32)
    assert _native.apply(x, *others, ro, hyper, 1) == (0, 4)
    e = np.zeros(0, np.float32)
    assert _native.apply(e, e, e, e, e, hyper, 1) is None  # empty arrays never overlap


def test_hyper_aliasing_an_output_is_read_before_writing():
    """If hyper shares memory with var, the kernel must still use the values it was given."""
    rng = np.random.default_rng(10)
    n = 64
    state = make_state(rng, n, np.float32)
    hyper = make_hyper(rng, 1, np.float32).ravel()
    wide = np.empty(n, np.float32)
    wide[:] = state[0]
    wide[n - 6 :] = hyper
    var = wide
    hyper_view = wide[n - 6 :]  # var's last six elements
    state[0] = wide.copy()
    want = expected(state, hyper.reshape(6, 1))
    work = [var, *[a.copy() for a in state[1:4]], state[4]]
    assert _native.apply(*work, hyper_view, 1) is None
    for role, g, w in zip(ROLES, work, want, strict=False):
        assert_same(g, w, role)


# ----------------------------------------------------------------------------------------------
# defensive checks


def test_defensive_errors():
    f = [np.zeros(8, np.float32) for _ in range(5)]
    hyper = np.zeros(6, np.float32)
    with pytest.raises(TypeError):
        _native.apply(*f, hyper)  # argument count
    with pytest.raises(TypeError):
        _native.apply(np.zeros(8, np.int32), *f[1:], hyper, 1)
    with pytest.raises(TypeError):
        _native.apply(*f[:4], np.zeros(8, np.float64), hyper, 1)
    with pytest.raises(TypeError):
        _native.apply(*f, np.zeros(6, np.float64), 1)
    with pytest.raises(TypeError):
        _native.apply(*f[:4], [0.0] * 8, hyper, 1)
    with pytest.raises(TypeError):
        _native.apply(np.zeros(8, ">f4"), *f[1:], hyper, 1)
    with pytest.raises(ValueError):
        _native.apply(*f[:4], np.zeros(9, np.float32), hyper, 1)
    with pytest.raises(ValueError):
        _native.apply(np.zeros(16, np.float32)[::2], *f[1:], hyper, 1)  # not contiguous
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _native.apply(*f[:3], ro, f[4], hyper, 1)
    with pytest.raises(ValueError):
        _native.apply(*f, np.zeros(7, np.float32), 1)
    with pytest.raises(ValueError):
        _native.apply(*f, np.zeros(6 * 3, np.float32), 3)  # 3 does not divide 8
    with pytest.raises(ValueError):
        _native.apply(*f, np.zeros(0, np.float32), 0)
    with pytest.raises(TypeError):
        _native.apply(*f, hyper, 1.0)
    with pytest.raises(TypeError):
        _native.apply_many(f[:1], f[1:2], f[2:3], f[3:4], f[4:5])
    with pytest.raises(TypeError):
        _native.apply_many(f[0], f[1:2], f[2:3], f[3:4], f[4:5], hyper)
    with pytest.raises(ValueError):
        _native.apply_many(f[:1], f[1:3], f[2:3], f[3:4], f[4:5], hyper)
    with pytest.raises(TypeError):
        _native.apply_many([np.zeros(8, np.float64)], f[1:2], f[2:3], f[3:4], f[4:5], hyper)
    with pytest.raises(ValueError):
        _native.apply_many(f[:1], f[1:2], f[2:3], f[3:4], [np.zeros(9, np.float32)], hyper)
    with pytest.raises(ValueError):
        _native.apply_many(f[:1], f[1:2], f[2:3], f[3:4], f[4:5], np.zeros(12, np.float32))
    with pytest.raises(ValueError):
        _native.apply_many(f[:1], f[1:2], f[2:3], [ro], f[4:5], hyper)


def test_no_reference_leaks():
    rng = np.random.default_rng(11)
    state = make_state(rng, 10, np.float32)
    hyper = make_hyper(rng, 1, np.float32).ravel()
    bad = np.zeros(10, np.int32)
    counts = [sys.getrefcount(a) for a in (*state, hyper)]
    for _ in range(2000):
        _native.apply(*state, hyper, 1)
        _native.apply(state[0], state[0], *state[2:], hyper, 1)  # overlap
        _native.apply_many(*[[a] * 3 for a in state], hyper)  # overlap
        _native.apply_many(*[[a] for a in state], hyper)
        with pytest.raises(TypeError):
            _native.apply(*state[:4], bad, hyper, 1)
        with pytest.raises(TypeError):
            _native.apply_many(*[[a, bad] for a in state], hyper)
    assert [sys.getrefcount(a) for a in (*state, hyper)] == counts


# ----------------------------------------------------------------------------------------------
# apply_many


def many_case(rng, sizes, dtype):
    return [make_state(rng, n, dtype) for n in sizes]


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_mixed_sizes(dtype, threads):
    rng = np.random.default_rng(12)
    sizes = [0, 1, 7, 8, 15, 16, 17, 31, 33, 1000, 4097, 300000, 3, 0, 65, 400_001]
    states = many_case(rng, sizes, dtype)
    hyper = make_hyper(rng, 1, dtype)
    want = [expected(s, hyper) for s in states]
    for count in (1, 2, 3):
        threads(count)
        work = [[a.copy() for a in s] for s in states]
        lists = [[w[r] for w in work] for r in range(5)]
        assert _native.apply_many(*lists, hyper.ravel()) is None
        for i, (w, e) in enumerate(zip(work, want, strict=True)):
            for role in range(4):
                assert_same(w[role], e[role], f"threads {count} tensor {i} {ROLES[role]}")


def test_many_large_count_and_tuples(threads):
    threads(2)
    rng = np.random.default_rng(13)
    sizes = rng.integers(0, 3000, 1000)
    states = many_case(rng, sizes, np.float32)
    hyper = make_hyper(rng, 1, np.float32)
    work = [[a.copy() for a in s] for s in states]
    lists = tuple(tuple(w[r] for w in work) for r in range(5))
    assert _native.apply_many(*lists, hyper.ravel()) is None
    for w, s in zip(work, states, strict=True):
        for g, e in zip(w, expected(s, hyper), strict=False):
            assert_same(g, e)


def test_many_matches_apply_with_shapes():
    rng = np.random.default_rng(14)
    hyper = make_hyper(rng, 1, np.float16)
    states = [
        [a.reshape(shape) for a in make_state(rng, int(np.prod(shape)), np.float16)]
        for shape in ((), (2, 3), (5, 1, 7))
    ]
    work_many = [[a.copy() for a in s] for s in states]
    assert _native.apply_many(*[[w[r] for w in work_many] for r in range(5)], hyper.ravel()) is None
    for s, w in zip(states, work_many, strict=True):
        _, one = run_native(s, hyper)
        for a, b in zip(one, w, strict=True):
            assert a.tobytes() == b.tobytes()


def test_many_empty():
    hyper = np.zeros(6, np.float32)
    assert _native.apply_many([], [], [], [], [], hyper) is None
    e = np.zeros(0, np.float32)
    assert _native.apply_many([e], [e], [e], [e], [e], hyper) is None


def test_many_overlap_reports_and_writes_nothing():
    rng = np.random.default_rng(15)
    hyper = make_hyper(rng, 1, np.float32).ravel()
    states = many_case(rng, [50] * 20, np.float32)
    for (ia, ra), (ib, rb) in [
        ((0, 0), (0, 1)),
        ((3, 4), (17, 0)),
        ((19, 3), (19, 4)),
        ((5, 2), (6, 2)),
        ((0, 0), (19, 4)),
    ]:
        lists = [[s[r].copy() for s in states] for r in range(5)]
        lists[rb][ib] = lists[ra][ia]  # same memory
        before = [[a.copy() for a in lst] for lst in lists]
        assert _native.apply_many(*lists, hyper) == (ia, ra, ib, rb)
        for lst, bl in zip(lists, before, strict=True):
            for a, b in zip(lst, bl, strict=True):
                assert a.tobytes() == b.tobytes()
    # partial overlap between tensors of different lists, through views of one buffer
    buf = np.zeros(10_000, np.float32)
    lists = [
        [buf[1000 * (5 * i + r) : 1000 * (5 * i + r) + 1000] for i in range(2)] for r in range(5)
    ]
    assert _native.apply_many(*lists, hyper) is None  # disjoint and adjacent
    lists[2][1] = buf[500:1500]  # overlaps vars[0] and ms[0]
    assert _native.apply_many(*lists, hyper) in {(0, 0, 1, 2), (0, 1, 1, 2)}
    # empty tensors never overlap
    e = buf[:0]
    lists = [[e, buf[100 * r : 100 * r + 100]] for r in range(5)]
    lists[0][0] = lists[1][0] = e
    assert _native.apply_many(*lists, hyper) is None


def test_many_overlap_detection_is_exact_on_many_views():
    """Random views into one buffer: the native answer agrees with a brute-force check."""
    rng = np.random.default_rng(16)
    hyper = np.array([0.9, 0.999, 0.01, 0.9, 0.999, 1e-8], np.float32)
    for trial in range(200):
        k = int(rng.integers(1, 60))
        size = int(rng.integers(1, 6))
        buf = np.zeros(k * 5 * size * 3, np.float32)
        starts = (
            rng.choice(buf.size - size, 5 * k, replace=False)
            if trial % 2
            else (rng.permutation(k * 5 * 3)[: 5 * k] * size)
        )
        views = [buf[s : s + size] for s in starts]
        lists = [views[r * k : (r + 1) * k] for r in range(5)]
        intervals = sorted((int(s), int(s) + size) for s in starts)
        overlapping = any(b[0] < a[1] for a, b in itertools.pairwise(intervals))
        snapshot = buf.copy()
        found = _native.apply_many(*lists, hyper)
        if not overlapping:
            assert found is None
            continue
        assert found is not None
        ia, ra, ib, rb = found
        assert (ia, ra) < (ib, rb)
        sa, sb = starts[ra * k + ia], starts[rb * k + ib]
        assert sa < sb + size and sb < sa + size
        assert buf.tobytes() == snapshot.tobytes()


# ----------------------------------------------------------------------------------------------
# misaligned buffers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 17, 40, 1001])
def test_misaligned_buffers(dtype, n, level):
    """Arrays at odd byte offsets (np.frombuffer on a bytearray): defined behaviour, same bits."""
    rng = np.random.default_rng(n)
    size = np.dtype(dtype).itemsize
    state = make_state(rng, n, dtype)
    hyper = make_hyper(rng, 1, dtype).ravel()
    want = expected(state, hyper.reshape(6, 1))
    raw = bytearray(6 * n * size + 6 * size + 8)
    work = []
    for k, array in enumerate([*state, hyper]):
        view = np.frombuffer(raw, dtype, array.size, 1 + k * n * size)
        view[:] = array
        work.append(view)
    assert all(a.ctypes.data % size for a in work)  # every one misaligned
    assert _native.apply(*work, 1) is None
    for role, g, w in zip(ROLES, work, want, strict=False):
        assert_same(g, w, f"{dtype.__name__} n={n} misaligned {role}")
    lists = [[w] for w in work[:5]]
    before = [a.copy() for a in state]
    for w, b in zip(work[:5], before, strict=True):
        w[:] = b
    assert _native.apply_many(*lists, work[5]) is None
    for role, g, w in zip(ROLES, work, want, strict=False):
        assert_same(g, w, f"{dtype.__name__} n={n} misaligned apply_many {role}")


# ----------------------------------------------------------------------------------------------
# instruction-set levels


def test_simd_levels_and_names():
    levels = _native.simd_levels()
    assert isinstance(levels, tuple) and levels[-1] == "portable"
    assert set(levels) <= {"avx512", "avx2", "portable"}
    order = ("avx512", "avx2", "portable")
    assert list(levels) == sorted(levels, key=order.index)
    names = LEVEL_NAMES
    before = current_level()
    try:
        for name in levels:
            _native.set_simd(name)
            assert _native.simd() == names[name]
        _native.set_simd("best")
        assert _native.simd() == names[levels[0]]
        for bad in ("", "AVX2", "sse", "fma", None, 2):
            with pytest.raises(ValueError, match="level"):
                _native.set_simd(bad)
        missing = [name for name in order if name not in levels]
        for name in missing:  # a level the CPU lacks is refused, not faked
            with pytest.raises(ValueError, match=name):
                _native.set_simd(name)
        assert _native.simd() == names[levels[0]]
    finally:
        _native.set_simd(before)
    assert current_level() == before


def test_simd_name():
    assert _native.simd() in {"avx512f+avx2+f16c", "avx2+f16c", "portable"}
    if os.environ.get("AMSGRAD_SIMD") == "portable":
        assert _native.simd() == "portable"


def level_suite() -> None:
    """The exactness checks run on each instruction-set level (set by the caller)."""
    before = _native.get_num_threads()
    _native.set_num_threads(3)
    try:
        rng = np.random.default_rng(0)
        for dtype in DTYPES:
            for n in SIZES:
                check(make_state(rng, n, dtype), make_hyper(rng, 1, dtype), what=f"n={n}")
            check(make_state(rng, 3000, dtype), make_hyper(rng, 30, dtype), nrows=30)
            vals = special_values(dtype)
            state = [vals[rng.integers(0, vals.size, 20000)] for _ in range(5)]
            check(state, make_hyper(rng, 1, dtype), what="specials")
            uint = UINT[np.dtype(dtype).itemsize]
            state = [
                rng.integers(0, np.iinfo(uint).max, 50000, dtype=uint).view(dtype) for _ in range(5)
            ]
            check(state, make_hyper(rng, 1, dtype), what="random bits")
        every = np.arange(65536, dtype=np.uint16).view(np.float16)
        for role in range(5):
            state = make_state(rng, every.size, np.float16)
            state[role] = every.copy()
            check(state, make_hyper(rng, 1, np.float16), what="every half")
        lists = [[make_state(rng, n, np.float32)[r] for n in (5, 1000, 17)] for r in range(5)]
        assert _native.apply_many(*lists, np.full(6, 0.5, np.float32)) is None
    finally:
        _native.set_num_threads(before)


@pytest.mark.parametrize("name", _native.simd_levels())
def test_every_level_matches_reference(name):
    before = current_level()
    _native.set_simd(name)
    try:
        level_suite()
    finally:
        _native.set_simd(before)


ENV_SCRIPT = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from amsgrad.core import _native
for w in caught:
    print("WARNING", w.category.__name__, w.message)
print(_native.simd(), _native.get_num_threads())
"""


def test_environment_selects_the_level():
    levels = _native.simd_levels()
    names = LEVEL_NAMES
    best = names[levels[0]]
    for value, want in [
        ("portable", "portable"),
        ("avx2", names["avx2"] if "avx2" in levels else "portable"),
        ("avx512", best),
        ("best", best),
        ("", best),
    ]:
        out = run_python(ENV_SCRIPT, AMSGRAD_SIMD=value).splitlines()
        assert out[-1].split()[0] == want, (value, out)
        assert not [line for line in out if line.startswith("WARNING")], (value, out)


def test_invalid_environment_warns_once():
    for value in ("fast", "AVX2", "sse4"):
        out = run_python(ENV_SCRIPT, AMSGRAD_SIMD=value).splitlines()
        warned = [line for line in out if line.startswith("WARNING")]
        assert len(warned) == 1, out
        assert "RuntimeWarning" in warned[0] and "AMSGRAD_SIMD" in warned[0]
        assert all(word in warned[0] for word in ("portable", "avx2", "avx512", "best"))
        assert out[-1].split()[0] == LEVEL_NAMES[_native.simd_levels()[0]]
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for value in ("0", "-2", "abc", "3x"):
        out = run_python(ENV_SCRIPT, AMSGRAD_NUM_THREADS=value).splitlines()
        warned = [line for line in out if line.startswith("WARNING")]
        assert len(warned) == 1, out
        assert "RuntimeWarning" in warned[0] and "AMSGRAD_NUM_THREADS" in warned[0]
        assert out[-1].split()[1] == str(available)
    out = run_python(ENV_SCRIPT, AMSGRAD_NUM_THREADS="2").splitlines()
    assert out == [out[-1]] and out[-1].split()[1] == "2"


def test_invalid_environment_as_error_fails_the_import():
    code = "from amsgrad.core import _native"
    full_env = dict(os.environ, AMSGRAD_SIMD="nope", PYTHONWARNINGS="error::RuntimeWarning")
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "AMSGRAD_SIMD" in proc.stderr


def test_portable_path_from_environment():
    """AMSGRAD_SIMD=portable at import: the portable kernels run (no set_simd involved)."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    script = f"""
import sys
sys.path.insert(0, {tests_dir!r})
import test_native as t
from amsgrad.core import _native
assert _native.simd() == "portable", _native.simd()
t.level_suite()
print("OK")
"""
    out = run_python(script, AMSGRAD_SIMD="portable")
    assert out.endswith("OK")
