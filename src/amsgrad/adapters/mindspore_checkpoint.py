"""MindSpore checkpoints without MindSpore: ``.ckpt`` (protobuf) and ``.safetensors`` files.

:func:`load_checkpoint` reads a file into ``{name: numpy.ndarray}``; :func:`save_checkpoint`
writes one that ``mindspore.load_checkpoint`` reads back exactly. Neither imports MindSpore,
protobuf or safetensors: both formats are parsed and written here, by hand, because each is one
small fixed message layout, and because a hand-written reader can check every declared size
against the bytes present before it allocates anything.

Formats:

* ``.ckpt``: the protobuf message ``Checkpoint { repeated Value value = 1; }`` with
  ``Value { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto
  maptensor = 3; } }`` and ``TensorProto { repeated int64 dims = 1; required string tensor_type
  = 2; required bytes tensor_content = 3; }`` (MindSpore's ``checkpoint.proto``). MindSpore
  writes one ``Checkpoint`` per tensor (or per 512 MiB slice of one; consecutive values with the
  same tag are joined), concatenated, optionally followed by ``b"crc_num"`` and a 10-byte
  big-endian CRC-32 of everything before it. ``tensor_type`` is MindSpore's dtype name
  (``"Float32"``), the content is the little-endian C-order bytes, a scalar has no dims.
* ``.safetensors``: an 8-byte little-endian header length, a JSON header
  ``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__":
  {...}}`` and the raw little-endian data; MindSpore writes ``{"format": "ms"}`` as metadata and
  may add ``"crc_num"`` (CRC-32 over each name's UTF-8 bytes and its data, in name order).

Files are untrusted: reading executes nothing (no pickle), checks each declared size, rank and
dtype against the bytes actually present before allocating, and answers a truncated, corrupted,
encrypted or foreign file with :class:`CheckpointError` (a ``ValueError``) naming the file and
what is wrong. The memory used is bounded by about twice the file's size. Writing goes to a
temporary file in the target's folder, is fsync'd and then renamed over the target with
``os.replace``, so a crash never leaves a half-written file under the final name.

Unsupported (refused with :class:`CheckpointError`): encrypted checkpoints (``enc_key``),
MapParameter values (``maptensor``), 4-bit ``Int4`` tensors. ``BFloat16`` tensors are read
widened to float32 (exact).
"""

from __future__ import annotations

import binascii
import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

# MindSpore's dtype names in .ckpt files <-> NumPy dtypes (little-endian).
_CKPT_TYPES: dict[str, np.dtype] = {
    "Float16": np.dtype("<f2"),
    "Float32": np.dtype("<f4"),
    "Float64": np.dtype("<f8"),
    "Int8": np.dtype("i1"),
    "UInt8": np.dtype("u1"),
    "Int16": np.dtype("<i2"),
    "UInt16": np.dtype("<u2"),
    "Int32": np.dtype("<i4"),
    "UInt32": np.dtype("<u4"),
    "Int64": np.dtype("<i8"),
    "UInt64": np.dtype("<u8"),
    "Bool": np.dtype("?"),
    "BFloat16": np.dtype("<u2"),  # read as raw bits, widened to float32
}
# safetensors' dtype names.
_ST_TYPES: dict[str, np.dtype] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
    "BF16": np.dtype("<u2"),
}
_CKPT_NAME = {dt.kind + str(dt.itemsize): name for name, dt in _CKPT_TYPES.items()}
_CKPT_NAME["u2"] = "UInt16"
_ST_NAME = {dt.kind + str(dt.itemsize): name for name, dt in _ST_TYPES.items()}
_ST_NAME["u2"] = "U16"

MAX_RANK = 64  # more dimensions than any framework allows
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit, in bytes
CHUNK_BYTES = 512 * 1024 * 1024  # MindSpore's slice size for large tensors in .ckpt files
_CRC_TRAILER = b"crc_num"
# The first four bytes MindSpore writes for enc_key checkpoints (AES-GCM, AES-CBC).
_CIPHER_MAGIC = {b"\xd8\x5e\x3a\x7f": "AES-GCM", b"\xd9\x5e\x3a\x7f": "AES-CBC"}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class _Bad(Exception):
    """Internal: a parse failure, turned into CheckpointError with the file's name."""


