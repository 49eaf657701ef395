"""AMSGradV2.load_mindspore / save_mindspore against MindSpore's checkpoints, bit for bit.

tests/golden/replay/resume/ holds checkpoints MindSpore wrote after K steps of a recorded run,
and the same states written by this project, from which MindSpore itself continued equal to the
recorded run (generate_resume.py, resume.json). Here AMSGradV2 loads each file into parameters
filled with NaN, continues with the recorded gradients and must equal MindSpore's run at every
step (with a per-step lr list, only if global_step set its position); and AMSGradV2 run from the
start to step K must save exactly the bytes MindSpore continued from.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch

import replay_reference as ref
from amsgrad.mindspore import load_checkpoint, save_checkpoint
from amsgrad.torch import AMSGradV2
from test_torch_replay import build, same_bits

CASES = ref.resume_cases()
FILES = [(case, file) for case in CASES for file in case["files"]]
#: The torch names of the LayerNorm's MindSpore parameters (gamma, beta are weight, bias).
TORCH_NAME = {"norm.gamma": "norm.weight", "norm.beta": "norm.bias"}
NAME_MAP = {torch_name: ms_name for ms_name, torch_name in TORCH_NAME.items()}


def model_of(params: dict[str, torch.nn.Parameter]) -> torch.nn.Module:
    """A module whose named_parameters() are ``params`` under their torch names, in order."""
    model = torch.nn.Module()
    for ms_name, param in params.items():
        *path, leaf = TORCH_NAME.get(ms_name, ms_name).split(".")
        owner = model
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(leaf, param)
    return model


def setup(case: dict, implementation: str = "kernel") -> tuple[Any, ...]:
    entry = case["entry"]
    arrays = ref.load_arrays(entry)
    opt, params = build(entry, arrays, implementation)
    return entry, arrays, opt, params, model_of(params)


def check(entry: dict, arrays: dict, opt: AMSGradV2, params: dict, t: int) -> None:
    """Every parameter and its state equal MindSpore's after step t."""
    for name, param in params.items():
        state = opt.state[param]
        for kind, tensor in (
            ("param", param.detach()),
            ("moment1", state["m"]),
            ("moment2", state["v"]),
            ("vhat", state["vhat"]),
        ):
            assert same_bits(tensor.numpy(), arrays[f"{kind}/{name}"][t]), (entry["id"], t, kind)
        assert same_bits(np.float32(state["beta1_power"]), arrays["beta1_power"][t])
        assert same_bits(np.float32(state["beta2_power"]), arrays["beta2_power"][t])
        assert state["step"] == int(arrays["global_step"][t]) == t


def step(arrays: dict, opt: AMSGradV2, params: dict, t: int) -> None:
    for name, param in params.items():
        param.grad = torch.from_numpy(arrays[f"grad/{name}"][t - 1].copy())
    opt.step()


