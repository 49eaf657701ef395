"""amsgrad_v2 against MindSpore's recorded nn.Adam(use_amsgrad=True) runs, bit for bit.

Every configuration of tests/golden/replay/ is expressed with amsgrad_v2's arguments (a float
learning rate or a per-step list, betas, eps, weight_decay, loss_scale, mask=mindspore_decay_mask
for MindSpore's default decay filter, and optax.multi_transform for parameter groups), fed the
recorded gradients through a jitted update, and every parameter, m, v, vhat, beta power and count
is compared with MindSpore's after every step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import replay_reference as ref  # noqa: E402
from amsgrad.optax import AmsgradV2State, amsgrad_v2, mindspore_decay_mask  # noqa: E402

CONFIGS = ref.manifest()["configs"]
F32 = np.float32


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def optax_lr(spec: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A float, or a per-step list (a LearningRateSchedule: its recorded float32 values)."""
    kind = ref.lr_kind(spec)
    if kind == "recorded":
        return [float(x) for x in arrays["lr/0"]]
    return kind


def build(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> optax.GradientTransformation:
    kwargs = entry["kwargs"]
    common = {
        "b1": kwargs.get("beta1", 0.9),
        "b2": kwargs.get("beta2", 0.999),
        "eps": kwargs.get("eps", 1e-8),
        "loss_scale": kwargs.get("loss_scale", 1.0),
    }
    lr = optax_lr(kwargs.get("learning_rate", 1e-3), arrays)
    wd = kwargs.get("weight_decay", 0.0)
    if not entry["groups"]:
        # Without groups MindSpore spares the parameters named beta/gamma.
        return amsgrad_v2(lr, weight_decay=wd, mask=mindspore_decay_mask, **common)
    specs = [g for g in entry["groups"] if "order_params" not in g]
    group_lr = any("lr" in g for g in specs)
    dynamic = isinstance(lr, list) or any(isinstance(g.get("lr"), list) for g in specs)
    transforms, labels = {}, {}
    for index, spec in enumerate(specs):
        group_value = lr
        if "lr" in spec:
            group_value = optax_lr(spec["lr"], arrays)
            if group_lr and dynamic and not isinstance(group_value, list):
                # MindSpore's _ConvertToCell quirk (docs/mindspore_training.md), given as the lr
                # itself: amsgrad_v2 does not apply it.
                f = F32(group_value)
                group_value = float(F32(F32(f + F32(1.0)) - F32(1.0)))
        # In groups MindSpore applies no name filter: the whole group decays (mask=None).
        group_wd = spec.get("weight_decay", wd)
        transforms[str(index)] = amsgrad_v2(group_value, weight_decay=group_wd, **common)
        labels.update({name: str(index) for name in spec["names"]})
    return optax.multi_transform(transforms, labels)


def amsgrad_states(state: Any) -> list[AmsgradV2State]:
    """Every AmsgradV2State in a (possibly multi_transform) state."""
    found = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, AmsgradV2State))
    return [s for s in found if isinstance(s, AmsgradV2State)]


def moments_of(state: Any, name: str) -> tuple[Any, Any, Any]:
    for inner in amsgrad_states(state):
        if isinstance(inner.m.get(name), jax.Array):
            return inner.m[name], inner.v[name], inner.vhat[name]
    raise AssertionError(f"no state for {name}")


def x64_if(flag: bool) -> Any:
    return jax.enable_x64(True) if flag else contextlib.nullcontext()


@pytest.mark.parametrize("entry", CONFIGS, ids=[c["id"] for c in CONFIGS])
def test_optax_replay_is_bit_exact(entry: dict[str, Any]) -> None:
    arrays = ref.load_arrays(entry)
    names = entry["names"]
    wide = arrays[f"param/{names[0]}"].dtype == np.float64
    with x64_if(wide):
        tx = build(entry, arrays)
        params = {name: jnp.asarray(arrays[f"param/{name}"][0]) for name in names}
        state = tx.init(params)

        @jax.jit
        def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        for t in range(1, entry["steps"] + 1):
            grads = {name: jnp.asarray(arrays[f"grad/{name}"][t - 1]) for name in names}
            params, state = step(params, state, grads)
            for name in names:
                m, v, vhat = moments_of(state, name)
                for kind, got in (
                    ("param", params[name]),
                    ("moment1", m),
                    ("moment2", v),
                    ("vhat", vhat),
                ):
                    recorded = arrays[f"{kind}/{name}"][t]
                    assert same_bits(got, recorded), f"{entry['id']} step {t}: {kind}/{name}"
            inner_states = amsgrad_states(state)
            assert inner_states
            for inner in inner_states:  # one pair per group, each equal to MindSpore's one pair
                assert same_bits(inner.beta1_power, arrays["beta1_power"][t])
                assert same_bits(inner.beta2_power, arrays["beta2_power"][t])
                assert int(inner.count) == int(arrays["global_step"][t]) == t


