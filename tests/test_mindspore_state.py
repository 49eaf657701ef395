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


def test_checked_counters_fit_mindspores_int32_step_and_float32_powers() -> None:
    from amsgrad.adapters.mindspore_state import checked_beta_power, checked_global_step

    assert checked_global_step(np.uint32(2**31 - 1)) == 2**31 - 1
    assert checked_global_step(0) == 0
    for step in (2**31, np.uint32(2**32 - 1), np.int64(-1), 2**70):
        with pytest.raises(
            ValueError, match=rf"^global_step is {int(step)}, expected an int in \[0, 2\*\*31 - 1\]"
        ):
            checked_global_step(step)
    with pytest.raises(ValueError, match=r"^state: count is True, expected an int"):
        checked_global_step(True, "state: count")
    assert checked_beta_power(np.float64(0.25), "beta1_power") == np.float32(0.25)
    assert checked_beta_power(0.0, "beta2_power") == 0 and checked_beta_power(1, "x") == 1
    for value, text in ((np.nan, "nan"), (1.5, "1.5"), (-0.1, "-0.1"), (np.inf, "inf")):
        with pytest.raises(
            ValueError,
            match=rf"^beta2_power is {text}, expected a finite number in \[0, 1\] \(MindSpore's "
            r"beta2_power is float32\)",
        ):
            checked_beta_power(value, "beta2_power")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (
            "global_step",
            2**31,
            "state: global_step is 2147483648, expected an int in [0, 2**31 - 1]",
        ),
        ("beta1_power", np.float32(np.nan), "state: beta1_power is nan, expected a finite number"),
        ("beta2_power", 1.5, "state: beta2_power is 1.5, expected a finite number in [0, 1]"),
        (
            "learning_rates",
            {"learning_rate": np.ones((2, 2), np.float32)},
            "state: learning_rates['learning_rate']: expected a number or a per-step list",
        ),
        (
            "learning_rates",
            {"learning_rate": np.array(np.nan, np.float32)},
            "state: learning_rates['learning_rate']: expected a learning rate >= 0",
        ),
    ],
)
def test_write_state_refuses_what_mindspore_cannot_hold(
    field: str, value: object, words: str, tmp_path: Path
) -> None:
    slots, tensors = small()
    state = OptimizerState(**{**vars(read_state(tensors, slots)), field: value})
    with pytest.raises(ValueError) as info:
        write_state(tmp_path / "x.ckpt", slots, state)
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []


#: A checkpoint's learning-rate entries that are not what MindSpore writes, and what the message
#: names.
ODD_LEARNING_RATES = [
    ("learning_rate", np.array(np.nan, F32), "'learning_rate' is nan"),
    ("learning_rate", np.array(-0.5, F32), "'learning_rate' is -0.5"),
    ("learning_rate", np.array([0.01, np.inf], F32), "a list of 2 holding inf at [1]"),
    ("learning_rate", np.array(0.01), "'learning_rate' is float64 ()"),
    ("learning_rate", np.array([1], np.int32), "'learning_rate' is int32 (1,)"),
    ("learning_rate", np.full((2, 2), 0.01, F32), "'learning_rate' is float32 (2, 2)"),
    ("learning_rate", np.zeros(0, F32), "'learning_rate' is float32 (0,)"),
    ("learning_rate", np.array(["x"]), "'learning_rate' is not a numeric array"),
    ("learning_rate_group_1", np.array(0.01, np.float16), "'learning_rate_group_1' is float16"),
]


@pytest.mark.parametrize(("name", "value", "words"), ODD_LEARNING_RATES)
@pytest.mark.parametrize("policy", ["warn", "raise"])
def test_learning_rate_entries_that_cannot_be_compared_are_refused(
    name: str, value: np.ndarray, words: str, policy: str
) -> None:
    slots, tensors = small()
    tensors[name] = value
    stored = read_state(tensors, slots).learning_rates  # read as they are
    with pytest.raises(ValueError) as info:
        check_learning_rates(stored, [("group 0", 0.01)], policy)
    text = str(info.value)
    assert text.startswith("checkpoint: ") and words in text
    assert "expected float32 () (a constant learning rate) or float32 (steps,)" in text
    assert "lr_mismatch='ignore'" in text
    check_learning_rates(stored, [("group 0", 0.01)], "ignore")


def test_learning_rate_entries_mindspore_writes_are_compared() -> None:
    one = {"learning_rate": np.array([0.01], F32)}  # a per-step list of one step
    check_learning_rates(one, [("group 0", [0.01])], "raise")
    with pytest.raises(ValueError, match=r"group 0 has lr 0\.00999"):
        check_learning_rates(one, [("group 0", 0.01)], "raise")  # a list is not a constant
    swapped = {"learning_rate": np.array(0.01, F32).astype(">f4")}
    check_learning_rates(swapped, [("group 0", 0.01)], "raise")
    groups = {
        "learning_rate_group_0": np.array(0.1, F32),
        "learning_rate_group_1": np.zeros(3, F32),
    }
    check_learning_rates(groups, [("a", 0.1), ("b", [0.0, 0.0, 0.0])], "raise")


@pytest.mark.parametrize(
    ("lr", "error", "words"),
    [
        ([[0.1]], TypeError, "learning_rate[0]: expected a number or a per-step list of numbers"),
        (
            "0.1",
            TypeError,
            "learning_rate: expected a number or a per-step list of numbers, got str",
        ),
        (True, TypeError, "got bool"),
        (lambda count: 0.1, TypeError, "got function"),
        ([0.1, None], TypeError, "learning_rate[1]: expected a number"),
        (np.ones((2, 2)), ValueError, "got an array of shape (2, 2)"),
        ([], ValueError, "learning_rate: expected a number or a per-step list, got an empty list"),
        (
            float("nan"),
            ValueError,
            "learning_rate: expected a learning rate >= 0, finite in float32",
        ),
        (-0.1, ValueError, "got -0.1"),
        ([0.1, 1e39], ValueError, "learning_rate[1]: expected a learning rate >= 0"),
    ],
)
def test_learning_rate_entry_refuses_what_is_not_an_lr(lr: object, error: type, words: str) -> None:
    with pytest.raises(error) as info:
        learning_rate_entry([lr])
    assert words in str(info.value)


def test_learning_rate_entry_of_arrays_and_labels() -> None:
    assert (
        learning_rate_entry([np.array([0.1, 0.2])]).tobytes() == np.array([0.1, 0.2], F32).tobytes()
    )
    assert learning_rate_entry([np.float64(0.5)]).shape == ()
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['lr'\]: expected a learning rate"):
        learning_rate_entry([0.1, -1.0], ["param_groups[0]['lr']", "param_groups[1]['lr']"])
