"""amsgrad.jax and amsgrad.optax: bit-exact to the NumPy path on XLA:CPU (normal numbers)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import amsgrad  # noqa: E402
from amsgrad.core import reference as _reference  # noqa: E402
from amsgrad.jax import apply_adam_with_amsgrad_v2 as jax_apply  # noqa: E402
from amsgrad.optax import AmsgradV2State, amsgrad_v2  # noqa: E402
from helpers import assert_bits_equal, bits_equal  # noqa: E402

HYPER = (np.float32(0.9) ** 7, np.float32(0.999) ** 7, 1e-3, 0.9, 0.999, 1e-8)


# --------------------------------------------------------------------------- helpers


def random_state(dtype, n, seed, specials=True, subnormals=False):
    """var, m, v, vhat, grad of ``dtype``: wide magnitudes, zeros, infinities and NaN.

    Without ``subnormals``, magnitudes stay where neither the inputs nor any intermediate
    result of the formula is subnormal, so that XLA's flush-to-zero never triggers.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    low, high = {2: (-6, 6), 4: (-18, 18), 8: (-60, 60)}[dtype.itemsize]
    if subnormals:
        info = np.finfo(dtype)
        low = float(np.log(info.smallest_subnormal)) + 1
    out = []
    for k in range(5):
        with np.errstate(all="ignore"):
            x = (rng.standard_normal(n) * np.exp(rng.uniform(low, high, n))).astype(dtype)
        if specials:
            pick = rng.random(n) < 0.03
            x[pick] = rng.choice(
                np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0], dtype), int(pick.sum())
            )
        if k in (2, 3):
            x = np.abs(x)
        out.append(x)
    return out


def numpy_step(var, m, v, vhat, grad, hyper=HYPER):
    arrays = [np.array(a, copy=True) for a in (var, m, v, vhat)]
    with np.errstate(all="ignore"):
        amsgrad.apply_adam_with_amsgrad_v2(*arrays, *hyper, grad)
    return arrays


def assert_all_bits_equal(got, want, what=""):
    for name, g, w in zip(("var", "m", "v", "vhat"), got, want, strict=True):
        assert_bits_equal(np.asarray(g), w, f"{what} {name}")


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bit_exact_to_numpy_eager_and_jit(dtype):
    var, m, v, vhat, grad = random_state(dtype, 50000, seed=1)
    want = numpy_step(var, m, v, vhat, grad)
    assert_all_bits_equal(jax_apply(var, m, v, vhat, *HYPER, grad), want, "eager")

    @jax.jit
    def stepped(var, m, v, vhat, grad):
        return jax_apply(var, m, v, vhat, *HYPER, grad)

    assert_all_bits_equal(stepped(var, m, v, vhat, grad), want, "jit")


def test_bit_exact_float64_with_x64():
    with jax.enable_x64(True):
        var, m, v, vhat, grad = random_state(np.float64, 50000, seed=2)
        want = numpy_step(var, m, v, vhat, grad)
        got = jax.jit(lambda *a: jax_apply(*a[:4], *HYPER, a[4]))(var, m, v, vhat, grad)
        assert got[0].dtype == jnp.float64
        assert_all_bits_equal(got, want, "float64")
        # Python floats are rounded through float32: 0.1 acts as 0.10000000149011612.
        got = jax_apply(var, m, v, vhat, 0.5, 0.5, 0.1, 0.9, 0.999, 1e-8, grad)
        want = numpy_step(
            var, m, v, vhat, grad, (0.5, 0.5, float(np.float32(0.1)), 0.9, 0.999, 1e-8)
        )
        assert_all_bits_equal(got, want, "float32-rounded scalars")


def test_plain_xla_would_not_be_exact():
    """Why :func:`amsgrad.adapters.jax.rounded` exists: XLA contracts a*b+c into an FMA."""
    rng = np.random.default_rng(3)
    m = rng.standard_normal(10000).astype(np.float32)
    g = rng.standard_normal(10000).astype(np.float32)
    c = np.float32(1) - np.float32(0.9)
    plain = np.asarray(jax.jit(lambda m, g: m + (g - m) * c)(m, g))
    guarded = np.asarray(jax.jit(lambda m, g: m + amsgrad.adapters.jax.rounded((g - m) * c))(m, g))
    want = m + (g - m) * c
    assert bits_equal(guarded, want)
    # Documented figure: about 30 % of the plain results differ (by 1 ULP). If XLA stops
    # contracting, this assertion is the one to update, not the guard.
    assert np.mean(plain != want) > 0.05


