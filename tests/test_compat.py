"""The MindSpore-compatible surface: the documentation's example with only its imports changed."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

import amsgrad
from amsgrad import Parameter, Tensor, nn, ops
from helpers import DOC_HYPER, assert_bits_equal, doc_state

# Each test runs on every backend: native at each instruction-set level, and NumPy.
pytestmark = pytest.mark.usefixtures("each_backend")

EXAMPLE = Path(__file__).parent / "data" / "doc_example_mindspore.py"
PUBLISHED = "[[0.19886853 0.1985858 ]\n [0.19853032 0.19849943]]\n"


def test_documentation_example_prints_the_published_output():
    source = EXAMPLE.read_text()
    assert "mindspore" in source
    ported = source.replace("mindspore", "amsgrad")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(ported, "doc_example", "exec"), {"__name__": "__doc_example__"})
    assert out.getvalue() == PUBLISHED


def test_primitive_updates_parameters_in_place_and_returns_them():
    var, m, v, vhat, grad = doc_state()
    params = [Parameter(Tensor(a), name=n) for a, n in zip((var, m, v, vhat), "abcd", strict=True)]
    out = ops.ApplyAdamWithAmsgradV2()(*params, *DOC_HYPER, Tensor(grad))
    assert all(o is p for o, p in zip(out, params, strict=True))
    amsgrad.apply_adam_with_amsgrad_v2(var, m, v, vhat, *DOC_HYPER, grad)
    for p, a in zip(params, (var, m, v, vhat), strict=True):
        assert_bits_equal(p.asnumpy(), a)


def test_tensor_hyper_parameter_counts_as_a_tensor():
    var, m, v, vhat, grad = doc_state()
    params = [Parameter(Tensor(a)) for a in (var, m, v, vhat)]
    lr64 = Tensor(np.array(0.01, np.float64))
    with pytest.raises(amsgrad.DtypeConversionError, match="lr"):
        ops.ApplyAdamWithAmsgradV2()(*params, 0.9, 0.999, lr64, 0.8, 0.999, 1e-8, Tensor(grad))
    assert_bits_equal(params[0].asnumpy(), var)


def test_tensor_and_parameter_behaviour():
    t = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert t.shape == (2, 3) and t.dtype == amsgrad.float32 and t.ndim == 2 and t.size == 6
    copy = t.asnumpy()
    copy[0, 0] = 100
    assert t.asnumpy()[0, 0] == 0, "asnumpy must return a copy"
    assert Tensor(0.5).dtype == np.float32
    assert Tensor(np.ones(3), amsgrad.float16).dtype == np.float16
    source = np.zeros(3, np.float32)
    p = Parameter(Tensor(source), name="w")
    source[0] = 7
    assert p.asnumpy()[0] == 0, "a Parameter owns its data"
    assert p.name == "w"
    p.set_data(Tensor(np.ones(3, np.float32)))
    assert np.all(p.asnumpy() == 1)
    with pytest.raises(ValueError, match="shape"):
        p.set_data(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        p.set_data(np.ones(3, np.float64))
    with pytest.raises(TypeError, match="name"):
        Parameter(Tensor(source), name=3)
    assert str(t) == str(np.arange(6, dtype=np.float32).reshape(2, 3))


def test_cell_calls_construct():
    class Twice(nn.Cell):
        def construct(self, x, *, k=2):
            return x * k

    assert Twice()(3) == 6
    assert Twice()(3, k=3) == 9
    with pytest.raises(NotImplementedError):
        nn.Cell()(1)
