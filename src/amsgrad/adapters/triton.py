"""ApplyAdamWithAmsgradV2 on CUDA tensors: one fused Triton kernel over many tensors.

``import amsgrad.triton`` imports Triton and PyTorch (``pip install amsgrad[gpu]``);
``import amsgrad`` does not. Inside this module ``triton`` and ``torch`` are the absolute
imports of those packages.

One launch updates every tensor of a list, as PyTorch's multi-tensor apply does: a table holds,
per tensor, the addresses of its parameter, ``m``, ``v``, ``vhat`` and gradient and its number of
elements; a second table lists the chunks (tensor, first element) that the programs of the grid
take, one chunk each. Each program walks its chunk block by block.

Exactness is built into the code generation (the SPEC's arithmetic, bit for bit):

* every operation is rounded to T, the tensors' dtype; float16 is computed in float32 and rounded
  to float16 after each operation (LLVM may then use the hardware's float16 instruction for a
  rounded float32 add, subtract or multiply: the same value, by the double-rounding bound);
* the kernel is compiled with ``enable_fp_fusion=False``: no multiply-add is contracted into an
  FMA, and every add, subtract and multiply of the PTX carries an explicit ``.rn``, which keeps
  ptxas from contracting them later;
* division is ``tl.div_rn`` (PTX ``div.rn.f32``; Triton's ``/`` is ``div.full.f32``, which is
  not correctly rounded) or, in float64, ``div.rn.f64``;
* the square root is ``tl.sqrt_rn`` (``sqrt.rn.f32``) for float16 and float32, which equals the
  SPEC's sqrt64 (the float64 root rounded to T: one rounding of the exact root either way, as
  float64 carries more than twice T's digits plus two), and ``sqrt.rn.f64`` for float64;
* libdevice's flush-to-zero is off (``enable_reflect_ftz=False``): subnormals are kept, as on the
  CPU.

:func:`compile_ptx` returns the PTX for any dtype and compute capability without a GPU, so that
these properties can be checked where no GPU is present. With ``TRITON_INTERPRET=1`` in the
environment, Triton's interpreter runs the same kernel on CPU tensors (NumPy arithmetic, also
correctly rounded): this is how the test suite checks the kernel against the C kernel.

Two entry points:

* :func:`apply_many`: the hyper-parameters are numbers; ``lr_t``, ``1 - beta1``, ``1 - beta2``
  and ``eps`` are computed on the host in T exactly as the C kernel computes them.
* :func:`apply_many_capturable`: ``lr`` and the beta powers are float32 tensors on the device,
  read by the kernel, which computes ``lr_t`` itself (the same operations, each rounded to T), so
  that a step can be captured in a CUDA graph and replayed with new values.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.interpreter import InterpretedFunction

from amsgrad.adapters.torch_support import torch_scalars

__all__ = [
    "BLOCK",
    "CHUNK_BLOCKS",
    "COMPILE_OPTIONS",
    "DTYPES",
    "apply_many",
    "apply_many_capturable",
    "check_many",
    "compile_ptx",
    "float32_on",
    "interpreting",
    "kernel_source",
]

#: The dtypes the kernel takes (T): float16, float32, float64.
DTYPES = (torch.float16, torch.float32, torch.float64)
#: Elements per block (one vector operation of a program) and blocks per chunk (one program).
BLOCK = 1024
CHUNK_BLOCKS = 32
#: The compiler options that make the code generation exact (see the module docstring).
COMPILE_OPTIONS: dict[str, Any] = {"enable_fp_fusion": False, "enable_reflect_ftz": False}

_TL_DTYPE = {torch.float16: tl.float16, torch.float32: tl.float32, torch.float64: tl.float64}
_PTR_TYPE = {torch.float16: "*fp16", torch.float32: "*fp32", torch.float64: "*fp64"}
#: Columns of the table of tensors: param, m, v, vhat, grad, numel, beta1_power, beta2_power, lr.
_ROW = 9
_STATE_NAMES = ("params", "ms", "vs", "vhats")


# --------------------------------------------------------------------------- the kernel


def kernel_source(
    table_ptr,
    chunks_ptr,
    hyper_ptr,
    DTYPE: tl.constexpr,
    COMPUTE: tl.constexpr,
    WIDE: tl.constexpr,
    CAPTURABLE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """The kernel's Python source (compiled by :func:`compile_ptx` and at the first launch).

    ``table_ptr``: int64, one row of ``_ROW`` per tensor (addresses and sizes); ``chunks_ptr``:
    int64, one (tensor, first element) pair per program; ``hyper_ptr``: float64, ``lr_t``,
    ``1 - beta1``, ``1 - beta2``, ``eps`` as values of T. ``COMPUTE``: float32 for float16 and
    float32, float64 for float64 (then ``WIDE`` is true). ``x.to(DTYPE).to(COMPUTE)`` rounds x
    to T (and is nothing when T is COMPUTE). Division: ``div_rn`` in float32, ``/`` in float64
    (``div.rn.f64``); square root: ``sqrt_rn`` in float32, ``sqrt`` in float64
    (``sqrt.rn.f64``).
    """
    pid = tl.program_id(0)
    index = tl.load(chunks_ptr + 2 * pid)
    start = tl.load(chunks_ptr + 2 * pid + 1)
    row = table_ptr + index * 9
    param_ptr = tl.load(row).to(tl.pointer_type(DTYPE))
    m_ptr = tl.load(row + 1).to(tl.pointer_type(DTYPE))
    v_ptr = tl.load(row + 2).to(tl.pointer_type(DTYPE))
    vhat_ptr = tl.load(row + 3).to(tl.pointer_type(DTYPE))
    grad_ptr = tl.load(row + 4).to(tl.pointer_type(DTYPE))
    numel = tl.load(row + 5)
    one_minus_beta1 = tl.load(hyper_ptr + 1).to(DTYPE).to(COMPUTE)
    one_minus_beta2 = tl.load(hyper_ptr + 2).to(DTYPE).to(COMPUTE)
    eps = tl.load(hyper_ptr + 3).to(DTYPE).to(COMPUTE)
    if CAPTURABLE:
        # lr_t = (lr * T(sqrt64(1 - beta2_power))) / (1 - beta1_power), from float32 tensors.
        beta1_power = tl.load(tl.load(row + 6).to(tl.pointer_type(tl.float32)))
        beta2_power = tl.load(tl.load(row + 7).to(tl.pointer_type(tl.float32)))
        lr = tl.load(tl.load(row + 8).to(tl.pointer_type(tl.float32)))
        lr = lr.to(DTYPE).to(COMPUTE)
        one = tl.full((), 1.0, COMPUTE)
        bias2 = (one - beta2_power.to(DTYPE).to(COMPUTE)).to(DTYPE).to(COMPUTE)
        bias1 = (one - beta1_power.to(DTYPE).to(COMPUTE)).to(DTYPE).to(COMPUTE)
        bias_root = tl.sqrt(bias2) if WIDE else tl.sqrt_rn(bias2).to(DTYPE).to(COMPUTE)
        scaled = (lr * bias_root).to(DTYPE).to(COMPUTE)
        lr_t = scaled / bias1 if WIDE else tl.div_rn(scaled, bias1).to(DTYPE).to(COMPUTE)
    else:
        lr_t = tl.load(hyper_ptr).to(DTYPE).to(COMPUTE)
    end = tl.minimum(numel - start, CHUNK)
    for offset in range(0, end, BLOCK):
        at = start + offset + tl.arange(0, BLOCK)
        mask = at < numel
        grad = tl.load(grad_ptr + at, mask=mask).to(COMPUTE)
        m = tl.load(m_ptr + at, mask=mask).to(COMPUTE)
        v = tl.load(v_ptr + at, mask=mask).to(COMPUTE)
        vhat = tl.load(vhat_ptr + at, mask=mask)
        param = tl.load(param_ptr + at, mask=mask).to(COMPUTE)
        # m = m + (grad - m) * (1 - beta1)
        delta = (grad - m).to(DTYPE).to(COMPUTE)
        delta = (delta * one_minus_beta1).to(DTYPE).to(COMPUTE)
        m_t = (m + delta).to(DTYPE)
        # v = v + (grad * grad - v) * (1 - beta2)
        square = (grad * grad).to(DTYPE).to(COMPUTE)
        delta = (square - v).to(DTYPE).to(COMPUTE)
        delta = (delta * one_minus_beta2).to(DTYPE).to(COMPUTE)
        v_t = (v + delta).to(DTYPE)
        # vhat = v if vhat < v else vhat: a NaN in v keeps the old vhat, a NaN in vhat stays
        vhat = tl.where(vhat < v_t, v_t, vhat)
        # param = param - (lr_t * m) / (T(sqrt64(vhat)) + eps)
        if WIDE:
            root = tl.sqrt(vhat.to(COMPUTE))
        else:
            root = tl.sqrt_rn(vhat.to(COMPUTE)).to(DTYPE).to(COMPUTE)
        denom = (root + eps).to(DTYPE).to(COMPUTE)
        step = (lr_t * m_t.to(COMPUTE)).to(DTYPE).to(COMPUTE)
        step = step / denom if WIDE else tl.div_rn(step, denom).to(DTYPE).to(COMPUTE)
        param = (param - step).to(DTYPE)
        tl.store(m_ptr + at, m_t, mask=mask)
        tl.store(v_ptr + at, v_t, mask=mask)
        tl.store(vhat_ptr + at, vhat, mask=mask)
        tl.store(param_ptr + at, param, mask=mask)


#: The compiled kernel and the interpreted one, made on first use (see :func:`interpreting`).
_KERNELS: dict[bool, Any] = {}


def interpreting() -> bool:
    """Whether Triton's interpreter is on (``TRITON_INTERPRET=1``, read at each launch): the
    kernel then runs on CPU tensors, with NumPy arithmetic, instead of CUDA tensors."""
    return bool(triton.knobs.runtime.interpret)


def _kernel(interpret: bool) -> Any:
    kernel = _KERNELS.get(interpret)
    if kernel is None:
        kernel = (
            InterpretedFunction(kernel_source) if interpret else triton.JITFunction(kernel_source)
        )
        _KERNELS[interpret] = kernel
    return kernel


def _compute(dtype: torch.dtype) -> Any:
    return tl.float64 if dtype == torch.float64 else tl.float32


def compile_ptx(
    dtype: torch.dtype | str,
    arch: int = 90,
    *,
    capturable: bool = False,
    options: dict[str, Any] | None = None,
) -> str:
    """The kernel's PTX for ``dtype`` (float16, float32, float64, or their names) and the NVIDIA
    compute capability ``arch`` (80 for A100, 90 for H100, ...), compiled with the options that
    make it exact (:data:`COMPILE_OPTIONS`). Needs no GPU. ``capturable``: the variant that
    computes ``lr_t`` on the device (:func:`apply_many_capturable`). ``options``: Triton compiler
    options that replace those (``{"enable_fp_fusion": True}`` shows the FMAs they prevent)."""
    names = {str(d).removeprefix("torch."): d for d in DTYPES}
    chosen = names.get(dtype) if isinstance(dtype, str) else dtype
    if chosen not in _TL_DTYPE:
        raise TypeError(
            f"dtype: expected torch.float16, torch.float32 or torch.float64 (or its name), got "
            f"{dtype!r}"
        )
    dtype = chosen
    if isinstance(arch, bool) or not isinstance(arch, int) or arch < 70:
        raise ValueError(
            f"arch: expected a compute capability >= 70 such as 80 or 90, got {arch!r}"
        )
    signature = {
        "table_ptr": "*i64",
        "chunks_ptr": "*i64",
        "hyper_ptr": "*fp64",
        "DTYPE": "constexpr",
        "COMPUTE": "constexpr",
        "WIDE": "constexpr",
        "CAPTURABLE": "constexpr",
        "BLOCK": "constexpr",
        "CHUNK": "constexpr",
    }
    constants = {
        "DTYPE": _TL_DTYPE[dtype],
        "COMPUTE": _compute(dtype),
        "WIDE": dtype == torch.float64,
        "CAPTURABLE": bool(capturable),
        "BLOCK": BLOCK,
        "CHUNK": BLOCK * CHUNK_BLOCKS,
    }
    source = ASTSource(fn=_kernel(False), signature=signature, constexprs=constants)
    compiled = triton.compile(
        source,
        target=GPUTarget("cuda", arch, 32),
        options={**COMPILE_OPTIONS, **(options or {})},
    )
    return str(compiled.asm["ptx"])


# --------------------------------------------------------------------------- device tables


class _DeviceCache:
    """Small int64 and float64 tables on the device, keyed by their contents.

    A step over the same tensors reuses its tables (no host-to-device copy), which is what lets
    a step be captured in a CUDA graph: the warm-up step before the capture builds them, the
    captured step finds them. Tables used during a capture are kept for good (a replay reads
    them); the others are dropped, least recently used first, past ``size`` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.recent: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
        self.captured: dict[tuple[Any, ...], torch.Tensor] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...], build: Any, device: torch.device) -> torch.Tensor:
        capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        with self.lock:
            table = self.captured.get(key)
            if table is None:
                table = self.recent.get(key)
                if table is not None:
                    self.recent.move_to_end(key)
            if table is not None:
                if capturing:
                    self.captured[key] = table
                return table
        if capturing:
            raise RuntimeError(
                "amsgrad.triton: the kernel's tables for these tensors and hyper-parameters are "
                "not on the device yet, and a CUDA graph is being captured (no host-to-device "
                "copy is allowed); run one step with the same tensors before the capture (the "
                "usual warm-up), with the gradients as the same tensors in every step (no "
                "weight_decay, loss_scale or maximize, which make new ones)"
            )
        table = build().to(device)
        with self.lock:
            self.recent[key] = table
            while len(self.recent) > self.size:
                self.recent.popitem(last=False)
        return table


