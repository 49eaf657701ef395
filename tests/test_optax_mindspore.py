"""amsgrad.optax.load_mindspore / save_mindspore against MindSpore's checkpoints, bit for bit.

The runs of tests/golden/replay/resume/ without weight decay or loss scale (those with them are
resumed in test_optax_replay.py, with amsgrad_v2's weight_decay and loss_scale): the parameters
and AmsgradV2State loaded from each file continue, with the recorded gradients, equal to
MindSpore's run at every step (the per-step lr list only if ``count`` is MindSpore's
global_step); and amsgrad_v2 run from the start saves the tensors of the file MindSpore
continued from (generate_resume.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import replay_reference as ref  # noqa: E402
from amsgrad.mindspore import load_checkpoint  # noqa: E402
from amsgrad.optax import AmsgradV2State, amsgrad_v2, load_mindspore, save_mindspore  # noqa: E402

CASES = [c for c in ref.resume_cases() if c["config"] in ("defaults", "dynamic_lr_cosine")]
FILES = [(case, file) for case in CASES for file in case["files"]]


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"fc1.weight": w}`` as ``{"fc1": {"weight": w}}``."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *path, leaf = name.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def learning_rate(entry: dict, arrays: dict) -> Any:
    """The run's lr: a float, or its recorded per-step float32 values as a schedule."""
    kind = ref.lr_kind(entry["kwargs"].get("learning_rate", 1e-3))
    if isinstance(kind, list):
        values = jnp.asarray(arrays["lr/0"])
        return lambda count: values[count]
    return kind


def at(arrays: dict, names: list[str], kind: str, t: int) -> dict[str, Any]:
    return nested({n: jnp.asarray(arrays[f"{kind}/{n}"][t]) for n in names})


def check(arrays: dict, names: list[str], params: Any, state: AmsgradV2State, t: int) -> None:
    for kind, tree in (("param", params), ("moment1", state.m), ("moment2", state.v)):
        for name, leaf in zip(names, leaves_by_name(tree, names), strict=True):
            assert np.asarray(leaf).tobytes() == arrays[f"{kind}/{name}"][t].tobytes(), (t, kind)
    for name, leaf in zip(names, leaves_by_name(state.vhat, names), strict=True):
        assert np.asarray(leaf).tobytes() == arrays[f"vhat/{name}"][t].tobytes(), (t, name)
    assert np.asarray(state.beta1_power).tobytes() == arrays["beta1_power"][t].tobytes()
    assert np.asarray(state.beta2_power).tobytes() == arrays["beta2_power"][t].tobytes()
    assert int(state.count) == int(arrays["global_step"][t]) == t


def leaves_by_name(tree: dict[str, Any], names: list[str]) -> list[Any]:
    out = []
    for name in names:
        node: Any = tree
        for part in name.split("."):
            node = node[part]
        out.append(node)
    return out


def run(
    tx: Any, arrays: dict, names: list[str], params: Any, state: Any, start: int, stop: int
) -> tuple[Any, Any]:
    for t in range(start + 1, stop + 1):
        grads = at(arrays, names, "grad", t - 1)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        check(arrays, names, params, state, t)
    return params, state


@pytest.mark.parametrize(
    ("case", "file"), FILES, ids=[f"{c['config']}-{f['file']}" for c, f in FILES]
)
def test_optax_continues_mindspores_run_from_a_checkpoint(case: dict, file: dict) -> None:
    entry, k = case["entry"], case["after_steps"]
    arrays = ref.load_arrays(entry)
    names = entry["names"]
    template = nested({n: jnp.full(entry["shapes"][n], jnp.nan, jnp.float32) for n in names})
    params, state = load_mindspore(ref.RESUME_DIR / file["file"], template)
    assert isinstance(state, AmsgradV2State) and state.count.dtype == jnp.int32
    check(arrays, names, params, state, k)
    tx = amsgrad_v2(learning_rate(entry, arrays))
    run(tx, arrays, names, params, state, k, case["steps"])


