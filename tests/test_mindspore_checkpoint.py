"""amsgrad.mindspore: MindSpore checkpoints read and written without MindSpore.

Data: tests/golden/replay/ckpt/ (files MindSpore 2.10 wrote: an nn.Adam(use_amsgrad=True)
optimizer after 30 steps of the ``weight_decay`` replay configuration, as .ckpt, .safetensors,
.ckpt with a CRC, and an encrypted .ckpt), checkpoints.npz (what mindspore.load_checkpoint read
from them) and manifest.json (checksums, and whether MindSpore read our files back exactly).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from amsgrad.mindspore import CheckpointError, load_checkpoint, save_checkpoint

REPLAY = Path(__file__).resolve().parent / "golden" / "replay"
MANIFEST = json.loads((REPLAY / "manifest.json").read_text(encoding="utf-8"))
RECORDED = dict(np.load(REPLAY / "checkpoints.npz", allow_pickle=False))
MS_FILES = [c for c in MANIFEST["checkpoints"] if c["writer"] == "mindspore"]
PLAIN = [c for c in MS_FILES if not c.get("encrypted")]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def ours_tensors() -> dict[str, np.ndarray]:
    """The tensors the generating script wrote with save_checkpoint and MindSpore read back."""
    return {k.split("/", 1)[1]: v for k, v in RECORDED.items() if k.startswith("ours/")}


@pytest.mark.parametrize("entry", PLAIN, ids=[c["file"] for c in PLAIN])
def test_mindspore_files_load_exactly(entry: dict) -> None:
    path = REPLAY / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    loaded = load_checkpoint(path)
    assert sorted(loaded) == entry["names"]
    prefix = Path(entry["file"]).name + "/"
    for name, array in loaded.items():
        assert same_bits(array, RECORDED[prefix + name]), name
        assert array.flags.writeable


def test_optimizer_checkpoint_is_the_replay_state() -> None:
    """The optimizer checkpoint holds the replay's state after its last step, bit for bit."""
    of = MANIFEST["checkpoints_of"]
    entry = next(c for c in MANIFEST["configs"] if c["id"] == of["config"])
    with np.load(REPLAY / entry["file"], allow_pickle=False) as data:
        state = {k: data[k] for k in data.files}
    t = of["after_steps"]
    loaded = load_checkpoint(REPLAY / "ckpt" / "optimizer.ckpt")
    for name in entry["names"]:
        assert same_bits(loaded[name], state[f"param/{name}"][t])
        for kind in ("moment1", "moment2", "vhat"):
            assert same_bits(loaded[f"{kind}.{name}"], state[f"{kind}/{name}"][t])
    assert same_bits(loaded["beta1_power"], state["beta1_power"][t])
    assert same_bits(loaded["beta2_power"], state["beta2_power"][t])
    assert loaded["global_step"].dtype == np.int32 and loaded["global_step"].tolist() == [t]
    assert loaded["learning_rate"].shape == () and loaded["learning_rate"] == np.float32(0.01)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_mindspore_read_our_files(fmt: str, tmp_path: Path) -> None:
    """MindSpore read back exactly what this writer writes (recorded by the generator); the
    writer is deterministic, so writing the same tensors again gives the same bytes."""
    for entry in MANIFEST["checkpoints"]:
        if entry["writer"] != "amsgrad" or entry["format"] != fmt:
            continue
        assert entry["read_back_exact"] is True
        if entry["tensors"] == "ours/*":
            tensors = ours_tensors()
        else:
            tensors = load_checkpoint(REPLAY / "ckpt" / "optimizer.ckpt")
        path = tmp_path / f"x.{fmt}"
        save_checkpoint(tensors, path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]