_CACHE = _DeviceCache(128)


def float32_on(value: float, device: torch.device) -> torch.Tensor:
    """``float32(value)`` as a one-element tensor on ``device``, the same tensor for the same
    value (kept in the table cache, so that a captured step finds it): how a number ``lr``
    reaches :func:`apply_many_capturable`. The tensor is shared: never write to it."""
    number = np.float32(value)
    key = (device, "float32", number.tobytes())
    return _CACHE.get(key, lambda: torch.tensor(number, dtype=torch.float32), device)


def _chunks(numels: list[int], chunk: int) -> np.ndarray:
    """(tensor, first element) of every chunk, flattened: one pair per program."""
    sizes = np.asarray(numels, dtype=np.int64)
    counts = -(-sizes // chunk)
    total = int(counts.sum())
    tensor = np.repeat(np.arange(len(numels), dtype=np.int64), counts)
    first = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    pairs = np.empty((total, 2), dtype=np.int64)
    pairs[:, 0] = tensor
    pairs[:, 1] = first * chunk
    return pairs.reshape(-1)


# --------------------------------------------------------------------------- argument checks


def _check_lists(
    params: Any, ms: Any, vs: Any, vhats: Any, grads: Any
) -> tuple[list[list[torch.Tensor]], torch.dtype, torch.device]:
    """Five lists of tensors of one dtype and device, each tensor contiguous and of its
    parameter's shape; returns them, the dtype and the device."""
    given = {"params": params, "ms": ms, "vs": vs, "vhats": vhats, "grads": grads}
    lists = []
    for name, value in given.items():
        if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
            raise TypeError(f"{name}: expected a list of tensors, got {type(value).__name__}")
        lists.append(list(value))
    count = len(lists[0])
    for name, items in zip(given, lists, strict=True):
        if len(items) != count:
            raise ValueError(f"{name}: expected {count} tensors (as params), got {len(items)}")
    if not count:
        return lists, torch.float32, torch.device("cpu")
    first = lists[0][0]
    if not isinstance(first, torch.Tensor):
        raise TypeError(f"params[0]: expected a tensor, got {type(first).__name__}")
    dtype, device = first.dtype, first.device
    if dtype not in DTYPES:
        raise TypeError(f"params[0]: expected dtype float16, float32 or float64, got {dtype}")
    _check_device("params[0]", device)
    for name, items in zip(given, lists, strict=True):
        for index, tensor in enumerate(items):
            where = f"{name}[{index}]"
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"{where}: expected a tensor, got {type(tensor).__name__}")
            if tensor.dtype != dtype or tensor.device != device:
                raise TypeError(
                    f"{where}: expected dtype {dtype} on {device} (as params[0]), got dtype "
                    f"{tensor.dtype} on {tensor.device}"
                )
            if tensor.shape != lists[0][index].shape:
                raise ValueError(
                    f"{where}: expected the shape of params[{index}], "
                    f"{tuple(lists[0][index].shape)}, got {tuple(tensor.shape)}"
                )
            if not tensor.is_contiguous() or tensor.is_neg() or tensor.is_conj():
                raise ValueError(
                    f"{where}: expected a contiguous tensor (the kernel walks its memory in "
                    "order); pass a contiguous copy and copy the result back"
                )
            if name != "grads" and tensor.requires_grad and torch.is_grad_enabled():
                raise ValueError(
                    f"{where}: the tensor requires grad; update it under torch.no_grad() "
                    "(or pass tensor.detach(), which shares its memory)"
                )
    _check_overlap(given, lists)
    return lists, dtype, device