@pytest.mark.parametrize("case", CASES, ids=[c["config"] for c in CASES])
def test_optax_saves_the_tensors_mindspore_continued_from(case: dict, tmp_path: Path) -> None:
    entry, k = case["entry"], case["after_steps"]
    arrays = ref.load_arrays(entry)
    names = entry["names"]
    tx = amsgrad_v2(learning_rate(entry, arrays))
    params = at(arrays, names, "param", 0)
    params, state = run(tx, arrays, names, params, tx.init(params), 0, k)
    lr = ref.lr_kind(entry["kwargs"].get("learning_rate", 1e-3))
    for fmt in ("ckpt", "safetensors"):
        save_mindspore(tmp_path / f"x.{fmt}", params, state, learning_rate=lr)
        saved = load_checkpoint(tmp_path / f"x.{fmt}")
        theirs = load_checkpoint(ref.RESUME_DIR / f"ours.{entry['id']}.step{k}.ckpt")
        assert set(saved) == set(theirs)
        for name, value in theirs.items():
            assert saved[name].dtype == value.dtype, name
            assert saved[name].tobytes() == value.tobytes(), name
    # and back: the same parameters and state
    loaded_params, loaded = load_mindspore(tmp_path / "x.ckpt", params)
    check(arrays, names, loaded_params, loaded, k)


def test_name_map_for_a_list_of_leaves(tmp_path: Path) -> None:
    case = next(c for c in CASES if c["config"] == "defaults")
    entry, k = case["entry"], case["after_steps"]
    arrays = ref.load_arrays(entry)
    names = entry["names"]
    template = [jnp.zeros(entry["shapes"][n], jnp.float32) for n in names]  # named "0", "1", ...
    path = ref.RESUME_DIR / f"defaults.step{k}.ckpt"
    with pytest.raises(ValueError, match="missing '0'"):
        load_mindspore(path, template)
    params, state = load_mindspore(path, template, lambda n: names[int(n)])
    for index, name in enumerate(names):
        assert np.asarray(params[index]).tobytes() == arrays[f"param/{name}"][k].tobytes()
        assert np.asarray(state.vhat[index]).tobytes() == arrays[f"vhat/{name}"][k].tobytes()
    as_dict = dict(zip(map(str, range(len(names))), names, strict=True))
    save_mindspore(tmp_path / "x.ckpt", params, state, as_dict)
    again = load_checkpoint(tmp_path / "x.ckpt")
    assert "learning_rate" not in again  # not given: MindSpore keeps its own
    for name, value in load_checkpoint(path).items():
        if name != "learning_rate":
            assert again[name].tobytes() == value.tobytes(), name


