"""The NumPy replay of nn.Adam(use_amsgrad=True) against MindSpore's recorded runs, bit for bit.

Every tensor MindSpore recorded after every step (parameters, moment1, moment2, vhat, both beta
powers, global_step) and the lr it used must equal the replay's exactly (compared as bytes, so
-0.0 and NaN payloads count). Data: tests/golden/replay/ (tests/golden/generate_replay.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import replay_reference as ref

MANIFEST = ref.manifest()
CONFIGS = MANIFEST["configs"]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_the_suite_is_complete() -> None:
    ids = {c["id"] for c in CONFIGS}
    assert len(CONFIGS) >= 7 and all(c["steps"] >= 30 for c in CONFIGS)
    assert {"defaults", "weight_decay", "loss_scale_wd", "groups", "lr_list"} <= ids
    assert {"layernorm_decay_filter", "dynamic_lr_cosine", "float64_wd_loss_scale"} <= ids
    assert MANIFEST["mindspore"] == "2.10.0"


@pytest.mark.parametrize("entry", CONFIGS, ids=[c["id"] for c in CONFIGS])
def test_replay_is_bit_exact(entry: dict) -> None:
    arrays = ref.load_arrays(entry)
    for t, opt in enumerate(ref.replay(entry, arrays), start=1):
        for name in opt.names:
            for kind, state in (
                ("param", opt.params),
                ("moment1", opt.moment1),
                ("moment2", opt.moment2),
                ("vhat", opt.vhat),
            ):
                recorded = arrays[f"{kind}/{name}"][t]
                assert same_bits(state[name], recorded), f"{entry['id']} step {t}: {kind}/{name}"
        assert same_bits(np.float32(opt.beta1_power), arrays["beta1_power"][t])
        assert same_bits(np.float32(opt.beta2_power), arrays["beta2_power"][t])
        assert int(arrays["global_step"][t]) == opt.global_step == t


@pytest.mark.parametrize("entry", CONFIGS, ids=[c["id"] for c in CONFIGS])
def test_lr_of_each_step(entry: dict) -> None:
    """The replay's float32 lr is the one MindSpore's get_lr() returned (schedules aside)."""
    arrays = ref.load_arrays(entry)
    opt = ref.build(entry)
    for name in opt.names:
        group = opt.groups[name]
        if group.lr == "recorded":
            continue
        recorded = arrays[f"lr/{group.lr_index}"]
        for t in range(entry["steps"]):
            assert same_bits(ref.lr_at(group, t, None), recorded[t]), (name, t)


def test_decay_filter_and_dtypes() -> None:
    """The default filter spares LayerNorm's gamma and beta; float64 parameters stay float64."""
    entry = next(c for c in CONFIGS if c["id"] == "layernorm_decay_filter")
    opt = ref.build(entry)
    assert not opt.groups["norm.gamma"].decays and not opt.groups["norm.beta"].decays
    assert opt.groups["fc1.weight"].decays and opt.groups["fc2.bias"].decays
    entry = next(c for c in CONFIGS if c["id"] == "float64_wd_loss_scale")
    arrays = ref.load_arrays(entry)
    assert all(arrays[f"param/{n}"].dtype == np.float64 for n in entry["names"])
    assert arrays["beta1_power"].dtype == np.float32


def test_float16_is_refused_by_mindspore() -> None:
    refused = {r["case"]: r["result"] for r in MANIFEST["refused"]}
    assert refused["float16 parameters"]["type"] == "TypeError"
    assert "Float16" in refused["float16 parameters"]["message"]
    assert "Centralization" in refused["grad_centralization on the CPU"]["message"]