def _intermediates_subnormal(var, m, v, vhat, grad, hyper=HYPER):
    """Per element: does any input or intermediate value of the formula fall in the subnormal
    range (where XLA:CPU, which runs with flush-to-zero and denormals-are-zero, differs)?"""
    dtype = var.dtype
    tiny = np.finfo(dtype).tiny
    b1p, b2p, lr, b1, b2, eps = (np.asarray(np.float32(h)).astype(dtype) for h in hyper)
    one = np.asarray(1, dtype)
    with np.errstate(all="ignore"):
        lr_t = (lr * _reference.sqrt64(one - b2p)) / (one - b1p)
        d = grad - m
        p = d * (one - b1)
        m2 = m + p
        g2 = grad * grad
        e = g2 - v
        q = e * (one - b2)
        v2 = v + q
        h = np.where(vhat < v2, v2, vhat)
        s = _reference.sqrt64(h)
        den = s + eps
        num = lr_t * m2
        st = num / den
        out = var - st
    values = [var, m, v, vhat, grad, d, p, m2, g2, e, q, v2, h, s, den, num, st, out]
    flags = np.zeros(var.shape, bool)
    for x in values:
        flags |= (x != 0) & (np.abs(x) < tiny)
    return flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormals_are_flushed_by_xla_cpu(dtype):
    """XLA:CPU computes with FTZ/DAZ: results differ only where a subnormal is involved."""
    with jax.enable_x64(dtype == np.float64):
        var, m, v, vhat, grad = random_state(dtype, 40000, seed=4, subnormals=True)
        want = numpy_step(var, m, v, vhat, grad)
        got = [np.asarray(a) for a in jax_apply(var, m, v, vhat, *HYPER, grad)]
    involved = _intermediates_subnormal(var, m, v, vhat, grad)
    assert involved.any()
    uint = {4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    differ = np.zeros(var.shape, bool)
    for g, w in zip(got, want, strict=True):
        differ |= ~((g.view(uint) == w.view(uint)) | (np.isnan(g) & np.isnan(w)))
    assert differ.any()  # the flush does show (if XLA stops flushing, update the docs)
    assert not (differ & ~involved).any()  # ... and only where a subnormal is involved


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_bits_computed_inside_a_larger_jit(dtype):
    """Every input a product computed in the same jitted program (as a gradient from backprop
    is), on random bit patterns: equal to the C kernel except where XLA's flush-to-zero acts."""
    with jax.enable_x64(dtype == np.float64):
        uint = {4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
        rng = np.random.default_rng(11)
        info = np.iinfo(uint)
        var, m, v, vhat, grad = (
            rng.integers(0, info.max, 60000, dtype=uint, endpoint=True).view(dtype)
            for _ in range(5)
        )
        v, vhat = np.abs(v), np.abs(vhat)
        want = numpy_step(var, m, v, vhat, grad)

        @jax.jit
        def stepped(one, var, m, v, vhat, grad):
            # one is 1.0 at run time: each input is then a product that XLA could fuse.
            return jax_apply(*(x * one for x in (var, m, v, vhat)), *HYPER, grad * one)

        got = [np.asarray(a) for a in stepped(dtype(1), var, m, v, vhat, grad)]
    involved = _intermediates_subnormal(var, m, v, vhat, grad)
    differ = np.zeros(var.shape, bool)
    for g, w in zip(got, want, strict=True):
        differ |= ~((g.view(uint) == w.view(uint)) | (np.isnan(g) & np.isnan(w)))
    assert not (differ & ~involved).any()
    assert (~involved & ~np.isnan(want[1])).sum() > 10000  # most elements are compared


def test_per_row_hyper_parameters():
    var, m, v, vhat, grad = (
        a.reshape(4, 50) for a in random_state(np.float32, 200, seed=5, specials=False)
    )
    lr = np.array([1e-3, 2e-3, 0.0, 5e-2], np.float32)
    b1p = np.array([0.5, 0.9, 0.99, 0.1], np.float32)
    hyper = (b1p, 0.999, lr, 0.9, np.array([0.99, 0.999, 0.9, 0.5], np.float32), 1e-8)
    want = numpy_step(var, m, v, vhat, grad, hyper)
    got = jax_apply(
        var, m, v, vhat, *(jnp.asarray(h) if isinstance(h, np.ndarray) else h for h in hyper), grad
    )
    assert_all_bits_equal(got, want)


def test_vmap_over_a_batch_of_states_and_learning_rates():
    states = random_state(np.float32, 8 * 30, seed=6, specials=False)
    var, m, v, vhat, grad = (a.reshape(8, 30) for a in states)
    lrs = np.linspace(0, 1e-2, 8).astype(np.float32)

    def one(var, m, v, vhat, grad, lr):
        return jax_apply(var, m, v, vhat, HYPER[0], HYPER[1], lr, 0.9, 0.999, 1e-8, grad)

    got = jax.jit(jax.vmap(one))(var, m, v, vhat, grad, lrs)
    for row in range(8):
        hyper = (HYPER[0], HYPER[1], lrs[row], 0.9, 0.999, 1e-8)
        want = numpy_step(var[row], m[row], v[row], vhat[row], grad[row], hyper)
        assert_all_bits_equal([g[row] for g in got], want, f"row {row}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("batched", ["per_row", "vmap"])
def test_many_learning_rates_against_scalar_beta_powers(dtype, batched):
    """XLA turns ``x / broadcast(d)`` into ``x * broadcast(1 / d)``; lr_t must not round twice.

    One learning rate per row (an lr array, or a scalar lr under vmap) with scalar beta powers
    is the case: before the guard a third of the float32 rows were one ULP off.
    """
    rows = 500
    with jax.enable_x64(dtype == np.float64):
        states = random_state(dtype, rows * 8, seed=11, specials=False)
        var, m, v, vhat, grad = (a.reshape(rows, 8) for a in states)
        lrs = np.exp(np.random.default_rng(12).uniform(-12, -1, rows)).astype(dtype)
        b1p, b2p = np.float32(0.9) ** 3, np.float32(0.999) ** 3

        def one(var, m, v, vhat, grad, lr):
            return jax_apply(var, m, v, vhat, b1p, b2p, lr, 0.9, 0.999, 1e-8, grad)

        stepped = jax.jit(one if batched == "per_row" else jax.vmap(one))
        got = stepped(var, m, v, vhat, grad, jnp.asarray(lrs))
        want = numpy_step(var, m, v, vhat, grad, (b1p, b2p, lrs, 0.9, 0.999, 1e-8))
        assert_all_bits_equal(got, want, batched)


def test_python_float_traced_by_jit_keeps_the_python_float_rule():
    var, m, v, vhat, grad = random_state(np.float16, 1000, seed=7, specials=False)
    eager = jax_apply(var, m, v, vhat, 0.5, 0.25, 1e-3, 0.9, 0.999, 1e-3, grad)
    traced = jax.jit(jax_apply)(var, m, v, vhat, 0.5, 0.25, 1e-3, 0.9, 0.999, 1e-3, grad)
    assert_all_bits_equal(traced, [np.asarray(a) for a in eager])


def test_errors_name_the_argument():
    var, m, v, vhat, grad = (jnp.asarray(a) for a in random_state(np.float16, 4, seed=8))
    hyper = list(HYPER)
    with pytest.raises(amsgrad.DtypeConversionError, match=r"lr \(the 7th input\)"):
        jax_apply(var, m, v, vhat, *hyper[:2], jnp.float32(1e-3), *hyper[3:], grad)
    with pytest.raises(amsgrad.DtypeConversionError, match=r"^grad \(the 11th input\)"):
        jax_apply(var, m, v, vhat, *hyper, grad.astype(jnp.float32))
    with pytest.raises(amsgrad.DtypeConversionError, match=r"^vhat \(the 4th input\)"):
        jax_apply(var, m, v, vhat.astype(jnp.float32), *hyper, grad)
    with pytest.raises(ValueError, match=r"^m \(the 2nd input\): expected var's shape \(4,\)"):
        jax_apply(var, m[:2], v, vhat, *hyper, grad)
    with pytest.raises(TypeError, match=r"^epsilon \(the 10th input\)"):
        jax_apply(var, m, v, vhat, *hyper[:5], "1e-8", grad)
    with pytest.raises(TypeError, match=r"^var \(the 1st input\): expected dtype"):
        jax_apply(var.astype(jnp.bfloat16), m, v, vhat, *hyper, grad)
    with pytest.raises(ValueError, match=r"^beta1 \(the 8th input\).*leading prefix"):
        jax_apply(var, m, v, vhat, *hyper[:3], jnp.ones(3, jnp.float16), *hyper[4:], grad)
    # Lower precision and integer tensors are converted.
    out = jax_apply(
        var.astype(jnp.float32),
        m.astype(jnp.float32),
        v.astype(jnp.float32),
        vhat.astype(jnp.float32),
        *hyper,
        jnp.arange(4),
    )
    assert out[0].dtype == jnp.float32


# --------------------------------------------------------------------------- optax


def _mlp_init(key, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": (jax.random.normal(k1, (6, 16)) * 0.5).astype(dtype),
        "b1": jnp.zeros(16, dtype),
        "w2": (jax.random.normal(k2, (16, 1)) * 0.25).astype(dtype),
        "b2": jnp.zeros(1, dtype),
        "unused": (jax.random.normal(k3, (3,))).astype(dtype),
    }


def _mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def _data(dtype, n=64):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, 6)).astype(dtype)
    y = np.sin(x.sum(axis=1, keepdims=True)).astype(dtype)
    return x, y


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("schedule", [False, True])
def test_optax_200_steps_bit_equal_to_functional(dtype, schedule):
    eps = 1e-3 if dtype == np.float16 else 1e-8
    if schedule:
        learning_rate = optax.exponential_decay(1e-2, transition_steps=10, decay_rate=0.7)
    else:
        learning_rate = 1e-2
    tx = amsgrad_v2(learning_rate, b1=0.9, b2=0.99, eps=eps)
    params = _mlp_init(jax.random.PRNGKey(0), dtype)
    x, y = _data(dtype)
    state = tx.init(params)
    assert isinstance(state, AmsgradV2State)

    @jax.jit
    def train_step(params, state):
        # The schedule's value as this compiled step computes it (XLA's pow, fused or not, may
        # differ in the last bit from an eager evaluation: that is the schedule, not us).
        lr = learning_rate(state.count) if schedule else jnp.float32(learning_rate)
        loss, grads = jax.value_and_grad(_mlp_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, grads, lr

    ref = {k: np.array(p) for k, p in params.items()}
    ref_state = {k: [np.zeros_like(p) for _ in range(3)] for k, p in ref.items()}
    b1p = b2p = np.float32(1)
    losses = []
    for step in range(200):
        params, state, loss, grads, lr_used = train_step(params, state)
        losses.append(float(loss))
        b1p, b2p = b1p * np.float32(0.9), b2p * np.float32(0.99)
        lr = np.float32(lr_used) if schedule else learning_rate
        if schedule:
            assert lr == pytest.approx(1e-2 * 0.7 ** (step / 10), rel=1e-6)
        for k in ref:
            amsgrad.apply_adam_with_amsgrad_v2(
                ref[k], *ref_state[k], b1p, b2p, lr, 0.9, 0.99, eps, np.asarray(grads[k])
            )
    for k in ref:
        assert_bits_equal(np.asarray(params[k]), ref[k], k)
        for name, got, want in zip(
            ("m", "v", "vhat"), (state.m[k], state.v[k], state.vhat[k]), ref_state[k], strict=True
        ):
            assert_bits_equal(np.asarray(got), want, f"{k}.{name}")
    assert int(state.count) == 200
    assert np.float32(state.beta1_power) == b1p and state.beta1_power.dtype == jnp.float32
    assert losses[-1] < 0.5 * losses[0]


def test_optax_updates_are_minus_the_step_and_params_are_optional():
    params = {"w": jnp.asarray(np.linspace(-1, 1, 7, dtype=np.float32))}
    grads = {"w": jnp.asarray(np.linspace(2, -2, 7, dtype=np.float32))}
    tx = amsgrad_v2(1e-2)
    updates, _ = tx.update(grads, tx.init(params))  # no params needed
    new_var, *_ = jax_apply(
        params["w"],
        *(jnp.zeros(7),) * 3,
        np.float32(0.9),
        np.float32(0.999),
        1e-2,
        0.9,
        0.999,
        1e-8,
        grads["w"],
    )
    assert_bits_equal(np.asarray(optax.apply_updates(params, updates)["w"]), np.asarray(new_var))


def test_optax_convergence_next_to_optax_amsgrad():
    """Same model and data with optax.amsgrad and amsgrad_v2: both converge."""
    x, y = _data(np.float32, n=256)
    results = {}
    for name, tx in (("optax.amsgrad", optax.amsgrad(1e-2)), ("amsgrad_v2", amsgrad_v2(1e-2))):
        params = _mlp_init(jax.random.PRNGKey(1), np.float32)
        state = tx.init(params)

        @jax.jit
        def train_step(params, state, tx=tx):
            grads = jax.grad(_mlp_loss)(params, x, y)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        initial = float(_mlp_loss(params, x, y))
        for _ in range(300):
            params, state = train_step(params, state)
        results[name] = float(_mlp_loss(params, x, y))
    # Both converge. They are different algorithms: optax.amsgrad takes the maximum of the
    # bias-corrected second moment (its default bias_correction_nu=True), this operator the
    # maximum of the raw one (as torch.optim.Adam(amsgrad=True)), so the curves differ more
    # than the torch pair does (docs/frameworks.md has the figures).
    assert max(results.values()) < 0.2 * initial


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": -1.0}, r"^learning_rate: expected a number >= 0"),
        ({"learning_rate": "fast"}, r"^learning_rate: "),
        ({"learning_rate": 1e-3, "b1": 1.0}, r"^b1: expected a number in \[0, 1\), got 1.0"),
        ({"learning_rate": 1e-3, "b2": -0.5}, r"^b2: "),
        ({"learning_rate": 1e-3, "eps": -1.0}, r"^eps: expected a number >= 0"),
        ({"learning_rate": float("inf")}, r"^learning_rate: expected a finite number >= 0"),
        ({"learning_rate": 1e-3, "eps": np.inf}, r"^eps: expected a finite number >= 0"),
    ],
)
def test_optax_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        amsgrad_v2(**kwargs)