@pytest.mark.parametrize("implementation", ["kernel", "torch"])
@pytest.mark.parametrize(
    ("case", "file"), FILES, ids=[f"{c['config']}-{f['file']}" for c, f in FILES]
)
def test_torch_continues_mindspores_run_from_a_checkpoint(
    case: dict, file: dict, implementation: str
) -> None:
    entry, arrays, opt, params, model = setup(case, implementation)
    with torch.no_grad():
        for param in params.values():
            param.fill_(float("nan"))
    k = case["after_steps"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checkpoint's learning rate is the optimizer's
        opt.load_mindspore(ref.RESUME_DIR / file["file"], model, name_map=NAME_MAP)
    check(entry, arrays, opt, params, k)
    for t in range(k + 1, case["steps"] + 1):
        step(arrays, opt, params, t)
        check(entry, arrays, opt, params, t)


@pytest.mark.parametrize(
    ("case", "fmt"),
    [(c, f["format"]) for c in CASES for f in c["files"] if f["writer"] == "amsgrad"],
    ids=lambda value: value["config"] if isinstance(value, dict) else value,
)
def test_torch_saves_the_file_mindspore_continued_from(
    case: dict, fmt: str, tmp_path: Path
) -> None:
    entry, arrays, opt, params, model = setup(case)
    k = case["after_steps"]
    for t in range(1, k + 1):
        step(arrays, opt, params, t)
    path = tmp_path / f"saved.{fmt}"
    opt.save_mindspore(path, model, name_map=NAME_MAP)
    ours = ref.RESUME_DIR / f"ours.{entry['id']}.step{k}.{fmt}"
    theirs = ref.RESUME_DIR / f"{entry['id']}.step{k}.{fmt}"
    assert path.read_bytes() == ours.read_bytes()
    assert path.read_bytes() == theirs.read_bytes()  # what MindSpore itself writes


@pytest.mark.parametrize("case", CASES, ids=[c["config"] for c in CASES])
def test_round_trip(case: dict, tmp_path: Path) -> None:
    entry, arrays, opt, params, model = setup(case)
    k = case["after_steps"]
    opt.load_mindspore(ref.RESUME_DIR / f"{entry['id']}.step{k}.ckpt", model, NAME_MAP)
    step(arrays, opt, params, k + 1)
    opt.save_mindspore(tmp_path / "a.ckpt", model, NAME_MAP)
    _, _, other, other_params, other_model = setup(case)
    other.load_mindspore(tmp_path / "a.ckpt", other_model, lambda n: NAME_MAP.get(n, n))
    check(entry, arrays, other, other_params, k + 1)
    other.save_mindspore(tmp_path / "b.safetensors", other_model, NAME_MAP)
    back = load_checkpoint(tmp_path / "b.safetensors")
    first = load_checkpoint(tmp_path / "a.ckpt")
    assert set(back) == set(first)
    for name, value in first.items():
        assert same_bits(back[name], value), name


def snapshot(opt: AMSGradV2, params: dict) -> list[Any]:
    out: list[Any] = []
    for param in params.values():
        out.append(param.detach().clone())
        state = opt.state.get(param, {})
        out += [state[k].clone() if isinstance(state[k], torch.Tensor) else state[k] for k in state]
    return out


def unchanged(before: list[Any], after: list[Any]) -> bool:
    return len(before) == len(after) and all(
        torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
        for a, b in zip(before, after, strict=True)
    )


DEFAULTS = next(c for c in CASES if c["config"] == "defaults")
DEFAULTS_FILE = ref.RESUME_DIR / f"defaults.step{DEFAULTS['after_steps']}.ckpt"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("vhat.fc2.bias", None, ["missing 'vhat.fc2.bias'", "vhat state of 'fc2.bias'"]),
        ("fc1.weight", None, ["missing 'fc1.weight'", "the parameter 'fc1.weight'"]),
        ("beta2_power", None, ["missing 'beta2_power'"]),
        ("moment1.fc1.bias", np.zeros(15, np.float32), ["'moment1.fc1.bias' is float32 (15,)"]),
        ("fc2.weight", np.zeros((4, 16)), ["'fc2.weight' is float64 (4, 16), expected float32"]),
        ("global_step", np.array([2.0], np.float32), ["'global_step' is float32"]),
    ],
)
def test_a_wrong_entry_is_named_and_nothing_changes(
    name: str, value: np.ndarray | None, words: list[str]
) -> None:
    _, arrays, opt, params, model = setup(DEFAULTS)
    step(arrays, opt, params, 1)  # a state to keep
    tensors = load_checkpoint(DEFAULTS_FILE)
    if value is None:
        del tensors[name]
    else:
        tensors[name] = value
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match="checkpoint: not the MindSpore optimizer state") as info:
        opt.load_mindspore(tensors, model)
    for word in words:
        assert word in str(info.value)
    assert unchanged(before, snapshot(opt, params))