def test_rewriting_gives_mindspores_bytes(tmp_path: Path) -> None:
    """Our .ckpt and .safetensors encodings are the ones MindSpore itself writes."""
    for name in ("optimizer.ckpt", "optimizer.safetensors"):
        source = REPLAY / "ckpt" / name
        save_checkpoint(load_checkpoint(source), tmp_path / name)
        assert (tmp_path / name).read_bytes() == source.read_bytes()


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_round_trip(fmt: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        **ours_tensors(),
        "big_endian": np.arange(5, dtype=">f8"),
        "strided": rng.standard_normal((6, 4)).astype(np.float32)[::2, ::-1],
        "i16": np.array([-3, 7], dtype=np.int16),
        "u64": np.array([2**63 + 5], dtype=np.uint64),
        "nan": np.array([np.nan, -0.0, np.inf], dtype=np.float16),
    }
    path = tmp_path / f"t.{fmt}"
    save_checkpoint(tensors, path)
    loaded = load_checkpoint(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        expected = np.asarray(value, dtype=value.dtype.newbyteorder("="), order="C")
        assert same_bits(loaded[name], expected), name
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_strings_and_format_argument(tmp_path: Path) -> None:
    path = tmp_path / "noext"
    save_checkpoint({"note": "héllo", "x": np.ones(2, np.float32)}, path, format="ckpt")
    loaded = load_checkpoint(path)  # the content decides
    assert str(loaded["note"]) == "héllo" and loaded["x"].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError):
        save_checkpoint({"note": "x"}, tmp_path / "a.safetensors")
    with pytest.raises(TypeError):
        save_checkpoint({"c": np.ones(2, np.complex64)}, tmp_path / "a.ckpt")
    with pytest.raises(ValueError, match="format"):
        save_checkpoint({"x": np.ones(2)}, tmp_path / "a.bin")
    save_checkpoint({"x": np.ones(2)}, tmp_path / "b.bin", format="safetensors")
    assert load_checkpoint(tmp_path / "b.bin")["x"].tolist() == [1.0, 1.0]


