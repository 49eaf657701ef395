"""The framework-neutral optimizer state of MindSpore checkpoints (adapters/mindspore_state.py),
and what MindSpore did with the files of tests/golden/replay/resume/ (generate_resume.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import replay_reference as ref
from amsgrad.adapters.mindspore_state import (
    OptimizerState,
    Slot,
    check_learning_rates,
    common_counters,
    learning_rate_entry,
    map_names,
    read_state,
    write_state,
)
from amsgrad.mindspore import load_checkpoint

CASES = ref.resume_cases()
FILES = [(case, file) for case in CASES for file in case["files"]]


def test_the_resume_data_covers_both_writers_and_both_formats() -> None:
    assert {file["writer"] for _, file in FILES} == {"mindspore", "amsgrad"}
    assert {file["format"] for _, file in FILES} == {"ckpt", "safetensors"}
    assert all(0 < case["after_steps"] < case["steps"] for case in CASES)
    total = sum((ref.RESUME_DIR / file["file"]).stat().st_size for _, file in FILES)
    assert total < 200_000


@pytest.mark.parametrize(
    ("case", "file"), FILES, ids=[f"{c['config']}-{f['file']}" for c, f in FILES]
)
def test_mindspore_continued_bit_for_bit_from_the_file(case: dict, file: dict) -> None:
    """Recorded in MindSpore: a fresh network and optimizer loaded the file and went on equal
    to the recorded run, every step; files written by this project included."""
    path = ref.RESUME_DIR / file["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == file["sha256"]
    assert file["continues_bit_exact"] is True, file["first_difference"]
    assert file["not_loaded"] == []


@pytest.mark.parametrize("case", CASES, ids=[c["config"] for c in CASES])
def test_mindspores_checkpoint_is_the_recorded_state(case: dict) -> None:
    entry, k = case["entry"], case["after_steps"]
    arrays = ref.load_arrays(entry)
    slots = [
        Slot(n, n, tuple(entry["shapes"][n]), np.dtype(entry["dtype"])) for n in entry["names"]
    ]
    path = ref.RESUME_DIR / f"{entry['id']}.step{k}.ckpt"
    state = read_state(path, slots)
    assert state.global_step == k == int(arrays["global_step"][k])
    assert state.beta1_power.tobytes() == arrays["beta1_power"][k].tobytes()
    assert state.beta2_power.tobytes() == arrays["beta2_power"][k].tobytes()
    for kind, key in (
        ("params", "param"),
        ("moment1", "moment1"),
        ("moment2", "moment2"),
        ("vhat", "vhat"),
    ):
        for name, array in zip(entry["names"], getattr(state, kind), strict=True):
            assert array.tobytes() == arrays[f"{key}/{name}"][k].tobytes(), (kind, name)
    assert "learning_rate" in state.learning_rates


@pytest.mark.parametrize("case", CASES, ids=[c["config"] for c in CASES])
def test_rewriting_a_state_gives_mindspores_bytes(case: dict, tmp_path: Path) -> None:
    entry, k = case["entry"], case["after_steps"]
    slots = [
        Slot(n, n, tuple(entry["shapes"][n]), np.dtype(entry["dtype"])) for n in entry["names"]
    ]
    for file in case["files"]:
        if file["writer"] != "mindspore":
            continue
        source = ref.RESUME_DIR / file["file"]
        state = read_state(source, slots)
        target = tmp_path / file["file"]
        write_state(target, slots, state)
        assert target.read_bytes() == source.read_bytes()
    assert k > 0


def small() -> tuple[list[Slot], dict[str, np.ndarray]]:
    slots = [Slot("a.w", "net.w", (2, 3), np.dtype(np.float32))]
    tensors = {
        "global_step": np.array([4], np.int32),
        "learning_rate": np.array(0.01, np.float32),
        "net.w": np.ones((2, 3), np.float32),
        "beta1_power": np.array(0.9**4, np.float32),
        "beta2_power": np.array(0.999**4, np.float32),
        "moment1.net.w": np.full((2, 3), 0.5, np.float32),
        "moment2.net.w": np.full((2, 3), 0.25, np.float32),
        "vhat.net.w": np.full((2, 3), 0.3, np.float32),
    }
    return slots, tensors


F32 = np.float32
#: (entry, its new value or None to remove it, words the message must hold)
WRONG = [
    ("moment2.net.w", None, ["missing", "'moment2.net.w'", "moment2 state of 'a.w'"]),
    ("net.w", None, ["missing", "'net.w'", "the parameter 'a.w'"]),
    ("global_step", None, ["missing", "'global_step'"]),
    ("vhat.net.w", np.ones((3, 2), F32), ["'vhat.net.w' is float32 (3, 2)", "(2, 3)"]),
    ("net.w", np.ones((2, 3)), ["'net.w' is float64", "expected float32 (2, 3)"]),
    ("beta1_power", np.array(0.5), ["'beta1_power' is float64"]),
    ("beta2_power", np.array(1.5, F32), ["'beta2_power' is 1.5", "[0, 1]"]),
    ("global_step", np.array([-1], np.int32), ["'global_step' is -1"]),
    ("global_step", np.array([1.0], F32), ["'global_step' is float32"]),
    ("moment1.net.w", np.array(["x"]), ["'moment1.net.w' is not a numeric"]),
]


@pytest.mark.parametrize(("name", "value", "words"), WRONG)
def test_read_state_names_the_wrong_entry(name: str, value: object, words: list[str]) -> None:
    slots, tensors = small()
    if value is None:
        del tensors[name]
    else:
        tensors[name] = value  # type: ignore[assignment]
    with pytest.raises(ValueError, match="checkpoint: ") as info:
        read_state(tensors, slots)
    for word in words:
        assert word in str(info.value)


def test_read_state_lists_every_problem_at_once() -> None:
    slots, tensors = small()
    del tensors["moment1.net.w"], tensors["vhat.net.w"]
    tensors["net.w"] = np.ones(6, np.float32)
    with pytest.raises(ValueError) as info:
        read_state(tensors, slots)
    text = str(info.value)
    assert (
        "'moment1.net.w'" in text and "'vhat.net.w'" in text and "'net.w' is float32 (6,)" in text
    )


def test_read_state_copies_and_ignores_other_entries() -> None:
    slots, tensors = small()
    tensors["unrelated"] = np.zeros(3, np.int8)
    state = read_state(tensors, slots)
    state.params[0][...] = 7
    assert (tensors["net.w"] == 1).all()
    assert state.global_step == 4 and state.beta1_power == np.float32(0.9**4)
    assert list(state.learning_rates) == ["learning_rate"]


def test_read_state_refuses_other_arguments() -> None:
    with pytest.raises(TypeError, match="checkpoint: expected a checkpoint file's path or a dict"):
        read_state(42, [])


def test_map_names() -> None:
    labels = ["fc.weight", "norm.weight", "norm.bias"]
    assert map_names(labels, None) == labels
    renamed = {"norm.weight": "norm.gamma", "norm.bias": "norm.beta"}
    assert map_names(labels, renamed) == ["fc.weight", "norm.gamma", "norm.beta"]
    assert map_names(labels, lambda n: "net." + n) == ["net." + n for n in labels]
    with pytest.raises(
        ValueError,
        match=r"name_map: 'fc.weight' and 'norm.weight' both map to the MindSpore name 'x'",
    ):
        map_names(labels, {"fc.weight": "x", "norm.weight": "x"})
    with pytest.raises(TypeError, match=r"name_map: the MindSpore name of 'fc\.weight'"):
        map_names(labels, lambda n: None)
    with pytest.raises(TypeError, match="name_map: expected a dict or a callable"):
        map_names(labels, ["x"])  # type: ignore[arg-type]


def test_common_counters() -> None:
    b1, b2 = float(np.float32(0.9)), float(np.float32(0.999))
    assert common_counters([("a", 1, b1, b2), ("b", 1, b1, b2)]) == (
        1,
        np.float32(b1),
        np.float32(b2),
    )
    with pytest.raises(ValueError, match=r"one global_step .*'a' has step 1.*'b' has step 0"):
        common_counters([("a", 1, b1, b2), ("b", 0, 1.0, 1.0)])
    with pytest.raises(ValueError, match="no parameters"):
        common_counters([])


def test_learning_rates_compared_as_float32() -> None:
    stored = {"learning_rate": np.array(0.01, np.float32)}
    check_learning_rates(stored, [("group 0", 0.01)], "raise")  # float32(0.01) is stored
    check_learning_rates(stored, [("group 0", 0.5)], "ignore")
    check_learning_rates({}, [("group 0", 0.5)], "raise")  # nothing to compare with
    with pytest.raises(ValueError, match=r"group 0 has lr 0\.5"):
        check_learning_rates(stored, [("group 0", 0.5)], "raise")
    with pytest.warns(UserWarning, match="checkpoint's learning rate"):
        check_learning_rates(stored, [("group 0", [0.01, 0.02])], "warn")
    with pytest.raises(ValueError, match="lr_mismatch: expected one of 'warn', 'raise'"):
        check_learning_rates(stored, [], "loud")
    listed = {"learning_rate": np.array([0.01, 0.02], np.float32)}
    check_learning_rates(listed, [("group 0", [0.01, 0.02])], "raise")


def test_learning_rate_entry() -> None:
    assert learning_rate_entry([0.01, 0.01]).tobytes() == np.float32(0.01).tobytes()
    assert learning_rate_entry([[0.1, 0.2]]).dtype == np.float32
    assert learning_rate_entry([0.01, 0.02]) is None


def test_write_then_read(tmp_path: Path) -> None:
    slots, tensors = small()
    state = read_state(tensors, slots)
    for name in ("x.ckpt", "x.safetensors"):
        write_state(tmp_path / name, slots, state)
        written = load_checkpoint(tmp_path / name)
        assert set(written) == set(tensors)
        for key, value in tensors.items():
            assert written[key].dtype == value.dtype and written[key].tobytes() == value.tobytes()
    listed = OptimizerState(**{**vars(state), "learning_rates": {"learning_rate": np.ones(3)}})
    write_state(tmp_path / "list.ckpt", slots, listed)
    assert list(load_checkpoint(tmp_path / "list.ckpt"))[-1] == "learning_rate"