def test_names_that_differ_need_the_name_map(tmp_path: Path) -> None:
    case = next(c for c in CASES if c["config"] == "layernorm_decay_filter")
    entry, _, opt, params, model = setup(case)
    path = ref.RESUME_DIR / f"{entry['id']}.step{case['after_steps']}.ckpt"
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"missing 'norm\.weight'") as info:
        opt.load_mindspore(path, model)
    assert "'vhat.norm.bias'" in str(info.value)
    assert unchanged(before, snapshot(opt, params))
    opt.load_mindspore(
        path,
        model,
        lambda n: n.replace("norm.weight", "norm.gamma").replace("norm.bias", "norm.beta"),
    )
    opt.load_mindspore(path, model, name_map=NAME_MAP)
    with pytest.raises(TypeError, match="name_map: expected a dict or a callable"):
        opt.load_mindspore(path, model, name_map=["norm.gamma"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"name_map: 'fc1\.weight' and 'fc1\.bias' both map"):
        opt.save_mindspore(tmp_path / "x.ckpt", model, {"fc1.weight": "w", "fc1.bias": "w"})


def test_learning_rate_mismatch_warns_raises_or_is_ignored() -> None:
    _, _, opt, params, model = setup(DEFAULTS)
    for group in opt.param_groups:
        group["lr"] = 0.5
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"learning_rate = 0\.0010000000474974513.*has lr 0\.5"):
        opt.load_mindspore(DEFAULTS_FILE, model, lr_mismatch="raise")
    assert unchanged(before, snapshot(opt, params))
    with pytest.raises(ValueError, match="lr_mismatch: expected one of"):
        opt.load_mindspore(DEFAULTS_FILE, model, lr_mismatch="no")
    with pytest.warns(UserWarning, match="MindSpore, loading this checkpoint, would use"):
        opt.load_mindspore(DEFAULTS_FILE, model)
    assert opt.param_groups[0]["lr"] == 0.5  # kept
    assert opt.state[params["fc1.weight"]]["step"] == DEFAULTS["after_steps"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.load_mindspore(DEFAULTS_FILE, model, lr_mismatch="ignore")


def two_parameter_setup() -> tuple[torch.nn.Module, torch.nn.Parameter, torch.nn.Parameter]:
    model = torch.nn.Module()
    model.a = torch.nn.Parameter(torch.ones(3))
    model.b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    return model, model.a, model.b


def test_save_refuses_parameters_with_different_counters(tmp_path: Path) -> None:
    model, a, b = two_parameter_setup()
    opt = AMSGradV2([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(2, dtype=torch.float64)
    opt.step()
    b.grad = None
    a.grad = torch.ones(3)
    opt.step()  # b skipped: its step and beta powers stay behind
    with pytest.raises(ValueError, match=r"one global_step .*'a' has step 2.*'b' has step 1"):
        opt.save_mindspore(tmp_path / "x.ckpt", model)
    assert not (tmp_path / "x.ckpt").exists()


def test_save_with_a_frozen_parameter_says_to_leave_it_out(tmp_path: Path) -> None:
    model, a, b = two_parameter_setup()
    b.requires_grad_(False)
    opt = AMSGradV2([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    with pytest.raises(ValueError, match=r"'b' has step 0.*if p\.requires_grad\]"):
        opt.save_mindspore(tmp_path / "x.ckpt", model)


def test_save_never_stepped_and_parameters_outside_the_optimizer(tmp_path: Path) -> None:
    model, a, b = two_parameter_setup()
    model.frozen = torch.nn.Parameter(torch.zeros(5), requires_grad=False)
    opt = AMSGradV2([a, b], lr=[0.1, 0.2])
    opt.save_mindspore(tmp_path / "x.ckpt", model)
    saved = load_checkpoint(tmp_path / "x.ckpt")
    assert "frozen" not in saved and "moment1.frozen" not in saved
    assert int(saved["global_step"][0]) == 0 and saved["beta1_power"] == np.float32(1.0)
    assert same_bits(saved["learning_rate"], np.array([0.1, 0.2], np.float32))
    assert same_bits(saved["vhat.b"], np.zeros(2))

    stranger = torch.nn.Parameter(torch.ones(3))
    opt.add_param_group({"params": [stranger], "lr": [0.3, 0.4]})
    with pytest.raises(ValueError, match=r"model: the optimizer's parameter param_groups\[1\]"):
        opt.save_mindspore(tmp_path / "y.ckpt", model)
    with pytest.raises(ValueError, match=r"model: the optimizer's parameter param_groups\[1\]"):
        opt.load_mindspore(tmp_path / "x.ckpt", model)
    with pytest.raises(TypeError, match=r"model: expected a torch\.nn\.Module"):
        opt.load_mindspore(tmp_path / "x.ckpt", object())  # type: ignore[arg-type]


def test_save_without_a_common_learning_rate_warns(tmp_path: Path) -> None:
    model, a, b = two_parameter_setup()
    opt = AMSGradV2([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.2}])
    with pytest.warns(UserWarning, match="different learning rates"):
        opt.save_mindspore(tmp_path / "x.ckpt", model)
    assert "learning_rate" not in load_checkpoint(tmp_path / "x.ckpt")


def test_load_writes_the_parameters_dtype_and_device(tmp_path: Path) -> None:
    model, a, b = two_parameter_setup()
    opt = AMSGradV2([a, b], lr=0.1)
    tensors = {
        "global_step": np.array([3], np.int32),
        "learning_rate": np.array(0.1, np.float32),
        "a": np.arange(3, dtype=np.float32),
        "b": np.arange(2, dtype=np.float64),
        "beta1_power": np.array(0.729, np.float32),
        "beta2_power": np.array(0.997, np.float32),
    }
    for kind, value in (("moment1", 0.5), ("moment2", 0.25), ("vhat", 0.3)):
        tensors[f"{kind}.a"] = np.full(3, value, np.float32)
        tensors[f"{kind}.b"] = np.full(2, value, np.float64)
    save_checkpoint(tensors, tmp_path / "t.safetensors")
    opt.load_mindspore(str(tmp_path / "t.safetensors"), model)
    state = opt.state[b]
    assert state["m"].dtype == torch.float64 and torch.equal(b.detach(), torch.arange(2.0).double())
    assert state["step"] == 3 and type(state["beta1_power"]) is float
    assert state["beta1_power"] == float(np.float32(0.729))
    a.grad, b.grad = torch.ones(3), torch.ones(2, dtype=torch.float64)
    opt.step()
    assert opt.state[a]["step"] == 4
    assert opt.state[a]["beta1_power"] == float(np.float32(0.729) * np.float32(0.9))


def stepped_two_parameters() -> tuple[torch.nn.Module, AMSGradV2, list[torch.nn.Parameter]]:
    model, a, b = two_parameter_setup()
    opt = AMSGradV2([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(2, dtype=torch.float64)
    opt.step()
    return model, opt, [a, b]


@pytest.mark.parametrize("step", [2**31, 2**40, torch.tensor(2.0**31)])
def test_save_refuses_a_step_beyond_mindspores_int32_global_step(step: Any, tmp_path: Path) -> None:
    model, opt, params = stepped_two_parameters()
    for param in params:
        opt.state[param]["step"] = step
    with pytest.raises(
        ValueError,
        match=rf"^'a': its state 'step' is {int(step)}, expected an int in \[0, 2\*\*31 - 1\] "
        r"\(MindSpore's global_step is int32\)",
    ):
        opt.save_mindspore(tmp_path / "x.ckpt", model)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["beta1_power", "beta2_power"])
@pytest.mark.parametrize(
    ("value", "text"),
    [(float("nan"), "nan"), (float("inf"), "inf"), (1.5, "1.5"), (torch.tensor(-0.5), "-0.5")],
)
def test_save_refuses_beta_powers_outside_0_1(
    name: str, value: Any, text: str, tmp_path: Path
) -> None:
    model, opt, params = stepped_two_parameters()
    for param in params:
        opt.state[param][name] = value
    with pytest.raises(
        ValueError,
        match=rf"^'a': its state '{name}' is {text}, expected a finite number in \[0, 1\] "
        rf"\(MindSpore's {name} is float32\)",
    ):
        opt.save_mindspore(tmp_path / "x.ckpt", model)
    assert list(tmp_path.iterdir()) == []


ODD_LEARNING_RATES = [
    (np.array([0.001, 0.002], np.float64), "'learning_rate' is float64 (2,)"),
    (np.array(np.nan, np.float32), "'learning_rate' is nan"),
    (np.array(-0.5, np.float32), "'learning_rate' is -0.5"),
    (np.array(1, np.int32), "'learning_rate' is int32 ()"),
    (np.full((1, 1), 0.001, np.float32), "'learning_rate' is float32 (1, 1)"),
    (np.array([0.001, np.nan], np.float32), "a list of 2 holding nan at [1]"),
]


@pytest.mark.parametrize(("value", "words"), ODD_LEARNING_RATES)
@pytest.mark.parametrize("policy", ["warn", "raise"])
def test_an_odd_learning_rate_entry_is_refused_and_nothing_changes(
    value: np.ndarray, words: str, policy: str
) -> None:
    _, arrays, opt, params, model = setup(DEFAULTS)
    step(arrays, opt, params, 1)
    tensors = load_checkpoint(DEFAULTS_FILE)
    tensors["learning_rate"] = value
    before = snapshot(opt, params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as info:
            opt.load_mindspore(tensors, model, lr_mismatch=policy)
    text = str(info.value)
    assert text.startswith("checkpoint: ") and words in text, text
    assert "expected float32 () (a constant learning rate) or float32 (steps,)" in text
    assert unchanged(before, snapshot(opt, params))
    opt.load_mindspore(tensors, model, lr_mismatch="ignore")  # not compared: loaded
    assert opt.state[params["fc1.weight"]]["step"] == DEFAULTS["after_steps"]