def test_crash_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    save_checkpoint({"x": np.zeros(3, np.float32)}, path)
    before = path.read_bytes()

    class Boom:
        """An array-like that fails while the file is being prepared."""

        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        save_checkpoint({"x": np.ones(3, np.float32), "y": Boom()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]


def test_the_write_is_a_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data goes to a temporary file in the same folder, fsync'd before os.replace."""
    calls: list[tuple[str, str]] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        calls.append(("replace", str(Path(src).parent)))
        assert Path(src).stat().st_size > 0
        return real_replace(src, dst)

    def fsync(fd):
        calls.append(("fsync", ""))
        return real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    save_checkpoint({"x": np.ones(3)}, tmp_path / "r.ckpt")
    assert calls[0] == ("fsync", "") and calls[1] == ("replace", str(tmp_path))


# --------------------------------------------------------------------------- hostile files


def test_encrypted_file_is_named() -> None:
    entry = next(c for c in MS_FILES if c.get("encrypted"))
    with pytest.raises(CheckpointError, match="encrypted") as info:
        load_checkpoint(REPLAY / entry["file"])
    assert "optimizer_encrypted.ckpt" in str(info.value)


def test_crc_mismatch(tmp_path: Path) -> None:
    data = bytearray((REPLAY / "ckpt" / "optimizer_crc.ckpt").read_bytes())
    data[100] ^= 0x01
    (tmp_path / "bad.ckpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_huge_declared_sizes(tmp_path: Path) -> None:
    """Sizes far beyond the file are refused before anything is allocated."""
    huge_header = struct.pack("<Q", 2**60) + b'{"a":1}'
    tensor = {"dtype": "F32", "shape": [2**30, 2**30], "data_offsets": [0, 2**62]}
    huge_tensor = json.dumps({"a": tensor}).encode()
    huge_tensor = struct.pack("<Q", len(huge_tensor)) + huge_tensor
    # .ckpt: a value whose length prefix claims 2**62 bytes, and a tensor with huge dims.
    huge_len = b"\x0a" + bytes([0x80] * 8 + [0x40]) + b"\x0a\x01a"
    dims = b"".join(b"\x08" + bytes([0xFF] * 7 + [0x7F]) for _ in range(3))
    tensor_msg = dims + b"\x12\x07Float32\x1a\x04\x00\x00\x00\x00"
    value = b"\x0a\x01a" + b"\x12" + bytes([len(tensor_msg)]) + tensor_msg
    huge_dims = b"\x0a" + bytes([len(value)]) + value
    for name, blob in [
        ("h.safetensors", huge_header),
        ("t.safetensors", huge_tensor),
        ("l.ckpt", huge_len),
        ("d.ckpt", huge_dims),
    ]:
        (tmp_path / name).write_bytes(blob)
        tracemalloc.start()
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1_000_000, (name, peak)


def test_foreign_files(tmp_path: Path) -> None:
    cases = {
        "text.ckpt": b"hello, this is not a checkpoint\n",
        "zip.ckpt": b"PK\x03\x04" + bytes(60),
        "pickle.ckpt": b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.",
        "random.safetensors": bytes(random.Random(1).getrandbits(8) for _ in range(300)),
        "short.safetensors": b"\x01\x00",
        "notjson.safetensors": struct.pack("<Q", 4) + b"{{{{",
        "deep.safetensors": struct.pack("<Q", 200_000) + b"[" * 200_000,
        "cipher.ckpt": b"\xd9\x5e\x3a\x7f" + bytes(100),
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        assert name in str(info.value)
        assert isinstance(info.value, ValueError)


def mutations(data: bytes, rng: random.Random) -> list[bytes]:
    """Truncations every few bytes, byte flips, inserted and deleted bytes, large varints."""
    out = [data[:n] for n in range(0, len(data), 7)]
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    for _ in range(60):
        i = rng.randrange(len(data))
        out.append(data[:i] + bytes([0xFF] * rng.randint(1, 9)) + data[i:])
        out.append(data[:i] + data[i + rng.randint(1, 16) :])
    return out


@pytest.mark.parametrize("source", ["optimizer.ckpt", "optimizer.safetensors", "ours.ckpt"])
def test_fuzz(source: str, tmp_path: Path) -> None:
    """Every mutated file gives a dict or CheckpointError: no other exception, no hang, no
    allocation beyond a small multiple of the file's size."""
    if source == "ours.ckpt":
        save_checkpoint({"s": "abc", **ours_tensors()}, tmp_path / source)
        data = (tmp_path / source).read_bytes()
    else:
        data = (REPLAY / "ckpt" / source).read_bytes()
    rng = random.Random(source)
    path = tmp_path / ("m" + Path(source).suffix)
    outcomes = {"dict": 0, "error": 0}
    started = time.monotonic()
    tracemalloc.start()
    try:
        for blob in mutations(data, rng):
            path.write_bytes(blob)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            t0 = time.monotonic()
            try:
                result = load_checkpoint(path)
                assert isinstance(result, dict)
                assert all(isinstance(v, np.ndarray) for v in result.values())
                outcomes["dict"] += 1
            except CheckpointError as e:
                assert str(path) in str(e)
                outcomes["error"] += 1
            assert time.monotonic() - t0 < 2.0
            assert tracemalloc.get_traced_memory()[1] - before < 4 * len(blob) + 200_000
    finally:
        tracemalloc.stop()
    assert outcomes["error"] > 0 and outcomes["dict"] > 0
    assert time.monotonic() - started < 60


def test_cross_check_with_reference_parsers(tmp_path: Path) -> None:
    """Where protobuf and safetensors are installed, they read our files as we do."""
    st = pytest.importorskip("safetensors.numpy")
    save_checkpoint(ours_tensors(), tmp_path / "x.safetensors")
    theirs = st.load_file(str(tmp_path / "x.safetensors"))
    for name, value in ours_tensors().items():
        assert same_bits(theirs[name], value)
    st.save_file({"a": np.arange(6, dtype=np.int32).reshape(2, 3)}, str(tmp_path / "y.safetensors"))
    assert load_checkpoint(tmp_path / "y.safetensors")["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_safetensors_bytes_match_the_reference_writer(tmp_path: Path) -> None:
    """Every dtype at once: our file is the safetensors package's, byte for byte."""
    st = pytest.importorskip("safetensors.numpy")
    tensors = {
        f"t_{dt}": np.arange(3).astype(dt)
        for dt in ("?", "u1", "i1", "i2", "u2", "f2", "i4", "u4", "f4", "f8", "i8", "u8")
    }
    tensors["a_scalar"] = np.array(1.5, np.float32)
    st.save_file(tensors, str(tmp_path / "ref.safetensors"), metadata={"format": "ms"})
    save_checkpoint(tensors, tmp_path / "ours.safetensors")
    assert (tmp_path / "ours.safetensors").read_bytes() == (
        tmp_path / "ref.safetensors"
    ).read_bytes()