# --------------------------------------------------------------------------- reading


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    max_bytes: int | None = None,
) -> dict[str, np.ndarray]:
    """Read a MindSpore checkpoint into ``{name: array}`` (writeable, native byte order).

    path: a ``.ckpt`` or ``.safetensors`` file; ``format`` ("ckpt" or "safetensors") overrides
    the extension (any other extension: the content decides). max_bytes: refuse larger files
    (default: no limit beyond the file's own size, which bounds every allocation).
    A ``str`` entry of a .ckpt file comes back as a 0-d NumPy unicode array.

    Raises CheckpointError (a ValueError) for a truncated, corrupted, encrypted or foreign file,
    OSError when the file cannot be opened.
    """
    fmt = _format_of(path, format, reading=True)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise CheckpointError(path, f"{size} bytes, more than max_bytes={max_bytes}")
        data = f.read(size + 1)
    if len(data) != size:
        raise CheckpointError(path, "the file changed while it was read")
    if fmt is None:
        fmt = "safetensors" if _looks_like_safetensors(data) else "ckpt"
    try:
        if fmt == "safetensors":
            return _read_safetensors(data)
        return _read_ckpt(data)
    except _Bad as e:
        raise CheckpointError(path, str(e)) from None


def _format_of(path: str | os.PathLike[str], format: str | None, *, reading: bool) -> str | None:
    if format is not None:
        if format not in ("ckpt", "safetensors"):
            raise ValueError(f"format must be 'ckpt' or 'safetensors', got {format!r}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix in (".ckpt", ".safetensors"):
        return suffix[1:]
    if reading:
        return None
    raise ValueError(f"{os.fspath(path)}: pass format='ckpt' or 'safetensors' (unknown extension)")


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return n <= len(data) - 8 and data[8:9] == b"{"


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A base-128 varint at pos (at most 10 bytes, within end): (value as uint64, next pos)."""
    value = 0
    for i in range(10):
        if pos >= end:
            raise _Bad("truncated (a number runs past the end of its message)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if value >= 1 << 64:
                raise _Bad("corrupted (a number does not fit 64 bits)")
            return value, pos
    raise _Bad("corrupted (a number longer than 10 bytes)")


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """The fields of the message in data[pos:end]: (number, wire type, start, stop_or_value).

    Length-delimited fields give their payload's [start, stop); varints give (pos, value);
    fixed-size ones are checked and skipped. Group wire types are refused."""
    out = []
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Bad("corrupted (field number 0)")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            out.append((number, wire, pos, value))
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _Bad(
                    f"truncated (a field declares {length} bytes, {end - pos} remain in its "
                    "message)"
                )
            out.append((number, wire, pos, pos + length))
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if width > end - pos:
                raise _Bad("truncated (a fixed-size field runs past the end)")
            pos += width
        else:
            raise _Bad(f"corrupted (wire type {wire} where a checkpoint has none)")
    return out


def _text(data: bytes, start: int, stop: int, what: str) -> str:
    try:
        return data[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad(f"corrupted ({what} is not UTF-8)") from None


def _read_ckpt(data: bytes) -> dict[str, np.ndarray]:
    if data[:4] in _CIPHER_MAGIC:
        raise _Bad(
            f"encrypted ({_CIPHER_MAGIC[data[:4]]}, MindSpore's enc_key): decrypt it with "
            "MindSpore (load_checkpoint(dec_key=...), then save_checkpoint) first"
        )
    end = len(data)
    if end >= 17 and data[end - 17 : end - 10] == _CRC_TRAILER:
        stored = int.from_bytes(data[end - 10 :], "big")
        end -= 17
        if binascii.crc32(data[:end]) != stored:
            raise _Bad("corrupted (its CRC-32 does not match its content)")
    try:
        top = _fields(data, 0, end)
    except _Bad as e:
        hint = "" if data[:1] == b"\x0a" else "; not a MindSpore checkpoint, or encrypted"
        raise _Bad(f"{e}{hint}") from None
    # (name, dims, type, [content slices]) in file order; consecutive same names are joined.
    entries: list[tuple[str, list[int], str, list[tuple[int, int]]]] = []
    seen: set[str] = set()
    for number, wire, start, stop in top:
        if number != 1:
            continue  # an unknown field: skipped, as protobuf does
        if wire != 2:
            raise _Bad("corrupted (a checkpoint value is not a message)")
        name, dims, dtype, content = _value(data, start, stop)
        if entries and entries[-1][0] == name:
            if entries[-1][1] != dims or entries[-1][2] != dtype:
                raise _Bad(f"corrupted (the slices of {name!r} disagree on shape or dtype)")
            entries[-1][3].append(content)
            continue
        if name in seen:
            raise _Bad(f"corrupted (the name {name!r} appears twice)")
        seen.add(name)
        entries.append((name, dims, dtype, [content]))
    out: dict[str, np.ndarray] = {}
    for name, dims, dtype, slices in entries:
        out[name] = _ckpt_array(data, name, dims, dtype, slices)
    return out


def _value(data: bytes, start: int, stop: int) -> tuple[str, list[int], str, tuple[int, int]]:
    """One Checkpoint.Value: (tag, dims, tensor_type, content [start, stop))."""
    tag = tensor = None
    for number, wire, a, b in _fields(data, start, stop):
        if number == 1 and wire == 2:
            tag = (a, b)
        elif number == 2 and wire == 2:
            tensor = (a, b)
        elif number == 3:
            raise _Bad("unsupported (a MapParameter value)")
        elif number in (1, 2):
            raise _Bad("corrupted (a checkpoint value field of the wrong wire type)")
    if tag is None or tensor is None:
        raise _Bad("corrupted (a checkpoint value without its name or tensor)")
    name = _text(data, tag[0], tag[1], "a tensor name")
    dims: list[int] = []
    dtype = content = None
    for number, wire, a, b in _fields(data, tensor[0], tensor[1]):
        if number == 1 and wire == 0:
            dims.append(b)
        elif number == 1 and wire == 2:  # packed dims
            pos = a
            while pos < b:
                value, pos = _varint(data, pos, b)
                dims.append(value)
        elif number == 2 and wire == 2:
            dtype = _text(data, a, b, "a dtype name")
        elif number == 3 and wire == 2:
            content = (a, b)
        elif number in (1, 2, 3):
            raise _Bad(f"corrupted (tensor {name!r}: a field of the wrong wire type)")
        if len(dims) > MAX_RANK:
            raise _Bad(f"corrupted (tensor {name!r} declares more than {MAX_RANK} dimensions)")
    if dtype is None or content is None:
        raise _Bad(f"corrupted (tensor {name!r} has no dtype or no content)")
    for d in dims:
        if d >= 1 << 63:
            raise _Bad(f"corrupted (tensor {name!r} declares a negative dimension)")
    return name, dims, dtype, content


def _ckpt_array(
    data: bytes, name: str, dims: list[int], dtype: str, slices: list[tuple[int, int]]
) -> np.ndarray:
    nbytes = sum(b - a for a, b in slices)
    if dtype == "str":
        if nbytes % 4:
            raise _Bad(f"corrupted (string {name!r} is not UTF-32)")
        raw = b"".join(data[a:b] for a, b in slices)
        try:
            text = raw.decode("utf-32-le").rstrip("\0")
        except UnicodeDecodeError:
            raise _Bad(f"corrupted (string {name!r} is not UTF-32)") from None
        return np.array(text)
    if dtype == "Int4":
        raise _Bad(f"unsupported (tensor {name!r} is Int4)")
    if dtype not in _CKPT_TYPES:
        raise _Bad(f"unsupported (tensor {name!r} has the unknown dtype {dtype[:40]!r})")
    dt = _CKPT_TYPES[dtype]
    # MindSpore reads dims [0] as a scalar; an empty content with dims [0] is shape (0,).
    shape = () if dims == [0] and nbytes == dt.itemsize else tuple(dims)
    count = math.prod(shape)
    if count * dt.itemsize != nbytes:
        raise _Bad(
            f"corrupted (tensor {name!r}: {dtype} {list(shape)} needs {count * dt.itemsize} "
            f"bytes, the file holds {nbytes})"
        )
    out = np.empty(count, dtype=dt.newbyteorder("="))
    view = out.view(np.uint8)
    pos = 0
    for a, b in slices:
        view[pos : pos + b - a] = np.frombuffer(data, np.uint8, b - a, a)
        pos += b - a
    if dt.byteorder == "<" and not np.little_endian:
        out.byteswap(inplace=True)
    return _finish(out.reshape(shape), dtype in ("BFloat16",), dt.kind == "b", name)


def _finish(array: np.ndarray, bfloat16: bool, boolean: bool, name: str) -> np.ndarray:
    if boolean and array.size and array.view(np.uint8).max() > 1:
        raise _Bad(f"corrupted (boolean tensor {name!r} holds bytes other than 0 and 1)")
    if bfloat16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    if len(data) < 8:
        raise _Bad("truncated (shorter than the 8-byte safetensors header length)")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_SAFETENSORS_HEADER:
        raise _Bad(f"corrupted (a {n}-byte header, more than safetensors' limit)")
    if n > len(data) - 8:
        raise _Bad(f"truncated (the header declares {n} bytes, {len(data) - 8} remain)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise _Bad("corrupted (a name appears twice in the header)")
        return dict(pairs)

    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Bad("corrupted (the header is not JSON; not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise _Bad("corrupted (the header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _Bad("corrupted (__metadata__ is not an object)")
    base, available = 8 + n, len(data) - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
            raise _Bad(f"corrupted (the entry of {name[:80]!r} is malformed)")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ST_TYPES:
            raise _Bad(f"unsupported (tensor {name[:80]!r} has the dtype {str(dtype)[:40]!r})")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_RANK
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise _Bad(f"corrupted (tensor {name[:80]!r} has a malformed shape)")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= available
        ):
            raise _Bad(
                f"truncated or corrupted (tensor {name[:80]!r} lies outside the {available} "
                "data bytes)"
            )
        nbytes = math.prod(shape) * _ST_TYPES[dtype].itemsize
        if nbytes != offsets[1] - offsets[0]:
            raise _Bad(
                f"corrupted (tensor {name[:80]!r}: {dtype} {shape} needs {nbytes} bytes, "
                f"its offsets span {offsets[1] - offsets[0]})"
            )
        spans.append((offsets[0], offsets[1], name))
    position = 0
    for begin, stop, name in sorted(spans):
        if begin != position:
            raise _Bad(f"corrupted (the data of {name[:80]!r} overlaps or leaves a gap)")
        position = stop
    if position != available:
        raise _Bad(f"corrupted ({available - position} data bytes belong to no tensor)")
    out: dict[str, np.ndarray] = {}
    crc = 0
    for name, info in header.items():
        begin, stop = info["data_offsets"]
        dt = _ST_TYPES[info["dtype"]]
        raw = np.frombuffer(data, np.uint8, stop - begin, base + begin)
        array = raw.view(dt).astype(dt.newbyteorder("="), copy=True).reshape(info["shape"])
        out[name] = _finish(array, info["dtype"] == "BF16", dt.kind == "b", name)
    if "crc_num" in metadata:
        for name in sorted(out):
            begin, stop = header[name]["data_offsets"]
            crc = binascii.crc32(name.encode("utf-8"), crc)
            crc = binascii.crc32(data[base + begin : base + stop], crc)
        if str(crc) != str(metadata["crc_num"]):
            raise _Bad("corrupted (its CRC-32 does not match its content)")
    return out


# --------------------------------------------------------------------------- writing


def save_checkpoint(
    tensors: Mapping[str, Any],
    path: str | os.PathLike[str],
    format: str | None = None,
) -> None:
    """Write ``{name: array}`` as a MindSpore checkpoint, atomically.

    format: "ckpt" or "safetensors"; by default the extension decides. Arrays of float16/32/64,
    int8-64, uint8-64 and bool are written as they are (little-endian, C order); a .ckpt file
    also takes ``str`` values (MindSpore's string entries). The file is written to a temporary
    file in the same folder, fsync'd, then renamed onto ``path``.

    Raises TypeError for an unsupported value or dtype, ValueError for a bad name or format.
    """
    fmt = _format_of(path, format, reading=False)
    items: list[tuple[str, Any]] = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"checkpoint names must be non-empty strings, got {name!r}")
        if isinstance(value, str) or (
            isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.ndim == 0
        ):
            if fmt != "ckpt":
                raise TypeError(f"{name!r}: strings can only be stored in a .ckpt file")
            items.append((name, str(value)))
            continue
        array = np.asarray(value)
        key = array.dtype.kind + str(array.dtype.itemsize)
        if key not in _CKPT_NAME:
            raise TypeError(f"{name!r}: dtype {array.dtype} cannot be stored in a checkpoint")
        items.append((name, np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")))
    chunks = _safetensors_bytes(items) if fmt == "safetensors" else _ckpt_bytes(items)
    _write_atomically(Path(path), chunks)


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | 2) + _put_varint(len(payload)) + payload


def _ckpt_bytes(items: list[tuple[str, Any]]) -> list[bytes]:
    chunks = []
    for name, value in items:
        if isinstance(value, str):
            dims, dtype = [0], "str"
            contents = [np.array(value).astype("<U").tobytes()]
        else:
            dims = list(value.shape)
            dtype = _CKPT_NAME[value.dtype.kind + str(value.dtype.itemsize)]
            raw = value.tobytes()
            contents = [raw[i : i + CHUNK_BYTES] for i in range(0, len(raw), CHUNK_BYTES)] or [b""]
        dims_bytes = b"".join(_put_varint(1 << 3 | 0) + _put_varint(d) for d in dims)
        for content in contents:
            tensor = dims_bytes + _len_field(2, dtype.encode()) + _len_field(3, content)
            chunks.append(_len_field(1, _len_field(1, name.encode()) + _len_field(2, tensor)))
    return chunks


_ST_ORDER = (
    "BOOL",
    "U8",
    "I8",
    "I16",
    "U16",
    "F16",
    "BF16",
    "I32",
    "U32",
    "F32",
    "F64",
    "I64",
    "U64",
)


def _st_rank(array: np.ndarray) -> int:
    return _ST_ORDER.index(_ST_NAME[array.dtype.kind + str(array.dtype.itemsize)])


def _safetensors_bytes(items: list[tuple[str, Any]]) -> list[bytes]:
    header: dict[str, Any] = {"__metadata__": {"format": "ms"}}
    data = []
    position = 0
    # The data in the order the reference implementation writes it: dtype (its enumeration
    # order, descending), then name; so the files match those MindSpore writes byte for byte.
    for name, array in sorted(items, key=lambda item: (-_st_rank(item[1]), item[0])):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved in safetensors files")
        raw = array.tobytes()
        header[name] = {
            "dtype": _ST_NAME[array.dtype.kind + str(array.dtype.itemsize)],
            "shape": list(array.shape),
            "data_offsets": [position, position + len(raw)],
        }
        position += len(raw)
        data.append(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return [len(text).to_bytes(8, "little"), text, *data]


def _write_atomically(path: Path, chunks: list[bytes]) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (POSIX; not possible on every platform)
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