def test_replay_covers_every_feature() -> None:
    """The configurations above exercise what this adapter adds (if the recording changes, the
    replay must still reach each of these paths)."""
    kwargs = [c["kwargs"] for c in CONFIGS]
    assert any(k.get("loss_scale", 1.0) != 1.0 and k.get("weight_decay", 0) for k in kwargs)
    assert any(isinstance(k.get("learning_rate"), list) for k in kwargs)
    assert any(c["groups"] for c in CONFIGS)
    assert any(any("gamma" in n for n in c["names"]) and not c["groups"] for c in CONFIGS)


def test_decay_mask_helper_matches_mindspore() -> None:
    entry = next(c for c in CONFIGS if c["id"] == "layernorm_decay_filter")
    opt = ref.build(entry)
    flat = mindspore_decay_mask({name: jnp.zeros(2) for name in entry["names"]})
    nested: dict[str, dict[str, Any]] = {}
    for name in entry["names"]:
        module, leaf = name.split(".")
        nested.setdefault(module, {})[leaf] = jnp.zeros(2)
    by_path = mindspore_decay_mask(nested)
    for name in entry["names"]:
        module, leaf = name.split(".")
        assert flat[name] == by_path[module][leaf] == opt.groups[name].decays, name
    assert not all(flat.values())  # gamma and beta are spared


def test_lr_list_past_its_end_names_the_step() -> None:
    tx = amsgrad_v2([0.1, 0.01])
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    for _ in range(2):
        _, state = tx.update({"w": jnp.ones(3)}, state)
    with pytest.raises(IndexError, match=r"step 3 \(count 2\) is past its end"):
        tx.update({"w": jnp.ones(3)}, state)
    # Under jax.jit the index is traced: the step's learning rate is NaN, never a clamped value.
    updates, _ = jax.jit(tx.update)({"w": jnp.ones(3)}, state)
    assert bool(jnp.all(jnp.isnan(updates["w"])))


RESUMES = [(case, file) for case in ref.resume_cases() for file in case["files"]]


@pytest.mark.parametrize(
    ("case", "file"), RESUMES, ids=[f"{c['config']}-{f['file']}" for c, f in RESUMES]
)
def test_optax_resumes_every_checkpointed_run(case: dict[str, Any], file: dict[str, Any]) -> None:
    """MindSpore's checkpoint after K steps, loaded with load_mindspore, continued by the
    configuration's amsgrad_v2 (weight decay, loss scale and decay filter included) with the
    recorded gradients: MindSpore's run at every later step."""
    from amsgrad.optax import load_mindspore

    entry, k = case["entry"], case["after_steps"]
    arrays = ref.load_arrays(entry)
    names = entry["names"]
    wide = arrays[f"param/{names[0]}"].dtype == np.float64
    with x64_if(wide):
        dtype = jnp.float64 if wide else jnp.float32
        template = {name: jnp.zeros(entry["shapes"][name], dtype) for name in names}
        params, state = load_mindspore(ref.RESUME_DIR / file["file"], template)
        tx = build(entry, arrays)
        step = jax.jit(lambda p, s, g: _apply(tx, p, s, g))
        for t in range(k + 1, entry["steps"] + 1):
            grads = {name: jnp.asarray(arrays[f"grad/{name}"][t - 1]) for name in names}
            params, state = step(params, state, grads)
            for name in names:
                for kind, got in (
                    ("param", params[name]),
                    ("moment1", state.m[name]),
                    ("moment2", state.v[name]),
                    ("vhat", state.vhat[name]),
                ):
                    recorded = arrays[f"{kind}/{name}"][t]
                    assert same_bits(got, recorded), f"{entry['id']} step {t}: {kind}/{name}"
            assert same_bits(state.beta1_power, arrays["beta1_power"][t])
            assert int(state.count) == t


def _apply(tx: Any, params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
