"""amsgrad_v2 held to the checks Optax runs over each of its own optimizers.

Optax's test suite (``optax/_src/alias_test.py``, ``float64_test.py``,
``transforms/_masking_test.py``) checks every optimizer for: solving small problems (a parabola
and the Rosenbrock function, real and complex) under ``jax.jit`` without recompiling;
``optax.tree.map_params`` on its state; extra keyword arguments at ``update``;
``optax.inject_hyperparams``; updates of the gradients' dtype; a state whose shapes and dtypes
are stable across updates, for float16 to complex128; ``optax.MultiSteps``; mixed float32/float64
trees; masked states, empty trees and ``None`` leaves. The same checks, written here for
amsgrad_v2, plus the semantics of this adapter's extensions (bfloat16, complex, float64 without
x64, the MindSpore training arguments).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from amsgrad.jax import apply_adam_with_amsgrad_v2 as jax_apply  # noqa: E402
from amsgrad.optax import AmsgradV2State, amsgrad_v2, mindspore_decay_mask  # noqa: E402
from helpers import assert_bits_equal  # noqa: E402


def assert_trees_bits_equal(got: Any, want: Any) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), f"{a} != {b}"


def x64_if(flag: bool) -> Any:
    return jax.enable_x64(True) if flag else contextlib.nullcontext()


def parabola(dtype: Any) -> tuple[jax.Array, jax.Array, Any]:
    start = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
    target = jnp.array([1.0, -1.0, 1.0], dtype=dtype)
    if jnp.iscomplexobj(start):
        target = target * (1 + 1j)
    return start, target, lambda p: jnp.sum(jnp.abs(p - target) ** 2)


def rosenbrock(dtype: Any) -> tuple[jax.Array, jax.Array, Any]:
    a = 1.0 + 1j if jnp.issubdtype(dtype, jnp.complexfloating) else 1.0
    start = jnp.zeros(2, dtype)
    target = jnp.array([a, a**2], dtype)

    def loss(p: jax.Array) -> jax.Array:
        return jnp.abs(a - p[0]) ** 2 + 100.0 * jnp.abs(p[1] - p[0] ** 2) ** 2

    return start, target, loss


# --------------------------------------------------------------------------- optimization


@pytest.mark.parametrize("problem", [parabola, rosenbrock])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_solves_small_problems_without_recompiling(problem: Any, dtype: Any) -> None:
    tx = amsgrad_v2(1e-1)
    params, target, loss = problem(dtype)
    state = tx.init(params)
    # A no-op map over the parameter-shaped parts of the state must work.
    state = optax.tree.map_params(tx, lambda p: p, state)

    @jax.jit
    def step(params: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        # Complex gradients are conjugated before use, as Optax's tests do.
        grads = jax.tree.map(jnp.conj, jax.grad(loss)(params))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params, state = step(params, state)
    compiled = step._cache_size()
    for _ in range(10_000):
        params, state = step(params, state)
    assert step._cache_size() == compiled == 1, "the update recompiled"
    np.testing.assert_allclose(np.asarray(params), np.asarray(target), rtol=3e-2, atol=3e-2)


def test_extra_update_arguments_are_accepted() -> None:
    tx = amsgrad_v2(1e-2)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = {"w": jnp.arange(3.0)}
    state = tx.init(params)
    grads = {"w": jnp.ones(3)}
    plain, _ = tx.update(grads, state, params)
    extra, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, unexpected_extra_arg=1, value=2.0))(
        grads, state, params
    )
    assert_trees_bits_equal(extra, plain)
    # And in a chain, which passes extra arguments to every member.
    chain = optax.chain(optax.clip(10.0), tx)
    updates, _ = chain.update(grads, chain.init(params), params, loss=jnp.float32(3))
    assert_trees_bits_equal(updates, plain)


# --------------------------------------------------------------------------- inject_hyperparams


def _run(tx: Any, params: Any, grads: Any, steps: int = 3) -> tuple[Any, Any]:
    state = jax.jit(tx.init)(params)
    update = jax.jit(tx.update)
    for _ in range(steps):
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def test_inject_hyperparams_with_the_defaults_is_bit_equal() -> None:
    params = [-jnp.ones((2, 3)), jnp.linspace(0.1, 2.0, 20).reshape(2, 5, 2)]
    grads = [jnp.full((2, 3), 0.7), -jnp.linspace(1.0, 3.0, 20).reshape(2, 5, 2)]
    want_params, want_state = _run(amsgrad_v2(0.1), params, grads)
    injected = optax.inject_hyperparams(amsgrad_v2)(learning_rate=0.1)
    got_params, got_state = _run(injected, params, grads)
    # b1, b2 and eps arrived as float32 arrays, traced under jax.jit: same bits.
    assert set(got_state.hyperparams) >= {"learning_rate", "b1", "b2", "eps"}
    assert_trees_bits_equal(got_params, want_params)
    assert_trees_bits_equal(got_state.inner_state, want_state)


def test_inject_hyperparams_training_arguments_and_changed_values() -> None:
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "norm": {"gamma": jnp.ones(6)}}
    grads = jax.tree.map(lambda p: jnp.cos(p) * 3.0, params)
    # loss_scale a power of two: float32(wd) * 4 is float32(wd * 4), so the traced product
    # (computed in float32) is MindSpore's.
    kwargs = {"weight_decay": 0.01, "loss_scale": 4.0, "mask": mindspore_decay_mask}
    want, _ = _run(amsgrad_v2(0.05, **kwargs), params, grads)
    # A callable mask must be static: inject_hyperparams would take it for a schedule.
    injected = optax.inject_hyperparams(amsgrad_v2, static_args="mask")(
        learning_rate=0.05, **kwargs
    )
    got, state = _run(injected, params, grads)
    assert_trees_bits_equal(got, want)
    # Changing a hyper-parameter in the state changes the update, as with Optax's optimizers.
    state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
    updates, _ = jax.jit(injected.update)(grads, state, params)
    assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))


def test_inject_hyperparams_checks_the_values_it_can_read() -> None:
    with pytest.raises(ValueError, match=r"^b1: expected a number in \[0, 1\)"):
        optax.inject_hyperparams(amsgrad_v2)(learning_rate=0.1, b1=1.0).init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"^loss_scale: expected a finite number > 0"):
        optax.inject_hyperparams(amsgrad_v2)(learning_rate=0.1, loss_scale=0.0).init(jnp.ones(2))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_inject_hyperparams_in_half_precision_is_refused(dtype: Any) -> None:
    # Optax converts them to the parameters' dtype: eps = 1e-8 would be 0 (NaN updates).
    params = {"w": jnp.zeros(4, dtype)}
    with pytest.raises(TypeError, match=r"hyperparam_dtype=jnp.float32"):
        optax.inject_hyperparams(amsgrad_v2)(learning_rate=1e-3).init(params)
    injected = optax.inject_hyperparams(amsgrad_v2, hyperparam_dtype=jnp.float32)
    tx = injected(learning_rate=1e-3, eps=1e-6)
    updates, _ = tx.update({"w": jnp.zeros(4, dtype)}, tx.init(params), params)
    assert not np.any(np.isnan(np.asarray(updates["w"], np.float32)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"b1": np.float32(1.5)}, r"^b1: expected a number in \[0, 1\)"),
        ({"b2": jnp.asarray(1.0)}, r"^b2: expected a number in \[0, 1\)"),
        ({"eps": jnp.asarray(-1.0)}, r"^eps: expected a number >= 0"),
        ({"learning_rate": jnp.asarray(-1.0)}, r"^learning_rate: expected a number >= 0"),
        ({"learning_rate": [0.1, -0.1]}, r"^learning_rate\[1\]: expected a number >= 0"),
        ({"learning_rate": []}, r"^learning_rate: an empty list"),
        ({"learning_rate": jnp.ones((2, 2))}, r"^learning_rate: expected a number"),
        ({"weight_decay": -0.1}, r"^weight_decay: expected a finite number >= 0"),
        ({"weight_decay": True}, r"^weight_decay: expected a finite number >= 0"),
        ({"loss_scale": float("inf")}, r"^loss_scale: expected a finite number > 0"),
        ({"loss_scale": 1e-39}, r"^loss_scale: 1 / 1e-39 is inf in float32"),
        (
            {"weight_decay": 1e30, "loss_scale": 1e10},
            r"^weight_decay: 1e\+30 \* 10000000000.0 is inf",
        ),
    ],
)
def test_zero_d_arrays_are_checked_as_numbers(kwargs: dict[str, Any], match: str) -> None:
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        amsgrad_v2(**kwargs)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_updates_have_the_gradients_dtype(dtype: str) -> None:
    tx = amsgrad_v2(1e-1)
    params = jnp.array([1.0, 2.0], dtype=dtype)
    grads = jax.grad(lambda x: jnp.sum(x**2))(params)
    updates, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
    assert updates.dtype == grads.dtype


@pytest.mark.parametrize(
    "dtype", ["float16", "bfloat16", "float32", "float64", "complex64", "complex128"]
)
def test_state_shapes_and_dtypes_are_stable(dtype: str) -> None:
    with x64_if(dtype in ("float64", "complex128")):
        eps = 1e-4 if dtype == "float16" else 1e-8  # 1e-8 rounds to 0 in float16: refused
        tx = amsgrad_v2(1e-1, eps=eps)
        params, _, loss = parabola(dtype)

        @jax.jit
        def step(params: jax.Array, state: Any) -> tuple[jax.Array, Any]:
            grads = jnp.conj(jax.grad(loss)(params))
            # lax.cond needs both branches' shapes and dtypes to agree: a state whose dtype
            # drifted would fail to trace.
            take = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
            updates, state = jax.lax.cond(
                take, lambda: tx.update(grads, state, params), lambda: (params, state)
            )
            return optax.apply_updates(params, updates), state

        state = tx.init(params)
        before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
        for _ in range(2):
            params, state = step(params, state)
            assert params.dtype == jnp.dtype(dtype)
            assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before


def test_multisteps_accumulates_before_updating() -> None:
    for dtype in ("bfloat16", "float32"):
        tx = optax.MultiSteps(amsgrad_v2(1e-1), every_k_schedule=4)
        params = jnp.array([1.0, 2.0], dtype=dtype)
        grads = jax.grad(lambda x: jnp.sum(x**2))(params)
        updates, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
        assert updates.dtype == grads.dtype
        np.testing.assert_array_equal(np.asarray(updates, np.float32), np.zeros(2))


def test_mixed_float32_float64_tree_keeps_each_dtype() -> None:
    with jax.enable_x64(True):
        params = (jnp.array([1.0, 2.0], jnp.float32), jnp.array([3.0, 4.0], jnp.float64))
        grads = (jnp.array([10.0, 21.0], jnp.float32), jnp.array([33.0, 42.0], jnp.float64))
        tx = amsgrad_v2(0.1)
        state = jax.jit(tx.init)(params)
        updates, new_state = jax.jit(tx.update)(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        dtypes = lambda tree: jax.tree.map(lambda x: x.dtype, tree)  # noqa: E731
        assert dtypes(new_state) == dtypes(state)
        assert dtypes(new_params) == dtypes(params)
        # Each leaf is the operator in its own dtype (float32 scalars widened for float64).
        for p, g, u in zip(params, grads, updates, strict=True):
            zeros = jnp.zeros_like(p)
            var = jax_apply(p, zeros, zeros, zeros, np.float32(0.9), np.float32(0.999),
                            np.float32(0.1), np.float32(0.9), np.float32(0.999),
                            np.float32(1e-8), g)[0]  # fmt: skip
            assert_bits_equal(np.asarray(p + u), np.asarray(var))


def test_float64_without_x64_is_refused() -> None:
    with jax.enable_x64(False):
        wide = np.linspace(0.0, 1.0, 4)
        with pytest.raises(TypeError, match=r"^var: an array of dtype float64 needs jax_enable"):
            jax_apply(wide, *(np.zeros(4),) * 3, 0.5, 0.5, 0.1, 0.9, 0.999, 1e-8, wide)
        with pytest.raises(TypeError, match=r"the leaf \['w'\].* float64 needs jax_enable_x64"):
            amsgrad_v2(0.1).init({"w": wide})
        with pytest.raises(TypeError, match="complex128 needs jax_enable_x64"):
            amsgrad_v2(0.1).init({"w": wide.astype(np.complex128)})


def test_bfloat16_is_the_float32_operator_rounded_once() -> None:
    rng = np.random.default_rng(4)
    p32 = jnp.asarray(rng.standard_normal(500).astype(np.float32)).astype(jnp.bfloat16)
    g32 = jnp.asarray(rng.standard_normal(500).astype(np.float32)).astype(jnp.bfloat16)
    # The float32 run on the same (exactly widened) values.
    wide = {"w": p32.astype(jnp.float32)}
    narrow = {"w": p32}
    tx = amsgrad_v2(3e-2, weight_decay=0.1, loss_scale=8.0)
    s_wide, s_narrow = tx.init(wide), tx.init(narrow)
    assert s_narrow.m["w"].dtype == jnp.float32  # bfloat16 leaves keep float32 moments
    for k in range(3):
        grads = g32 * (k + 1)
        u_wide, s_wide = tx.update({"w": grads.astype(jnp.float32)}, s_wide, wide)
        u_narrow, s_narrow = jax.jit(tx.update)({"w": grads}, s_narrow, narrow)
        assert u_narrow["w"].dtype == jnp.bfloat16
        assert_trees_bits_equal(u_narrow["w"], u_wide["w"].astype(jnp.bfloat16))
        assert_trees_bits_equal((s_narrow.m, s_narrow.v, s_narrow.vhat),
                                (s_wide.m, s_wide.v, s_wide.vhat))  # fmt: skip
        # Keep both runs on the same parameters, so that the decay reads the same values.
        narrow = optax.apply_updates(narrow, u_narrow)
        wide = {"w": narrow["w"].astype(jnp.float32)}


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_is_a_pair_of_reals(dtype: str) -> None:
    with x64_if(dtype == "complex128"):
        rng = np.random.default_rng(5)
        shape = (3, 4)
        p, g1, g2 = (
            jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
            for _ in range(3)
        )
        real = lambda z: jnp.stack([z.real, z.imag], -1)  # noqa: E731
        tx = amsgrad_v2(1e-2, weight_decay=0.05)
        s_c, s_r = tx.init({"w": p}), tx.init({"w": real(p)})
        assert s_c.m["w"].dtype == jnp.dtype(dtype)
        pc, pr = {"w": p}, {"w": real(p)}
        for g in (g1, g2):
            u_c, s_c = jax.jit(tx.update)({"w": g}, s_c, pc)
            u_r, s_r = jax.jit(tx.update)({"w": real(g)}, s_r, pr)
            assert u_c["w"].dtype == jnp.dtype(dtype)
            assert_trees_bits_equal(real(u_c["w"]), u_r["w"])
            for name in ("m", "v", "vhat"):
                assert_trees_bits_equal(real(getattr(s_c, name)["w"]), getattr(s_r, name)["w"])
            pc, pr = optax.apply_updates(pc, u_c), optax.apply_updates(pr, u_r)
            assert_trees_bits_equal(real(pc["w"]), pr["w"])


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_gradient_centralization_takes_the_complex_mean(dtype: str) -> None:
    """grad_centralization on a complex leaf removes its complex mean per row (real and
    imaginary parts averaged apart), and the rule reads the complex shape."""
    with x64_if(dtype == "complex128"):
        rng = np.random.default_rng(8)
        leaves = {}
        for name, shape in (("w", (4, 16)), ("u", (16, 2))):
            parts = rng.standard_normal((2, *shape)) + np.array([3.0, 1.0]).reshape(2, 1, 1)
            leaves[name] = jnp.asarray(parts[0] + 1j * parts[1]).astype(dtype)
        params = jax.tree.map(jnp.zeros_like, leaves)
        expected = dict(leaves)
        mean = jnp.mean(leaves["w"], axis=1, keepdims=True)  # the complex mean
        expected["w"] = leaves["w"] - mean
        ours, _ = amsgrad_v2(1e-2, grad_centralization=True).update(
            leaves, amsgrad_v2(1e-2, grad_centralization=True).init(params), params
        )
        want, _ = amsgrad_v2(1e-2).update(expected, amsgrad_v2(1e-2).init(params), params)
        assert_trees_bits_equal(ours, want)


# --------------------------------------------------------------------------- trees


def test_recursive_trees_none_leaves_and_empty_trees() -> None:
    tx = amsgrad_v2(1e-1)
    params = {"a": [jnp.ones(2), (jnp.zeros(3), {"b": jnp.full(1, 2.0)})], "none": None}
    grads = jax.tree.map(lambda p: p * 0 + 0.5, params)
    state = jax.jit(tx.init)(params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for tree in (state.m, state.v, state.vhat):
        assert jax.tree.structure(tree) == jax.tree.structure(params)
    assert state.m["none"] is None and updates["none"] is None
    for empty in ([], (), {}):
        state = tx.init(empty)
        updates, state = tx.update(empty, state)
        assert updates == empty and int(state.count) == 1


def test_masked_state_holds_masked_nodes_and_skips_those_leaves() -> None:
    params = {"a": [jnp.ones(1), (jnp.ones(2), jnp.ones(3))], "b": {"c": jnp.ones(4)}}
    mask = {"a": [True, (True, False)], "b": False}
    tx = optax.masked(amsgrad_v2(1e-1), mask)
    state = jax.jit(tx.init)(params)
    inner = state.inner_state
    assert isinstance(inner, AmsgradV2State)
    assert isinstance(inner.m["a"][1][1], optax.MaskedNode)
    assert isinstance(inner.vhat["b"], optax.MaskedNode)
    grads = jax.tree.map(lambda p: p * 0.3, params)
    updates, _ = jax.jit(tx.update)(grads, state, params)
    assert_trees_bits_equal(updates["b"], grads["b"])  # not selected: passed through
    assert_trees_bits_equal(updates["a"][1][1], grads["a"][1][1])
    alone, _ = amsgrad_v2(1e-1).update(grads["a"][0], amsgrad_v2(1e-1).init(params["a"][0]))
    assert_trees_bits_equal(updates["a"][0], alone)


# --------------------------------------------------------------------------- training arguments


def test_weight_decay_mask_conventions() -> None:
    params = {"dense": {"w": jnp.full(3, 2.0), "b": jnp.full(3, 2.0)}, "ln": {"gamma": jnp.ones(3)}}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
    decayed = amsgrad_v2(0.1, weight_decay=0.5)
    plain = amsgrad_v2(0.1)

    def first(tx: Any) -> Any:
        """The first moment after one update: the prepared gradient times 1 - b1."""
        return tx.update(grads, tx.init(params), params)[1].m

    all_decay, none = first(decayed), first(plain)
    for mask in ({"dense": True, "ln": False}, lambda p: {"dense": True, "ln": False}):
        got = first(amsgrad_v2(0.1, weight_decay=0.5, mask=mask))
        assert_trees_bits_equal(got["dense"], all_decay["dense"])
        assert_trees_bits_equal(got["ln"], none["ln"])
    ms = first(amsgrad_v2(0.1, weight_decay=0.5, mask=mindspore_decay_mask))
    assert_trees_bits_equal(ms["dense"], all_decay["dense"])
    assert_trees_bits_equal(ms["ln"], none["ln"])
    # The decay changes the result (else the comparisons above would prove nothing).
    assert not np.array_equal(np.asarray(all_decay["ln"]["gamma"]), np.asarray(none["ln"]["gamma"]))
    with pytest.raises(ValueError, match=r"weight_decay needs the parameters"):
        decayed.update(grads, decayed.init(params))
    with pytest.raises(ValueError, match=r"^mask: expected a tree of bools"):
        first(amsgrad_v2(0.1, weight_decay=0.5, mask={"dense": True}))


def test_loss_scale_divides_after_the_decay_with_float32_factors() -> None:
    """``g = p * f32(wd * ls) + g`` then ``g * f32(1 / ls)``, against amsgrad.jax directly."""
    wd, ls = 0.0007, 37.0  # f32(wd * ls) != f32(wd) * f32(ls) for these
    assert np.float32(wd * ls) != np.float32(np.float32(wd) * np.float32(ls))
    rng = np.random.default_rng(6)
    p = rng.standard_normal(64).astype(np.float32)
    g = (rng.standard_normal(64) * ls).astype(np.float32)
    tx = amsgrad_v2(0.01, weight_decay=wd, loss_scale=ls)
    updates, _ = jax.jit(tx.update)({"w": g}, tx.init({"w": p}), {"w": p})
    prepared = (p * np.float32(wd * ls) + g) * np.float32(1.0 / ls)
    zeros = np.zeros_like(p)
    var = jax_apply(p, zeros, zeros, zeros, np.float32(0.9), np.float32(0.999), 0.01, 0.9,
                    0.999, 1e-8, prepared)[0]  # fmt: skip
    assert_bits_equal(np.asarray(p + updates["w"]), np.asarray(var))


def test_learning_rate_forms() -> None:
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    grads = {"w": jnp.linspace(2.0, -1.0, 5)}
    values = [0.1, 0.02, 0.003]

    def run(tx: Any) -> list[Any]:
        state, out = tx.init(params), []
        for _ in values:
            updates, state = jax.jit(tx.update)(grads, state)
            out.append(updates)
        return out

    listed = run(amsgrad_v2(values))
    as_array = run(amsgrad_v2(np.asarray(values)))
    scheduled = run(amsgrad_v2(lambda count: jnp.asarray(values)[count]))
    for k in range(len(values)):
        assert_trees_bits_equal(listed[k], as_array[k])
        assert_trees_bits_equal(listed[k], scheduled[k])
    # Element k is the learning rate of update k + 1 (m, v, vhat and the beta powers do not
    # depend on the learning rate, so the third update is that of a constant 0.003).
    state = amsgrad_v2(0.003).init(params)
    for _ in range(3):
        constant, state = amsgrad_v2(0.003).update(grads, state)
    assert_trees_bits_equal(listed[2], constant)


# --------------------------------------------------------------------------- grad centralization


def test_grad_centralization_follows_mindspores_rule():
    rng = np.random.default_rng(3)
    params = {
        "conv": jnp.asarray(rng.standard_normal((4, 16, 3)).astype(np.float32)),
        "odd": jnp.asarray(rng.standard_normal((4, 15)).astype(np.float32)),
        "bias": jnp.asarray(rng.standard_normal(16).astype(np.float32)),
    }
    grads = jax.tree.map(lambda p: p + 3.0, params)  # far from mean zero
    centered = amsgrad_v2(1e-2, eps=1e-3, grad_centralization=True)
    plain = amsgrad_v2(1e-2, eps=1e-3)
    updates, _ = centered.update(grads, centered.init(params), params)
    g = np.asarray(grads["conv"])
    expected_grads = dict(grads, conv=jnp.asarray(g - g.mean(axis=(1, 2), keepdims=True)))
    reference, _ = plain.update(expected_grads, plain.init(params), params)
    for name in ("odd", "bias"):  # shapes MindSpore leaves alone: the plain update, bit for bit
        np.testing.assert_array_equal(updates[name], reference[name])
    np.testing.assert_allclose(updates["conv"], reference["conv"], rtol=1e-5, atol=1e-7)
    uncentered, _ = plain.update(grads, plain.init(params), params)
    assert not np.allclose(updates["conv"], uncentered["conv"], rtol=1e-3)
    with pytest.raises(TypeError, match="grad_centralization: expected a bool"):
        amsgrad_v2(1e-3, grad_centralization=1)
