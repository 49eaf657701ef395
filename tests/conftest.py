"""Fixtures shared by the test files (helpers that tests import live in ``helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amsgrad.core import kernel

#: Every backend this installation can run: the native kernel at each instruction-set level this
#: CPU supports (best first), then the NumPy reference path that a build without a compiler uses.
BACKENDS = kernel.available_backends()


@pytest.fixture(params=BACKENDS)
def each_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per backend; the backend in use before is restored afterwards (the
    best one, or the level that ``AMSGRAD_SIMD`` asked for)."""
    before = kernel.selected_backend()
    kernel.select_backend(request.param)
    try:
        yield request.param
    finally:
        kernel.select_backend(before)