def _check_device(where: str, device: torch.device) -> None:
    if interpreting():
        if device.type != "cpu":
            raise ValueError(
                f"{where}: with TRITON_INTERPRET=1 Triton's interpreter runs the kernel on the "
                f"host and needs CPU tensors, got a tensor on {device}"
            )
    elif device.type != "cuda":
        raise ValueError(
            f"{where}: expected CUDA tensors, got a tensor on {device} (CPU tensors run on "
            "Triton's interpreter with TRITON_INTERPRET=1, or on amsgrad's C kernel)"
        )


def _check_overlap(given: dict[str, Any], lists: list[list[torch.Tensor]]) -> None:
    """No written tensor (param, m, v, vhat) shares memory with another tensor of the call
    (gradients may share memory with each other: they are only read)."""
    spans = []
    for kind, (name, items) in enumerate(zip(given, lists, strict=True)):
        for index, tensor in enumerate(items):
            if tensor.numel():
                low = tensor.data_ptr()
                spans.append((low, low + tensor.numel() * tensor.element_size(), kind, name, index))
    spans.sort()
    reach: tuple[int, int, str, int] | None = None  # the farthest end so far, of a written one
    last_read: tuple[int, int, str, int] | None = None
    for low, high, kind, name, index in spans:
        written = kind < 4
        for other in (reach, last_read if written else None):
            if other is not None and low < other[0]:
                raise ValueError(
                    f"{name}[{index}] and {other[2]}[{other[3]}] share memory; the kernel writes "
                    "params, ms, vs and vhats in place, so each must have memory of its own"
                )
        if written:
            if reach is None or high > reach[0]:
                reach = (high, kind, name, index)
        elif last_read is None or high > last_read[0]:
            last_read = (high, kind, name, index)


