"""Hostile inputs from the reliability issue: each check before the first write, bounded work,
locks keyed on memory, no warnings for overflow by the rule, clear messages for every refusal."""

from __future__ import annotations

import copy
import threading
import time
import warnings
from multiprocessing import shared_memory

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import as_strided

import amsgrad
from amsgrad.core import contract, locks, overlap
from amsgrad.torch import AMSGradV2
from helpers import assert_bits_equal

HYPER = (0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8)
apply = amsgrad.apply_adam_with_amsgrad_v2
apply_many = amsgrad.apply_adam_with_amsgrad_v2_many


def _state(size, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    var, m, grad = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    v, vhat = (np.abs(rng.standard_normal(size)).astype(dtype) for _ in range(2))
    return [var, m, v, vhat], grad


# --------------------------------------------------------------------------- 1. atomic step()


def _two_groups(implementation="auto"):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4))
    b = torch.nn.Parameter(torch.randn(3))
    opt = AMSGradV2(
        [{"params": [a]}, {"params": [b], "lr": 1e-2}], lr=1e-3, implementation=implementation
    )
    a.grad, b.grad = torch.randn(4), torch.randn(3)
    return opt, a, b


def _snapshot(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params]


def _assert_unchanged(opt, params, before):
    state, values = before
    assert set(opt.state) <= {p for p in params if p in opt.state}
    for p, value in zip(params, values, strict=True):
        assert torch.equal(p.detach(), value)
    now = opt.state_dict()
    assert now["state"].keys() == state["state"].keys()
    for key, entry in state["state"].items():
        for name, value in entry.items():
            got = now["state"][key][name]
            assert torch.equal(got, value) if isinstance(value, torch.Tensor) else got == value


@pytest.mark.parametrize(
    "breakage",
    [
        lambda s: s.__setitem__("m", torch.zeros(5)),  # another shape
        lambda s: s.__setitem__("v", torch.zeros(3, dtype=torch.float64)),  # another dtype
        lambda s: s.__setitem__("vhat", torch._neg_view(torch.zeros(3))),  # a negated view
        lambda s: s.__setitem__("v", s["m"]),  # m and v are one tensor: they share memory
        lambda s: s.pop("beta2_power"),  # a missing key
    ],
    ids=["shape", "float64", "neg-view", "aliased", "missing-key"],
)
@pytest.mark.parametrize("implementation", ["auto", "torch"])
def test_step_checks_every_group_before_the_first_write(breakage, implementation):
    opt, a, b = _two_groups(implementation)
    opt.step()
    breakage(opt.state[b])
    before = _snapshot(opt, [a, b])
    steps = (opt.state[a]["step"], opt.state[a]["beta1_power"])
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]"):
        opt.step()
    _assert_unchanged(opt, [a, b], before)
    assert (opt.state[a]["step"], opt.state[a]["beta1_power"]) == steps


def test_aliased_state_is_refused_before_any_group_is_written():
    opt, a, b = _two_groups()
    opt.step()
    opt.state[b]["v"] = opt.state[b]["m"]
    before = _snapshot(opt, [a, b])
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    _assert_unchanged(opt, [a, b], before)


def test_a_failed_first_step_creates_no_state():
    opt, _, _ = _two_groups()
    opt.param_groups[1]["lr"] = "0.1"  # set behind the constructor's back
    with pytest.raises(TypeError, match=r"param_groups\[1\].*lr"):
        opt.step()
    assert len(opt.state) == 0


def test_a_negated_gradient_view_is_read_as_its_values():
    opt, a, b = _two_groups()
    ref, ra, rb = _two_groups()
    b.grad = torch._neg_view(b.grad.neg())  # the same values, behind a negative bit
    assert b.grad.is_neg()
    opt.step()
    ref.step()
    assert torch.equal(a, ra) and torch.equal(b, rb)


# --------------------------------------------------------------------------- 2. locks on memory

SIZE, STEPS = 400_000, 40


def _locked_threads(make_views):
    """Two threads, each with its own arrays over one memory, STEPS locked steps each."""
    rng = np.random.default_rng(7)
    start = rng.standard_normal((4, SIZE)).astype(np.float32)
    start[2:] = np.abs(start[2:])
    grad = rng.standard_normal(SIZE).astype(np.float32)
    expected = [row.copy() for row in start]
    for _ in range(2 * STEPS):
        apply(*expected, *HYPER, grad)

    views_per_thread, keep = make_views(start)
    barrier = threading.Barrier(2)
    errors = []

    def work(views):
        try:
            barrier.wait()
            for _ in range(STEPS):
                apply(*views, *HYPER, grad, use_locking=True)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(v,)) for v in views_per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    final = views_per_thread[0]
    for got, want in zip(final, expected, strict=True):
        assert_bits_equal(np.array(got), want)
    assert locks.held_ranges() == []  # nothing left behind
    del keep


