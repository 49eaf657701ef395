"""The float16 conversions of the native kernels (core/native/half.h), on every input.

The kernels round to half with float32 arithmetic and no branches (``ams_rh_float``,
``ams_f2h_float``: compilers vectorize the portable loop); half.h keeps the integer versions
they replaced as the readable statement. A C program compares the two on all 2^32 float32
inputs, and its ``ams_h2f`` on all 65536 halves against NumPy's conversion.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "src" / "amsgrad" / "core" / "native"
PROGRAM = Path(__file__).resolve().parent / "native" / "half_exhaustive.c"
FLAGS = ["-std=c11", "-ffp-contract=off", "-fno-math-errno", "-fno-strict-aliasing"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("level", ["-O3"])
def test_float_and_integer_roundings_agree_on_every_input(tmp_path, level):
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None or not (NATIVE / "half.h").exists():
        pytest.skip(f"needs a C compiler ({compiler}) and the source tree")
    binary = tmp_path / "half_exhaustive"
    subprocess.run(
        [compiler, level, *FLAGS, f"-I{NATIVE}", str(PROGRAM), "-o", str(binary)], check=True
    )
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    assert lines[:2] == ["rh 0", "f2h 0"], lines[:2]
    got = np.array([int(word, 16) for line in lines[2:] for word in line.split()], np.uint32)
    want = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