def test_wrong_entries_and_states_are_named(tmp_path: Path) -> None:
    case = next(c for c in CASES if c["config"] == "defaults")
    entry, k = case["entry"], case["after_steps"]
    tensors = load_checkpoint(ref.RESUME_DIR / f"defaults.step{k}.ckpt")
    template = nested({n: jnp.zeros(entry["shapes"][n], jnp.float32) for n in entry["names"]})
    bad = dict(tensors)
    del bad["moment1.fc2.weight"]
    bad["vhat.fc1.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as info:
        load_mindspore(bad, template)
    assert "missing 'moment1.fc2.weight'" in str(info.value)
    assert "'vhat.fc1.bias' is float32 (3,), expected float32 (16,)" in str(info.value)
    with pytest.raises(TypeError, match="params: the leaf 'x' has dtype int32"):
        load_mindspore(tensors, {"x": jnp.zeros(3, jnp.int32)})

    params, state = load_mindspore(tensors, template)
    with pytest.raises(TypeError, match="state: expected the AmsgradV2State"):
        save_mindspore(tmp_path / "x.ckpt", params, (state,))  # type: ignore[arg-type]
    short = state._replace(v={"fc1": state.v["fc1"]})
    with pytest.raises(ValueError, match=r"state\.v: has the structure"):
        save_mindspore(tmp_path / "x.ckpt", params, short)
    wide = state._replace(m={**state.m, "fc2": {**state.m["fc2"], "bias": jnp.zeros(5)}})
    with pytest.raises(ValueError, match=r"state\.m: the leaf 'fc2\.bias' is float32 \(5,\)"):
        save_mindspore(tmp_path / "x.ckpt", params, wide)
    assert not (tmp_path / "x.ckpt").exists()


def small_state() -> tuple[dict[str, Any], AmsgradV2State]:
    params = {"w": jnp.ones(3, jnp.float32)}
    return params, amsgrad_v2(0.1).init(params)


@pytest.mark.parametrize(
    "count", [2**31, np.uint32(2**32 - 1), np.int64(2**31), np.uint64(2**63), 2**70, -1]
)
def test_save_refuses_a_count_beyond_mindspores_int32_global_step(
    count: Any, tmp_path: Path
) -> None:
    params, state = small_state()
    with pytest.raises(
        ValueError,
        match=rf"^state: count is {int(count)}, expected an int in \[0, 2\*\*31 - 1\] "
        r"\(MindSpore's global_step is int32\)",
    ):
        save_mindspore(tmp_path / "x.ckpt", params, state._replace(count=count))
    assert list(tmp_path.iterdir()) == []
    save_mindspore(tmp_path / "x.ckpt", params, state._replace(count=np.uint32(2**31 - 1)))
    assert load_checkpoint(tmp_path / "x.ckpt")["global_step"].tolist() == [2**31 - 1]


@pytest.mark.parametrize("name", ["beta1_power", "beta2_power"])
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (np.float32(np.nan), "nan"),
        (np.float32(np.inf), "inf"),
        (jnp.float32(2.0), "2.0"),
        (np.float32(-0.5), "-0.5"),
        (np.float64(1e300), r"1e\+300"),
    ],
)
def test_save_refuses_beta_powers_outside_0_1(
    name: str, value: Any, text: str, tmp_path: Path
) -> None:
    params, state = small_state()
    with pytest.raises(
        ValueError,
        match=rf"^state: {name} is {text}, expected a finite number in \[0, 1\] \(MindSpore's "
        rf"{name} is float32\)",
    ):
        save_mindspore(tmp_path / "x.ckpt", params, state._replace(**{name: value}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("lr", "error", "words"),
    [
        (float("nan"), ValueError, "learning_rate: expected a learning rate >= 0"),
        (-1.0, ValueError, "got -1.0"),
        ([], ValueError, "got an empty list"),
        (jnp.ones((2, 2)), ValueError, "got an array of shape (2, 2)"),
        ([[0.1, 0.2]], TypeError, "learning_rate[0]: expected a number"),
        (lambda count: 0.1, TypeError, "learning_rate: expected a number or a per-step list"),
    ],
)
def test_save_refuses_a_learning_rate_mindspore_cannot_hold(
    lr: Any, error: type, words: str, tmp_path: Path
) -> None:
    params, state = small_state()
    with pytest.raises(error) as info:
        save_mindspore(tmp_path / "x.ckpt", params, state, learning_rate=lr)
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []
    save_mindspore(tmp_path / "x.ckpt", params, state, learning_rate=jnp.array([0.1, 0.2]))
    saved = load_checkpoint(tmp_path / "x.ckpt")["learning_rate"]
    assert saved.tobytes() == np.array([0.1, 0.2], np.float32).tobytes()


@pytest.mark.parametrize(
    ("params", "first", "second", "name"),
    [
        ({"a.b": 1.0, "a": {"b": 2.0}}, "['a']['b']", "['a.b']", "a.b"),
        ({"x": [1.0, 2.0], "x.1": 3.0}, "['x'][1]", "['x.1']", "x.1"),
        ({"a": {1: 1.0}, "a.1": 2.0}, "['a'][1]", "['a.1']", "a.1"),
    ],
)
def test_leaves_of_the_same_name_are_refused(
    params: Any, first: str, second: str, name: str, tmp_path: Path
) -> None:
    from amsgrad.adapters.optax_mindspore import tree_names

    params = jax.tree_util.tree_map(lambda x: jnp.full(2, x, jnp.float32), params)
    words = [
        f"params: the leaves at {first} and {second} are both named {name!r}",
        "rename a key",
    ]
    for call in (
        lambda: tree_names(params),
        lambda: save_mindspore(tmp_path / "x.ckpt", params, amsgrad_v2(0.1).init(params)),
        lambda: save_mindspore(
            tmp_path / "x.ckpt", params, amsgrad_v2(0.1).init(params), {name: "other"}
        ),
        lambda: load_mindspore({}, params),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert all(word in str(info.value) for word in words), str(info.value)
    assert list(tmp_path.iterdir()) == []
