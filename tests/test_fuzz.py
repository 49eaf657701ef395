"""The differential fuzzer (tests/fuzz_differential.py) with a fixed budget: every native
instruction set agrees with the NumPy reference path, bits and errors."""

from __future__ import annotations

import pytest

import fuzz_differential
from amsgrad.core import kernel


def test_fuzzer_short_run():
    assert fuzz_differential.fuzz(cases=1500, seconds=None, seed=20261128) == 1500


@pytest.mark.slow
def test_fuzzer_longer_run():
    assert fuzz_differential.fuzz(cases=None, seconds=60, seed=1) > 0


@pytest.mark.skipif(
    kernel.available_backends() == ("numpy",), reason="no native backend to compare with"
)
def test_the_fuzzer_can_fail(monkeypatch):
    """A backend that differs from the reference in one bit is caught."""
    original = fuzz_differential.run_on

    def off_by_one_bit(backend, case):
        kind, value = original(backend, case)
        if backend != "numpy" and kind == "ok" and value and value[0].size:
            value[0].reshape(-1).view(f"u{value[0].itemsize}")[0] ^= 1
        return kind, value

    monkeypatch.setattr(fuzz_differential, "run_on", off_by_one_bit)
    with pytest.raises(AssertionError, match="differs from numpy"):
        fuzz_differential.fuzz(cases=200, seconds=None, seed=3)