def test_optax_learning_rate_that_overflows_the_leaf_dtype_is_refused_at_init():
    tx = amsgrad_v2(1e5)  # float16's largest is 65504
    tx.init({"w": jnp.zeros(3, jnp.float32)})
    with pytest.raises(ValueError, match=r"leaf \['w'\] of dtype float16, learning_rate: 100000"):
        tx.init({"w": jnp.zeros(3, jnp.float16)})


@pytest.mark.parametrize("weight_decay", [None, 0.1])
@pytest.mark.parametrize("grad_shape", [(3,), (5,), (1, 3)])
def test_optax_gradient_of_another_shape_than_its_state_is_refused(weight_decay, grad_shape):
    params = {"w": jnp.ones((4, 3))}
    tx = amsgrad_v2(1e-3, weight_decay=weight_decay)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"the leaf \['w'\] is a gradient of shape"):
        tx.update({"w": jnp.ones(grad_shape)}, state, params)


def test_optax_refuses_integer_leaves():
    tx = amsgrad_v2(1e-3)
    with pytest.raises(TypeError, match=r"the leaf \['w'\] of dtype int32"):
        tx.init({"w": jnp.zeros(3, jnp.int32)})


def test_optax_any_pytree_of_leaves():
    params = ({"w": jnp.ones((2, 3))}, (jnp.zeros(3), jnp.full(1, 2.0)))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    tx = amsgrad_v2(1e-1)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(grads, state)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert jax.tree.structure(state.vhat) == jax.tree.structure(params)
    # First step: m = 0.05, v = vhat = 0.00025, lr_t = 0.1 * sqrt(0.001) / 0.1.
    want = jax_apply(
        jnp.zeros(3),
        *(jnp.zeros(3),) * 3,
        np.float32(0.9),
        np.float32(0.999),
        0.1,
        0.9,
        0.999,
        1e-8,
        jnp.full(3, 0.5),
    )[0]
    assert_bits_equal(np.asarray(updates[1][0]), np.asarray(want))
