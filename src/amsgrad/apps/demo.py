"""MindSpore's documented example of ``ApplyAdamWithAmsgradV2``, run through amsgrad.

The code below is the example of MindSpore's documentation with ``mindspore`` replaced by
``amsgrad`` in its imports (``ops``, ``nn``, ``Tensor``, ``Parameter``). MindSpore publishes the
updated ``var`` as::

    [[0.19886853 0.1985858 ]
     [0.19853032 0.19849943]]

The published decimals are NumPy's shortest round-trip representations of float32 values: each
one is the shortest decimal that rounds back to exactly one float32. So parsing them as float32
recovers MindSpore's float32 results exactly, and comparing float32 bits is an exact test. The
comparison re-checks that property for every element (``published_round_trips``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import amsgrad.nn as nn
from amsgrad import Parameter, Tensor, backend, ops

__all__ = [
    "PUBLISHED_DECIMALS",
    "PUBLISHED_TEXT",
    "ApplyAdamWithAmsgradNet",
    "DemoResult",
    "format_report",
    "run",
    "run_example",
]

#: MindSpore's published output, as printed in its documentation.
PUBLISHED_TEXT = "[[0.19886853 0.1985858 ]\n [0.19853032 0.19849943]]"
#: The same values as decimal strings, row by row.
PUBLISHED_DECIMALS = (("0.19886853", "0.1985858"), ("0.19853032", "0.19849943"))


class ApplyAdamWithAmsgradNet(nn.Cell):
    """The documentation's network, unchanged except for the imports."""

    def __init__(self, use_locking: bool = False) -> None:
        super().__init__()
        self.apply_adam_with_amsgrad = ops.ApplyAdamWithAmsgradV2(use_locking)
        self.var = Parameter(
            Tensor(np.array([[0.2, 0.2], [0.2, 0.2]]).astype(np.float32)), name="var"
        )
        self.m = Parameter(Tensor(np.array([[0.1, 0.2], [0.4, 0.3]]).astype(np.float32)), name="m")
        self.v = Parameter(Tensor(np.array([[0.2, 0.1], [0.3, 0.4]]).astype(np.float32)), name="v")
        self.vhat = Parameter(
            Tensor(np.array([[0.1, 0.2], [0.6, 0.2]]).astype(np.float32)), name="vhat"
        )
        self.beta1 = 0.8
        self.beta2 = 0.999
        self.epsilon = 1e-8
        self.beta1_power = 0.9
        self.beta2_power = 0.999
        self.lr = 0.01

    def construct(self, grad):
        out = self.apply_adam_with_amsgrad(
            self.var, self.m, self.v, self.vhat,
            self.beta1_power, self.beta2_power, self.lr,
            self.beta1, self.beta2, self.epsilon, grad,
        )  # fmt: skip
        return out


def run_example() -> np.ndarray:
    """Run the documentation's example; return the updated var (float32, shape (2, 2))."""
    net = ApplyAdamWithAmsgradNet()
    grad = Tensor(np.array([[0.4, 0.2], [0.2, 0.3]]).astype(np.float32))
    net(grad)
    return net.var.asnumpy()


def published() -> np.ndarray:
    """MindSpore's published var, each decimal parsed to the nearest float32."""
    return np.array(
        [[np.float32(text) for text in row] for row in PUBLISHED_DECIMALS], dtype=np.float32
    )


def published_round_trips() -> bool:
    """True when each published decimal is the shortest repr of its float32 (a unique match)."""
    values = published()
    return all(
        np.format_float_positional(values[i, j], unique=True) == text
        for i, row in enumerate(PUBLISHED_DECIMALS)
        for j, text in enumerate(row)
    )


@dataclass(frozen=True)
class DemoResult:
    """The computed and the published var, and whether their float32 bits are equal."""

    computed: np.ndarray
    published: np.ndarray
    equal: np.ndarray
    round_trips: bool
    backend: str

    @property
    def match(self) -> bool:
        return bool(self.equal.all()) and self.round_trips


def run() -> DemoResult:
    """Run the example and compare it bit for bit with the published output."""
    computed = run_example()
    expected = published()
    equal = computed.astype(np.float32).view(np.uint32) == expected.view(np.uint32)
    return DemoResult(computed, expected, equal, published_round_trips(), backend())


def _bits(value: np.float32) -> str:
    return f"0x{int(np.float32(value).view(np.uint32)):08x}"


def format_report(result: DemoResult) -> str:
    """The text that ``amsgrad demo`` prints."""
    computed_lines = str(result.computed).splitlines()
    published_lines = PUBLISHED_TEXT.splitlines()
    width = max(len(line) for line in [*computed_lines, "computed by amsgrad"]) + 4
    lines = [
        "MindSpore's documented example of ApplyAdamWithAmsgradV2, run through amsgrad's",
        "MindSpore-compatible surface (amsgrad.ops, amsgrad.nn, Tensor, Parameter).",
        f"backend: {result.backend}",
        "",
        f"{'computed by amsgrad':<{width}}published by MindSpore",
    ]
    for left, right in zip(computed_lines, published_lines, strict=True):
        lines.append(f"{left:<{width}}{right}")
    lines.append("")
    lines.append(f"{'element':<9}{'computed':<13}{'bits':<13}{'published':<13}{'bits':<13}")
    for (i, j), value in np.ndenumerate(result.computed):
        text = PUBLISHED_DECIMALS[i][j]
        status = "equal" if result.equal[i, j] else "DIFFERENT"
        lines.append(
            f"[{i},{j}]    {np.format_float_positional(value, unique=True):<13}{_bits(value):<13}"
            f"{text:<13}{_bits(result.published[i, j]):<13}{status}"
        )
    lines.append("")
    trip = "yes" if result.round_trips else "NO"
    lines.append(
        "The published decimals round-trip uniquely: each is the shortest decimal of exactly one"
    )
    lines.append(
        f"float32 and parses back to it (checked: {trip}), so comparing float32 bits is exact."
    )
    count = int(result.equal.sum())
    if result.match:
        lines.append(f"result: MATCH - all {result.equal.size} elements are equal bit for bit")
    else:
        lines.append(
            f"result: MISMATCH - {result.equal.size - count} of {result.equal.size} elements differ"
        )
    return "\n".join(lines)