# --------------------------------------------------------------------------- entry points


def check_many(
    params: Sequence[torch.Tensor],
    ms: Sequence[torch.Tensor],
    vs: Sequence[torch.Tensor],
    vhats: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
) -> None:
    """Raise what :func:`apply_many` would raise about these tensors, writing nothing."""
    _check_lists(params, ms, vs, vhats, grads)


def apply_many(
    params: Sequence[torch.Tensor],
    ms: Sequence[torch.Tensor],
    vs: Sequence[torch.Tensor],
    vhats: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    beta1_power: Any,
    beta2_power: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    *,
    block: int = BLOCK,
    chunk_blocks: int = CHUNK_BLOCKS,
) -> None:
    """ApplyAdamWithAmsgradV2 on every ``params[i], ms[i], vs[i], vhats[i]`` with ``grads[i]``,
    in place, in one kernel launch.

    All tensors: one dtype T (float16, float32, float64), one CUDA device (CPU tensors under
    ``TRITON_INTERPRET=1``), contiguous, ``ms[i]``, ``vs[i]``, ``vhats[i]``, ``grads[i]`` of
    ``params[i]``'s shape. The six hyper-parameters are numbers, converted to T by the SPEC's
    rules (Python floats through float32), as :func:`amsgrad.apply_adam_with_amsgrad_v2_many`
    converts them: the results are that function's, bit for bit. ``block`` (a power of two) and
    ``chunk_blocks`` tune the grid: a program updates ``block * chunk_blocks`` elements.
    Errors are raised before anything is written.
    """
    lists, dtype, device = _check_lists(params, ms, vs, vhats, grads)
    _check_grid(block, chunk_blocks)
    for name, value in (("beta1_power", beta1_power), ("beta2_power", beta2_power), ("lr", lr)):
        if isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name}: expected a number, got a tensor (apply_many_capturable takes device "
                "tensors)"
            )
    scalars = torch_scalars(dtype, beta1_power, beta2_power, lr, beta1, beta2, eps)
    hyper = tuple(float(value.item()) for value in scalars)
    _launch(lists, dtype, device, hyper, None, block, chunk_blocks)


