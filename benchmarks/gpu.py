"""The GPU checks of the Triton kernel, in one command: ``python benchmarks/gpu.py [--quick]``.

Needs a CUDA device, PyTorch with CUDA and Triton (``pip install ".[gpu]"``), and the native
kernel built (the reference). It measures, on the first CUDA device:

1. exactness: ``amsgrad.triton.apply_many`` against the C kernel on 1e8 random float32
   elements (float16 and float64 too, on 1e7), with zeros, infinities, NaN and subnormals
   sprinkled in; the number of elements whose bits differ (any NaN equals any NaN) must be 0;
2. bandwidth: a float32 step moves 9 arrays x 4 bytes per element (5 reads, 4 writes), against
   the device's copy bandwidth (``dst.copy_(src)``: 2 x 4 bytes per element);
3. time per step against ``torch.optim.Adam(amsgrad=True, fused=True)`` on 1e8 float32 elements
   (one tensor) and on 1000 tensors of 1e4 elements, for ``apply_many`` and for
   ``AMSGradV2(implementation="triton")`` (whose step also checks its arguments).

Prints a Markdown report (for docs/benchmarks.md). ``--quick`` divides the sizes by 100. Without
a CUDA device it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def fail(message: str) -> int:
    print(f"benchmarks/gpu.py: {message}", file=sys.stderr)
    return 2


def specials(rng: np.random.Generator, size: int, dtype: np.dtype, positive: bool) -> np.ndarray:
    """Normal values over many magnitudes with 1 % zeros, infinities, NaN and subnormals."""
    values = rng.standard_normal(size) * np.exp2(rng.integers(-30, 30, size))
    pick = rng.integers(0, 500, size)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    for code, value in ((0, 0.0), (1, -0.0), (2, np.inf), (3, -np.inf), (4, np.nan), (5, tiny)):
        values[pick == code] = value
    if positive:
        values = np.abs(values)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def differing(actual: np.ndarray, expected: np.ndarray) -> int:
    uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[actual.dtype.itemsize]
    same = (actual.view(uint) == expected.view(uint)) | (np.isnan(actual) & np.isnan(expected))
    return int(same.size - np.count_nonzero(same))


def timed(torch: Any, call: Callable[[], object], repeats: int = 20) -> float:
    """Median seconds per call (CUDA events around each call, after a warm-up)."""
    cuda = torch.cuda
    for _ in range(3):
        call()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def bandwidth(torch: Any, kernel: Any, device: Any, size: int, hyper: tuple[float, ...]) -> None:
    state = [[torch.rand(size, device=device)] for _ in range(5)]
    step_time = timed(torch, lambda: kernel.apply_many(*state, *hyper))
    source, target = torch.rand(size, device=device), torch.empty(size, device=device)
    copy_time = timed(torch, lambda: target.copy_(source))
    step_rate = 9 * 4 * size / step_time / 1e9
    copy_rate = 2 * 4 * size / copy_time / 1e9
    print("\n## Bandwidth (float32, one tensor)\n")
    print(
        f"- apply_many: {step_time * 1e3:.3f} ms per step, {step_rate:.0f} GB/s "
        "(9 arrays x 4 bytes per element)"
    )
    print(
        f"- device copy: {copy_time * 1e3:.3f} ms, {copy_rate:.0f} GB/s; "
        f"apply_many reaches {step_rate / copy_rate:.0%} of it"
    )


def against_adam(
    torch: Any, kernel: Any, optimizer_class: Any, device: Any, label: str, count: int, size: int
) -> None:
    hyper = (0.9**10, 0.999**10, 1e-3, 0.9, 0.999, 1e-8)
    lists = [[torch.rand(size, device=device) for _ in range(count)] for _ in range(5)]
    ours = timed(torch, lambda: kernel.apply_many(*lists, *hyper))
    params = [torch.nn.Parameter(p.clone()) for p in lists[0]]
    for param in params:
        param.grad = torch.rand_like(param)
    optimizer = optimizer_class(params, lr=1e-3, implementation="triton")
    with_checks = timed(torch, optimizer.step)
    adam = torch.optim.Adam(params, lr=1e-3, amsgrad=True, fused=True)
    theirs = timed(torch, adam.step)
    print(
        f"| {label} | {ours * 1e3:.3f} ms | {with_checks * 1e3:.3f} ms | "
        f"{theirs * 1e3:.3f} ms | {ours / theirs:.2f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes divided by 100")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        return fail("needs PyTorch with CUDA (pip install '.[gpu]')")
    if not torch.cuda.is_available():
        return fail("needs a CUDA device; none is available (torch.cuda.is_available() is False)")
    try:
        import amsgrad.triton as amsgrad_triton
    except ImportError as error:
        return fail(f"needs Triton (pip install '.[gpu]'): {error}")
    if amsgrad_triton.interpreting():
        return fail("unset TRITON_INTERPRET: this script measures the compiled kernel")
    import amsgrad
    from amsgrad.torch import AMSGradV2

    scale = 100 if args.quick else 1
    hyper = (0.9**10, 0.999**10, 1e-3, 0.9, 0.999, 1e-8)
    device = torch.device("cuda")
    print(f"# amsgrad on {torch.cuda.get_device_name(device)}")
    print(
        f"\n{time.strftime('%Y-%m-%dT%H:%M:%S')}; amsgrad {amsgrad.__version__} "
        f"({amsgrad.backend()}), torch {torch.__version__}, "
        f"triton {__import__('triton').__version__}\n"
    )

    # 1. Exactness against the C kernel.
    print("## Bits against the C kernel\n")
    print("| dtype | elements | var, m, v, vhat elements that differ |")
    print("| --- | ---: | ---: |")
    rng = np.random.default_rng(0)
    total_differing = 0
    for dtype, size in ((np.float32, 10**8), (np.float16, 10**7), (np.float64, 10**7)):
        size //= scale
        arrays = [specials(rng, size, np.dtype(dtype), k in (2, 3)) for k in range(5)]
        on_gpu = [[torch.from_numpy(a).to(device)] for a in arrays]
        amsgrad_triton.apply_many(*on_gpu, *hyper)
        amsgrad.apply_adam_with_amsgrad_v2(*arrays[:4], *hyper, arrays[4])
        count = sum(
            differing(tensors[0].cpu().numpy(), expected)
            for tensors, expected in zip(on_gpu[:4], arrays[:4], strict=True)
        )
        total_differing += count
        print(f"| {np.dtype(dtype).name} | {size:,} | {count} |")
        del on_gpu, arrays
        torch.cuda.empty_cache()

    # 2. Bandwidth against the device's copy bandwidth (float32, one tensor).
    bandwidth(torch, amsgrad_triton, device, 10**8 // scale, hyper)

    # 3. Time against torch's fused Adam.
    print("\n## Time per step against torch.optim.Adam(amsgrad=True, fused=True), float32\n")
    print("| case | apply_many | AMSGradV2 triton | torch fused Adam | apply_many / torch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, count, size in (("1e8, one tensor", 1, 10**8), ("1000 x 1e4", 1000, 10**4)):
        against_adam(torch, amsgrad_triton, AMSGradV2, device, label, count, max(size // scale, 1))
        torch.cuda.empty_cache()

    if total_differing:
        return fail(f"{total_differing} elements differ from the C kernel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
