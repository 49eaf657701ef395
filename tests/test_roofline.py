"""The benchmark's memory roofline ``amsgrad.apps._roofline`` (an optional extension)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

_roofline = pytest.importorskip("amsgrad.apps._roofline")

DTYPES = (np.float16, np.float32, np.float64)
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


@pytest.fixture
def threads():
    before = _roofline.get_num_threads()
    yield _roofline.set_num_threads
    _roofline.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 13, 1000, 300_001])
@pytest.mark.parametrize("count", [1, 3])
def test_roofline_moves_data(dtype, n, count, threads):
    threads(count)
    rng = np.random.default_rng(17)
    uint = UINT[np.dtype(dtype).itemsize]
    arrays = [rng.integers(0, 2**15, n).astype(uint).view(dtype) for _ in range(5)]
    before = [a.view(uint).copy() for a in arrays]
    assert _roofline.roofline(*arrays) is None
    a, b, c, d, e = (x.view(uint) for x in arrays)
    np.testing.assert_array_equal(a, before[1])
    np.testing.assert_array_equal(b, before[2])
    np.testing.assert_array_equal(c, before[3])
    np.testing.assert_array_equal(d, before[4] | before[0])
    np.testing.assert_array_equal(e, before[4])


def test_roofline_errors_and_settings(threads):
    f = [np.zeros(8, np.float32) for _ in range(5)]
    with pytest.raises(TypeError):
        _roofline.roofline(*f[:4], np.zeros(8, np.int64))
    with pytest.raises(ValueError):
        _roofline.roofline(*f[:4], np.zeros(9, np.float32))
    with pytest.raises(TypeError):
        _roofline.roofline(*f[:4])
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        _roofline.roofline(ro, *f[1:])
    threads(2)
    assert _roofline.get_num_threads() == 2
    with pytest.raises(ValueError):
        _roofline.set_num_threads(0)
    assert _roofline.simd() in {"avx512f+avx2+f16c", "avx2+f16c", "portable"}
    counts = [sys.getrefcount(a) for a in f]
    for _ in range(1000):
        _roofline.roofline(*f)
    assert [sys.getrefcount(a) for a in f] == counts