def apply_many_capturable(
    params: Sequence[torch.Tensor],
    ms: Sequence[torch.Tensor],
    vs: Sequence[torch.Tensor],
    vhats: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    beta1_power: torch.Tensor | Sequence[torch.Tensor],
    beta2_power: torch.Tensor | Sequence[torch.Tensor],
    lr: torch.Tensor,
    beta1: Any,
    beta2: Any,
    eps: Any,
    *,
    block: int = BLOCK,
    chunk_blocks: int = CHUNK_BLOCKS,
) -> None:
    """:func:`apply_many` with ``lr`` and the beta powers read on the device, so that a step can
    be captured in a CUDA graph (and replayed after the caller updates them in place).

    ``lr``: a one-element float32 tensor on the tensors' device. ``beta1_power``,
    ``beta2_power``: each a one-element float32 tensor on the device, or a list of them, one per
    parameter. Each is converted to T as the SPEC converts a float32 tensor, and the kernel
    computes ``lr_t = (lr * T(sqrt64(1 - beta2_power))) / (1 - beta1_power)`` with each
    operation rounded to T: the results equal :func:`apply_many`'s with the same values (given
    there as float32 numbers), bit for bit. ``beta1``, ``beta2``, ``eps``: numbers. The host
    reads no tensor value: the step does not wait for the device.

    The kernel's tables (the tensors' addresses, ``1 - beta1``, ``1 - beta2``, ``eps``) are
    copied to the device at the first call and found again at the next calls with the same
    tensors and values; a call during a capture must find them (raise RuntimeError otherwise),
    so run one step before capturing.
    """
    lists, dtype, device = _check_lists(params, ms, vs, vhats, grads)
    _check_grid(block, chunk_blocks)
    count = len(lists[0])
    powers = []
    for name, value in (("beta1_power", beta1_power), ("beta2_power", beta2_power)):
        if isinstance(value, torch.Tensor):
            _check_device_scalar(name, value, device)
            powers.append([value] * count)
            continue
        if not isinstance(value, Sequence) or len(value) != count:
            raise TypeError(
                f"{name}: expected a float32 tensor, or a list of {count} of them (one per "
                f"parameter), got {type(value).__name__}"
                + (f" of length {len(value)}" if isinstance(value, Sequence) else "")
            )
        for index, item in enumerate(value):
            _check_device_scalar(f"{name}[{index}]", item, device)
        powers.append(list(value))
    _check_device_scalar("lr", lr, device)
    # 1 - beta1, 1 - beta2, eps in T (the powers and lr given here are not used).
    scalars = torch_scalars(dtype, np.float32(0), np.float32(0), 0.0, beta1, beta2, eps)
    hyper = (0.0, *(float(value.item()) for value in scalars[1:]))
    extra = [(b1.data_ptr(), b2.data_ptr(), lr.data_ptr()) for b1, b2 in zip(*powers, strict=True)]
    _launch(lists, dtype, device, hyper, extra, block, chunk_blocks)


