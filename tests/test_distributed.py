"""Sharded training: ZeRO over 2 gloo processes (PyTorch) and 2 CPU devices (JAX), bit-exact.

* PyTorch: ``torch.distributed.optim.ZeroRedundancyOptimizer(optimizer_class=AMSGradV2)`` on two
  processes (loopback, gloo): each rank keeps the AMSGrad state of its own shard of the
  parameters, updates that shard, and broadcasts it. Data parallel: each rank computes the
  gradient of its half of the batch, the halves are summed (all_reduce) and halved. The result
  equals, bit for bit, the same training in one process with AMSGradV2.
* PyTorch FSDP2 (``fully_shard``): parameters, gradients and AMSGrad state are DTensors sharded
  by rows; AMSGradV2 updates each rank's local shard. Bit-equal to one process as well.
* JAX: the jitted update on arrays sharded over 2 CPU devices equals the unsharded one (run in a
  subprocess, since XLA_FLAGS must be set before JAX starts).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORLD = 2
STEPS = 12
LR, BETAS = 1e-2, (0.9, 0.99)


def _model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 12),
        torch.nn.Tanh(),
        torch.nn.Linear(12, 12),
        torch.nn.Tanh(),
        torch.nn.Linear(12, 1),
    )


def _data():
    import torch

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 5, generator=gen)
    y = torch.cos(x.sum(dim=1, keepdim=True))
    return x, y


def _loss(model, x, y):
    return ((model(x) - y) ** 2).mean()


def _zero_worker(rank: int, port: int, out_dir: str) -> None:
    """One rank of the ZeRO run (started by torch.multiprocessing.spawn)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    from amsgrad.torch import AMSGradV2

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        model = _model()
        x, y = _data()
        x_local, y_local = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
        opt = ZeroRedundancyOptimizer(
            model.parameters(), optimizer_class=AMSGradV2, lr=LR, betas=BETAS
        )
        for _ in range(STEPS):
            opt.zero_grad()
            _loss(model, x_local, y_local).backward()
            for p in model.parameters():
                dist.all_reduce(p.grad)  # sum of the two halves' gradients
                p.grad.div_(WORLD)
            opt.step()  # updates this rank's shard, then broadcasts every shard
        local = opt.optim  # the AMSGradV2 instance of this rank
        owned = sorted(index for index, p in enumerate(model.parameters()) if local.state.get(p))
        opt.consolidate_state_dict(to=0)
        result = {
            "owned": owned,
            "params": [p.detach().clone() for p in model.parameters()],
        }
        if rank == 0:
            result["state_dict"] = opt.state_dict()
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _fsdp_worker(rank: int, port: int, out_dir: str, implementation: str) -> None:
    """One rank of an FSDP2 (``fully_shard``) run: parameters, gradients and state sharded."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from amsgrad.torch import AMSGradV2

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        model = _model()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        x, y = _data()
        x_local, y_local = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
        opt = AMSGradV2(model.parameters(), lr=LR, betas=BETAS, implementation=implementation)
        for _ in range(STEPS):
            opt.zero_grad()
            _loss(model, x_local, y_local).backward()  # reduce-scatter averages the halves
            opt.step()  # each rank updates its shard of every parameter
        first = next(model.parameters())
        result = {
            "local_rows": [p.to_local().shape[0] for p in model.parameters()],
            "state_is_sharded": type(opt.state[first]["m"]).__name__ == "DTensor",
            "params": [p.full_tensor().detach().clone() for p in model.parameters()],
        }
        torch.save(result, Path(out_dir) / f"fsdp_{implementation}_rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: What a rank says when its rendezvous port was taken by another process between
#: _free_port() and the bind (the port is only reserved while probed): then a new port is tried.
_PORT_TAKEN = ("address already in use", "eaddrinuse", "connection refused")


def _spawn(mp, worker, *args):
    """``mp.spawn(worker, (port, *args))`` on WORLD ranks; up to 3 ports when one was taken."""
    for attempt in range(3):
        try:
            mp.spawn(worker, args=(_free_port(), *args), nprocs=WORLD, join=True)
            return
        except Exception as error:  # torch.multiprocessing.ProcessRaisedException and others
            text = str(error).lower()
            if attempt == 2 or not any(mark in text for mark in _PORT_TAKEN):
                raise


def _single_process_reference():
    """The same training in one process: AMSGradV2 on the averaged half-batch gradients."""

    from amsgrad.torch import AMSGradV2

    model = _model()
    x, y = _data()
    opt = AMSGradV2(model.parameters(), lr=LR, betas=BETAS)
    halves = list(zip(x.chunk(WORLD), y.chunk(WORLD), strict=True))
    for _ in range(STEPS):
        grads = []
        for x_half, y_half in halves:
            opt.zero_grad()
            _loss(model, x_half, y_half).backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for p, g0, g1 in zip(model.parameters(), *grads, strict=True):
            p.grad = (g0 + g1).div_(WORLD)
        opt.step()
    return model, opt


def test_zero_redundancy_optimizer_two_processes_bit_equal_to_one(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the same intra-op setting as the workers
    try:
        _spawn(mp, _zero_worker, str(tmp_path))
        model, opt = _single_process_reference()
    finally:
        torch.set_num_threads(previous)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    params = list(model.parameters())
    # Each rank kept the optimizer state of its own shard only; together, all of them.
    owned = [set(result["owned"]) for result in ranks]
    assert all(owned) and not owned[0] & owned[1]
    assert owned[0] | owned[1] == set(range(len(params)))
    # Parameters: equal on both ranks, and bit-equal to the single-process run.
    for result in ranks:
        for got, want in zip(result["params"], params, strict=True):
            assert torch.equal(got.view(torch.int32), want.detach().view(torch.int32))
    # The consolidated optimizer state equals the single-process optimizer's, bit for bit.
    state = ranks[0]["state_dict"]["state"]
    reference = opt.state_dict()["state"]
    assert sorted(state) == sorted(reference)
    for index, expected in reference.items():
        got = state[index]
        assert got["step"] == expected["step"] == STEPS
        assert got["beta1_power"] == expected["beta1_power"]
        assert got["beta2_power"] == expected["beta2_power"]
        for name in ("m", "v", "vhat"):
            assert torch.equal(got[name].view(torch.int32), expected[name].view(torch.int32))


@pytest.mark.parametrize("implementation", ["kernel", "torch"])
def test_fsdp2_fully_shard_two_processes_bit_equal_to_one(tmp_path, implementation):
    torch = pytest.importorskip("torch")
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        pytest.skip("this PyTorch has no FSDP2 (torch.distributed.fsdp.fully_shard)")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _spawn(mp, _fsdp_worker, str(tmp_path), implementation)
        model, _ = _single_process_reference()
    finally:
        torch.set_num_threads(previous)
    ranks = [
        torch.load(tmp_path / f"fsdp_{implementation}_rank{r}.pt", weights_only=True)
        for r in range(WORLD)
    ]
    for result in ranks:
        assert result["state_is_sharded"]
        assert result["local_rows"][0] == 12 // WORLD  # the first weight: 12 rows, split
        for got, want in zip(result["params"], model.parameters(), strict=True):
            assert torch.equal(got.view(torch.int32), want.detach().view(torch.int32))


_JAX_SHARDED = textwrap.dedent(
    """
    import numpy as np
    import jax, jax.numpy as jnp, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import amsgrad
    from amsgrad.jax import apply_adam_with_amsgrad_v2 as apply
    from amsgrad.optax import amsgrad_v2

    assert len(jax.devices()) == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("shard",))
    rows = NamedSharding(mesh, P("shard"))
    rng = np.random.default_rng(0)
    var, m, grad = (rng.standard_normal((8, 300)).astype(np.float32) for _ in range(3))
    v, vhat = (np.abs(rng.standard_normal((8, 300))).astype(np.float32) for _ in range(2))
    hyper = (np.float32(0.9) ** 3, np.float32(0.999) ** 3, 1e-3, 0.9, 0.999, 1e-8)

    step = jax.jit(lambda var, m, v, vhat, g: apply(var, m, v, vhat, *hyper, g))
    sharded = [jax.device_put(a, rows) for a in (var, m, v, vhat, grad)]
    assert sharded[0].sharding == rows
    assert len(sharded[0].addressable_shards) == 2
    out_sharded = step(*sharded)
    out_single = step(*(jax.device_put(a, jax.devices()[0]) for a in (var, m, v, vhat, grad)))
    want = [a.copy() for a in (var, m, v, vhat)]
    amsgrad.apply_adam_with_amsgrad_v2(*want, *hyper, grad)
    for a, b, w in zip(out_sharded, out_single, want):
        assert a.sharding.is_equivalent_to(rows, a.ndim), a.sharding
        assert np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))
        assert np.array_equal(np.asarray(a).view(np.uint32), w.view(np.uint32))

    # Optax: parameters, gradients and AMSGrad state sharded by rows (each device keeps the
    # state of its own rows), 15 jitted updates; the same as on one device.
    tx = amsgrad_v2(optax.linear_schedule(1e-2, 1e-3, 15), b1=0.8, b2=0.99)
    grads = [rng.standard_normal((8, 300)).astype(np.float32) for _ in range(15)]

    @jax.jit
    def update(params, state, g):
        updates, state = tx.update({"w": g}, state)
        return optax.apply_updates(params, updates), state

    def train(put):
        params = {"w": put(var)}
        state = tx.init(params)
        for g in grads:
            params, state = update(params, state, put(g))
        return params, state

    p_sharded, s_sharded = train(lambda a: jax.device_put(a, rows))
    p_single, s_single = train(lambda a: jax.device_put(a, jax.devices()[0]))
    assert s_sharded.m["w"].sharding.is_equivalent_to(rows, 2)
    for a, b in zip(jax.tree.leaves((p_sharded, s_sharded)), jax.tree.leaves((p_single, s_single))):
        a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    print("SHARDED-OK")
    """
)


def test_jax_update_sharded_over_two_cpu_devices_equals_unsharded():
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    import amsgrad

    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    src = str(Path(amsgrad.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", _JAX_SHARDED],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SHARDED-OK" in done.stdout