def _frombuffer(start):
    buffers = [bytearray(row.tobytes()) for row in start]
    return [[np.frombuffer(b, np.float32) for b in buffers] for _ in range(2)], buffers


def _memoryview(start):
    buffers = [bytearray(row.tobytes()) for row in start]
    views = [memoryview(b) for b in buffers]
    return [[np.asarray(v).view(np.float32) for v in views] for _ in range(2)], buffers


def _shared_memory(start):
    blocks = [shared_memory.SharedMemory(create=True, size=row.nbytes) for row in start]
    for block, row in zip(blocks, start, strict=True):
        np.ndarray(row.shape, np.float32, buffer=block.buf)[:] = row
    views = [
        [
            np.ndarray(row.shape, np.float32, buffer=block.buf)
            for block, row in zip(blocks, start, strict=True)
        ]
        for _ in range(2)
    ]
    return views, _Closing(blocks)


class _Closing:
    def __init__(self, blocks):
        self.blocks = blocks

    def __del__(self):
        for block in self.blocks:
            block.unlink()


def _torch_numpy(start):
    tensors = [torch.from_numpy(row.copy()) for row in start]
    return [[t.numpy() for t in tensors] for _ in range(2)], tensors


@pytest.mark.parametrize(
    "make_views",
    [_frombuffer, _memoryview, _shared_memory, _torch_numpy],
    ids=["frombuffer", "memoryview", "shared_memory", "torch-numpy"],
)
def test_locking_serializes_views_with_no_common_base(make_views):
    _locked_threads(make_views)


@pytest.mark.parametrize(
    "make_views",
    [_frombuffer, _memoryview, _shared_memory, _torch_numpy],
    ids=["frombuffer", "mv", "shm", "torch"],
)
def test_views_made_separately_share_the_lock(make_views):
    start = np.zeros((4, 8), np.float32)
    (first, second), keep = make_views(start)
    assert first[0] is not second[0]  # two arrays: no common ndarray base
    with contract.lock_for(first[0]):
        assert not contract.lock_for(second[0]).acquire(blocking=False)
        assert not contract.lock_for(second[0][3:]).acquire(blocking=False)
        other = contract.lock_for(second[1])  # another buffer
        assert other.acquire(blocking=False)
        other.release()
    again = contract.lock_for(second[0])
    assert again.acquire(blocking=False)  # free once the first holder let go
    assert len(locks.held_ranges()) == 1
    again.release()
    assert locks.held_ranges() == []  # the registry holds only what is held
    del keep