def _check_device_scalar(name: str, value: Any, device: torch.device) -> None:
    if (
        not isinstance(value, torch.Tensor)
        or value.dtype != torch.float32
        or value.numel() != 1
        or value.device != device
    ):
        got = (
            f"dtype {value.dtype}, {value.numel()} elements, on {value.device}"
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise TypeError(
            f"{name}: expected a one-element float32 tensor on {device} (the tensors' device), "
            f"got {got}"
        )


def _check_grid(block: Any, chunk_blocks: Any) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block & (block - 1):
        raise ValueError(f"block: expected a power of two >= 16, got {block!r}")
    if isinstance(chunk_blocks, bool) or not isinstance(chunk_blocks, int) or chunk_blocks < 1:
        raise ValueError(f"chunk_blocks: expected an int >= 1, got {chunk_blocks!r}")


def _launch(
    lists: list[list[torch.Tensor]],
    dtype: torch.dtype,
    device: torch.device,
    hyper: tuple[float, ...],
    extra: list[tuple[int, int, int]] | None,
    block: int,
    chunk_blocks: int,
) -> None:
    """Build (or find) the tables, launch one grid over every chunk of every tensor."""
    numels = [tensor.numel() for tensor in lists[0]]
    chunk = block * chunk_blocks
    if not sum(numels):
        return
    rows = []
    for index, numel in enumerate(numels):
        row = [lists[k][index].data_ptr() for k in range(5)]
        row.append(numel)
        row.extend(extra[index] if extra is not None else (0, 0, 0))
        rows.append(tuple(row))
    key = (device, chunk, tuple(rows))

    def build_table() -> torch.Tensor:
        table = np.asarray(rows, dtype=np.uint64).view(np.int64).reshape(-1)
        return torch.from_numpy(np.concatenate([table, _chunks(numels, chunk)]))

    table = _CACHE.get(key, build_table, device)
    hyper_key = (device, "hyper", np.asarray(hyper, dtype=np.float64).tobytes())
    hyper_tensor = _CACHE.get(hyper_key, lambda: torch.tensor(hyper, dtype=torch.float64), device)
    programs = (table.numel() - len(rows) * _ROW) // 2
    interpret = interpreting()
    # The interpreter computes with NumPy, which warns of what IEEE arithmetic does silently.
    with np.errstate(all="ignore") if interpret else contextlib.nullcontext():
        _run(interpret, programs, table, len(rows) * _ROW, hyper_tensor, dtype, extra, block, chunk)
    # The memory was written behind autograd's back: tell it, as an in-place op would.
    torch.autograd.graph.increment_version(
        [tensor for k in range(4) for tensor in lists[k] if tensor.numel()]
    )


def _run(
    interpret: bool,
    programs: int,
    table: torch.Tensor,
    chunks_at: int,
    hyper_tensor: torch.Tensor,
    dtype: torch.dtype,
    extra: Any,
    block: int,
    chunk: int,
) -> None:
    _kernel(interpret)[(programs,)](
        table,
        table[chunks_at:],
        hyper_tensor,
        DTYPE=_TL_DTYPE[dtype],
        COMPUTE=_compute(dtype),
        WIDE=dtype == torch.float64,
        CAPTURABLE=extra is not None,
        BLOCK=block,
        CHUNK=chunk,
        **({} if interpret else COMPILE_OPTIONS),
    )