def test_multi_tensor_locking_takes_all_locks_at_once_without_deadlock():
    (a, *rest_a), grad = _state(1000, seed=1)
    (b, *rest_b), _ = _state(1000, seed=2)
    lists_ab = [[a, b], *[[x, y] for x, y in zip(rest_a, rest_b, strict=True)]]
    lists_ba = [[b, a], *[[y, x] for x, y in zip(rest_a, rest_b, strict=True)]]

    def work(lists):
        for _ in range(300):
            apply_many(*lists, *HYPER, [grad, grad], use_locking=True)

    threads = [threading.Thread(target=work, args=(lists,)) for lists in (lists_ab, lists_ba)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert locks.held_ranges() == []


# --------------------------------------------------------------------------- 3. O(n log n) overlap


def test_many_tiny_tensors_with_one_strided_stay_fast(monkeypatch):
    count = 16_000
    lists = [[np.zeros(3, np.float32) for _ in range(count)] for _ in range(5)]
    lists[0][count // 2] = np.zeros(6, np.float32)[::2]
    calls = []
    exact = np.shares_memory
    monkeypatch.setattr(np, "shares_memory", lambda *a, **k: calls.append(1) or exact(*a, **k))
    started = time.perf_counter()
    apply_many(*lists[:4], *HYPER, lists[4])
    elapsed = time.perf_counter() - started
    assert len(calls) <= 4  # only pairs whose byte bounds intersect are tested exactly
    assert elapsed < 2.0, f"{elapsed:.2f} s for {count} tensors: not O(n log n)"


def test_find_overlap_tests_only_intersecting_bounds(monkeypatch):
    base = np.zeros(1000, np.float32)
    arrays = [base[i * 10 : i * 10 + 10] for i in range(100)] + [base[5:15:2]]
    calls = []
    exact = np.shares_memory
    monkeypatch.setattr(np, "shares_memory", lambda *a, **k: calls.append(1) or exact(*a, **k))
    assert overlap.find_overlap(arrays) == (0, 100)
    assert len(calls) <= 2
    assert overlap.find_overlap(arrays, [False] * 100 + [True]) == (0, 100)
    assert overlap.find_overlap(arrays[:100]) is None


# --------------------------------------------------------------------------- 4. overflow by rule


@pytest.mark.parametrize("lr", [1e5, 1e39, np.float64(1e39), 100_000, np.float32(1e5)])
def test_overflow_to_float16_is_silent_inf(each_backend, lr):
    var, m, v, vhat = (np.zeros(3, np.float16) for _ in range(4))
    grad = np.ones(3, np.float16)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        apply(var, m, v, vhat, 0.9, 0.999, lr, 0.9, 0.999, 1e-8, grad)
        assert np.all(var == -np.inf)
        lists = [[np.zeros(3, np.float16)] for _ in range(4)]
        apply_many(*lists, 0.9, 0.999, lr, 0.9, 0.999, 1e-8, [grad])
        assert np.all(lists[0][0] == -np.inf)


def test_the_float16_fast_path_rounds_as_numpy_at_every_edge():
    edges = [2.0**-25, 2.0**-24, 1e-8, -1e-8, 3e-8, 6e-8, 1e-5, 2.0**-14, 65504.0, 65519.0]
    edges += [65520.0, 1e5, -1e5, 0.0, -0.0, 0.1, 3.0e38]
    edges += [float(np.nextafter(x, d)) for x in (2.0**-25, 2.0**-14) for d in (0, 1)]
    for value in edges:
        with np.errstate(all="ignore"):
            want = np.float32(value).astype(np.float16)
        with np.errstate(all="raise"):
            got = contract.fast_hyper((value, 0.5, 0.5, 0.5, 0.5, 0.5), np.dtype(np.float16))
        assert got is not None and got[0, 0].tobytes() == want.tobytes(), value


def test_integer_tensors_that_overflow_float16_are_silent_inf(each_backend):
    var, m, v, vhat = (np.zeros(3, np.float16) for _ in range(4))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        lr = np.array(70000, np.int32)
        apply(var, m, v, vhat, 0.9, 0.999, lr, 0.9, 0.999, 1e-8, np.full(3, 70000, np.int32))
    assert np.isinf(m).all()


def test_optimizers_convert_silently():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    p.grad = torch.ones(3, dtype=torch.float16)
    opt = AMSGradV2([p], lr=1e5, eps=1e-3)
    with pytest.raises(ValueError, match=r"lr: 100000.0 overflows float16"):
        opt.step()  # an lr that is inf in the parameters' dtype is refused by name
    opt.param_groups[0]["lr"] = 6e4  # float16 holds it; the second update overflows
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for _ in range(3):
            opt.step()
    assert torch.isinf(p).all()


# --------------------------------------------------------------------------- 5. ndarray subclasses


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_matrix_is_taken_as_its_array():
    state, grad = _state(12)
    expected = [a.copy() for a in state]
    apply(*expected, 0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8, grad)
    apply(*state, 0.9, 0.999, np.matrix([[1e-3]], np.float64).astype(np.float32), 0.9, 0.999,
          1e-8, grad)  # fmt: skip
    for got, want in zip(state, expected, strict=True):
        assert_bits_equal(got, want)
    state2, grad2 = _state((1, 3))
    expected2 = [a.copy() for a in state2]
    apply(*expected2, *HYPER, grad2)
    apply(*state2, *HYPER, np.matrix(grad2))
    for got, want in zip(state2, expected2, strict=True):
        assert_bits_equal(got, want)


def test_a_masked_array_is_refused_by_name():
    state, grad = _state(3)
    with pytest.raises(TypeError, match=r"grad \(the 11th input\).*masked"):
        apply(*state, *HYPER, np.ma.masked_array(grad, [0, 1, 0]))


# --------------------------------------------------------------------------- 6. bounded overlap


def _hard_pair():
    """A var that passes every other check and a grad whose overlap with it np.shares_memory
    cannot decide within MAX_WORK (a subset-sum over 21 axes of length 2)."""
    dims = 21
    buffer = np.zeros(2**dims * 4, np.float16)
    var = buffer[::2][: 2**dims].reshape((2,) * dims)
    rng = np.random.default_rng(1)
    for _ in range(50):
        strides = tuple(int(x) * 2 for x in rng.integers(1, 2**18, dims))
        grad = as_strided(buffer[1:], shape=(2,) * dims, strides=strides, writeable=False)
        try:
            np.shares_memory(var, grad, max_work=overlap.MAX_WORK)
        except np.exceptions.TooHardError:
            return var, grad
    pytest.skip("no layout too hard for MAX_WORK found")


def test_an_undecidable_overlap_is_refused_quickly_and_names_both():
    var, grad = _hard_pair()
    m, v, vhat = (np.zeros(var.shape, np.float16) for _ in range(3))
    before = var.copy()
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"var and grad may share memory.*too long"):
        apply(var, m, v, vhat, *HYPER, grad)
    with pytest.raises(ValueError, match=r"vars\[0\] and grads\[0\] may share memory"):
        apply_many([var], [m], [v], [vhat], *HYPER, [grad])
    assert time.perf_counter() - started < 5
    assert_bits_equal(var, before)
    assert not m.any()


# --------------------------------------------------------------------------- 7. over-strict


def test_one_read_only_grad_for_two_tensors():
    (a, *rest_a), grad = _state(5, seed=1)
    (b, *rest_b), _ = _state(5, seed=2)
    grad.flags.writeable = False
    expected = [[x.copy() for x in (a, *rest_a)], [x.copy() for x in (b, *rest_b)]]
    for state in expected:
        apply(*state, *HYPER, grad)
    apply_many(*[[x, y] for x, y in zip((a, *rest_a), (b, *rest_b), strict=True)], *HYPER,
               [grad, grad])  # fmt: skip
    for got, want in zip((a, *rest_a, b, *rest_b), [*expected[0], *expected[1]], strict=True):
        assert_bits_equal(got, want)


def test_stride_zero_grads_in_the_multi_tensor_call():
    one = np.ones(1, np.float32)
    grads = [np.broadcast_to(one, (3,)), np.broadcast_to(one, (4,))]
    states = [_state(3, seed=3)[0], _state(4, seed=4)[0]]
    expected = [[x.copy() for x in s] for s in states]
    for state, grad in zip(expected, grads, strict=True):
        apply(*state, *HYPER, np.ascontiguousarray(grad))
    apply_many(*[[s[k] for s in states] for k in range(4)], *HYPER, grads)
    for state, want in zip(states, expected, strict=True):
        for got, w in zip(state, want, strict=True):
            assert_bits_equal(got, w)


def test_a_grad_sharing_memory_with_a_state_array_is_still_refused():
    (a, *rest_a), grad = _state(5, seed=1)
    (b, *rest_b), _ = _state(5, seed=2)
    lists = [[x, y] for x, y in zip((a, *rest_a), (b, *rest_b), strict=True)]
    before = [x.copy() for x in (a, b)]
    with pytest.raises(ValueError, match=r"(vars\[1\] and grads\[\d\]|grads\[\d\] and vars\[1\])"):
        apply_many(*lists, *HYPER, [grad, b])
    with pytest.raises(ValueError, match=r"ms\[0\].*share memory"):
        apply_many(*lists[:3], [rest_a[0], rest_b[2]], *HYPER, [grad, grad])
    assert_bits_equal(a, before[0])
    assert_bits_equal(b, before[1])


def test_longlong_is_named_as_itself():
    state, grad = _state(3)
    with pytest.raises(TypeError) as info:
        apply(*state, 0.9, 0.999, np.longlong(1), 0.9, 0.999, 1e-8, grad)
    text = str(info.value)
    assert "a NumPy longlong scalar" in text and "got a NumPy int64 scalar" not in text
    apply(*state, 0.9, 0.999, np.int64(0), 0.9, 0.999, 1e-8, grad)  # int64 itself is taken


def test_byte_swapped_grads_and_hypers_are_converted_state_is_refused():
    state, grad = _state(6)
    expected = [a.copy() for a in state]
    apply(*expected, 0.9, 0.999, np.float32(1e-3), 0.9, 0.999, 1e-8, grad)
    swapped_lr = np.array(1e-3, np.float32).astype(">f4")
    apply(*state, 0.9, 0.999, swapped_lr, 0.9, 0.999, 1e-8, grad.astype(">f4"))
    for got, want in zip(state, expected, strict=True):
        assert_bits_equal(got, want)
    lists = [[a] for a in state]
    apply_many(*lists, *HYPER, [grad.astype(">f4")])
    swapped = [a.astype(">f4") for a in state]
    with pytest.raises(TypeError, match=r"var \(the 1st input\).*byte order.*>f4"):
        apply(*swapped, *HYPER, grad)
    with pytest.raises(TypeError, match=r"m \(the 2nd input\).*byte order"):
        apply(state[0], swapped[1], *state[2:], *HYPER, grad)


# --------------------------------------------------------------------------- 8. degenerate values


def test_bfloat16_with_default_betas_is_refused_with_advice():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    p.grad = torch.ones(3, dtype=torch.bfloat16)
    opt = AMSGradV2([p], implementation="torch")
    with pytest.raises(
        ValueError,
        match=r"param_groups\[0\]\['params'\]\[0\].*betas\[1\] \(beta2\): 0\.999 rounds to 1 in "
        r"bfloat16.*master_weights=True",
    ):
        opt.step()
    assert torch.equal(p, torch.ones(3, dtype=torch.bfloat16)) and len(opt.state) == 0
    with pytest.raises(TypeError, match="float32 master weights") as info:
        AMSGradV2([p])
    assert "0.999 rounds to 1.0" in str(info.value)


@pytest.mark.parametrize("implementation", ["kernel", "torch"])
def test_float16_with_eps_1e_8_is_refused(implementation):
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    p.grad = torch.zeros(3, dtype=torch.float16)
    opt = AMSGradV2([p], eps=1e-8, implementation=implementation)
    with pytest.raises(ValueError, match=r"eps: 1e-08 rounds to 0 in float16"):
        opt.step()
    assert torch.equal(p, torch.ones(3, dtype=torch.float16))


def test_float32_beta_that_rounds_to_one_is_refused():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = AMSGradV2([p], betas=(0.9, 1 - 1e-9))
    with pytest.raises(ValueError, match=r"betas\[1\] \(beta2\).*rounds to 1 in float32"):
        opt.step()


def test_the_operator_itself_stays_mindspore_exact():
    var, m, v, vhat = (np.zeros(3, np.float16) for _ in range(4))
    with np.errstate(all="ignore"):
        apply(var, m, v, vhat, 0.9, 0.999, 1e-3, 0.9, 0.999, 1e-8, np.zeros(3, np.float16))
    assert np.isnan(var).all()  # 0 / (0 + 0), as MindSpore computes it


def test_optax_refuses_float16_with_eps_1e_8_at_init():
    jnp = pytest.importorskip("jax.numpy")
    from amsgrad.optax import amsgrad_v2

    tx = amsgrad_v2(1e-3)
    with pytest.raises(ValueError, match=r"\['w'\].*eps: 1e-08 rounds to 0 in float16"):
        tx.init({"w": jnp.zeros(3, jnp.float16)})
    tx.init({"w": jnp.zeros(3, jnp.float32)})
    amsgrad_v2(1e-3, eps=1e-3).init({"w": jnp.zeros(3, jnp.float16)})


# --------------------------------------------------------------------------- 9. foreign state


def test_a_torch_adam_state_dict_without_amsgrad_is_refused_at_load():
    """amsgrad=True state dicts are converted (tests/test_torch_options.py); without
    max_exp_avg_sq there is no vhat: refused, and nothing changes."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    adam = torch.optim.Adam(model.parameters(), amsgrad=False)
    model(torch.randn(4, 3)).sum().backward()
    adam.step()
    opt = AMSGradV2(model.parameters())
    opt.step()
    before = _snapshot(opt, list(model.parameters()))
    groups = copy.deepcopy(opt.param_groups)
    with pytest.raises(ValueError, match=r"torch\.optim\.Adam state without 'max_exp_avg_sq'"):
        opt.load_state_dict(adam.state_dict())
    _assert_unchanged(opt, list(model.parameters()), before)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]


def test_a_state_with_missing_keys_or_wrong_shapes_is_refused_at_load():
    opt, _, _ = _two_groups()
    opt.step()
    saved = opt.state_dict()
    broken = copy.deepcopy(saved)
    del broken["state"][1]["vhat"]
    with pytest.raises(ValueError, match=r"param_groups\[1\].*missing keys 'vhat'"):
        opt.load_state_dict(broken)
    broken = copy.deepcopy(saved)
    broken["state"][1]["m"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"'m' has shape \(7,\)"):
        opt.load_state_dict(broken)
    opt.load_state_dict(saved)  # its own state loads
    opt.step()
