"""Record ``mindspore.nn.Adam(use_amsgrad=True)`` training runs, and MindSpore checkpoints.

Run with a Python that has mindspore==2.10.0 installed (its own virtual environment), from the
repository root::

    /work/msenv/bin/python tests/golden/generate_replay.py

It writes ``tests/golden/replay/``:

* ``manifest.json``: the MindSpore version, and per configuration its id, the ``nn.Adam``
  arguments (``kwargs``; groups as lists of parameter names), the parameter names in the
  optimizer's order with their shapes and dtypes, the number of steps, and the arrays' keys;
  plus ``checkpoints``: the checkpoint files MindSpore wrote and those this project wrote that
  MindSpore read back (with sha256 checksums and the outcome);
* ``<config>.npz`` per configuration, arrays stacked over steps (index 0 = before the first
  step): ``param/<name>``, ``moment1/<name>``, ``moment2/<name>``, ``vhat/<name>`` with shape
  ``(steps + 1, *shape)``; ``grad/<name>`` ``(steps, *shape)``: the gradients fed at each step;
  ``beta1_power``, ``beta2_power`` float32 ``(steps + 1,)``; ``global_step`` int32
  ``(steps + 1,)``; ``lr/<group>`` float32 ``(steps,)``: what ``optimizer.get_lr()`` returned
  before each step (one column per lr group, ``lr/0`` when not grouped);
* ``ckpt/``: checkpoint files (see ``checkpoints`` in the manifest).

The gradients are fixed seeded random arrays fed straight to the optimizer
(``optimizer(gradients)`` in PyNative mode on CPU), so a replay needs no model. Everything is
deterministic (fixed seeds, fixed zip timestamps): running it again rewrites the same files,
but for ``ckpt/optimizer_encrypted.ckpt`` (AES-GCM draws a random nonce; its checksum changes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "replay"
ROOT = HERE.parent.parent
STEPS = 30


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed .npz with fixed timestamps (byte-identical reruns)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            item = io.BytesIO()
            np.lib.format.write_array(item, np.asarray(arrays[key], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, item.getvalue())
    path.write_bytes(buffer.getvalue())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- networks


def build_net(kind: str, dtype_name: str, seed: int):
    """A small network whose parameters are set from a seeded generator."""
    import mindspore as ms
    from mindspore import Tensor, nn

    dtype = getattr(ms, dtype_name)

    class MLP(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Dense(8, 16, dtype=dtype)
            self.fc2 = nn.Dense(16, 4, dtype=dtype)

        def construct(self, x):
            return self.fc2(self.fc1(x))

    class WithNorm(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Dense(8, 16, dtype=dtype)
            self.norm = nn.LayerNorm((16,), dtype=dtype)
            self.fc2 = nn.Dense(16, 4, dtype=dtype)

        def construct(self, x):
            return self.fc2(self.norm(self.fc1(x)))

    net = {"mlp": MLP, "norm": WithNorm}[kind]()
    rng = np.random.default_rng(seed)
    for p in net.trainable_params():
        value = rng.standard_normal(p.shape).astype(np.dtype(dtype_name)) * 0.5
        if p.name.endswith("gamma"):
            value = 1.0 + value * 0.1
        p.set_data(Tensor(value, dtype))
    return net


# --------------------------------------------------------------------------- configurations

LR_LIST = [0.01 * (0.9**i) + 1e-4 * ((i * 7) % 5) for i in range(STEPS)]


def configurations() -> list[dict]:
    """Each: id, net kind, dtype, kwargs (json-able), groups (list of {names, ...}) or None."""
    return [
        {"id": "defaults", "net": "mlp", "dtype": "float32", "kwargs": {}},
        {
            "id": "betas_eps",
            "net": "mlp",
            "dtype": "float32",
            "kwargs": {"learning_rate": 0.03, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6},
        },
        {
            "id": "weight_decay",
            "net": "mlp",
            "dtype": "float32",
            "kwargs": {"learning_rate": 0.01, "weight_decay": 0.01},
        },
        {
            "id": "loss_scale_wd",
            "net": "mlp",
            "dtype": "float32",
            "grad_scale": 37.0,
            "kwargs": {"learning_rate": 0.01, "weight_decay": 0.0007, "loss_scale": 37.0},
        },
        {
            "id": "loss_scale_only",
            "net": "mlp",
            "dtype": "float32",
            "grad_scale": 96.0,
            "kwargs": {"learning_rate": 0.007, "loss_scale": 96.0},
        },
        {
            "id": "groups",
            "net": "norm",
            "dtype": "float32",
            "kwargs": {"learning_rate": 0.01, "weight_decay": 0.02, "loss_scale": 10.0},
            "grad_scale": 10.0,
            "groups": [
                {"names": ["fc1.weight", "fc1.bias"], "lr": 0.05, "weight_decay": 0.003},
                {"names": ["norm.gamma", "norm.beta"]},
                {"names": ["fc2.weight", "fc2.bias"], "weight_decay": 0.0},
                {
                    "order_params": [
                        "fc2.weight",
                        "fc1.weight",
                        "norm.gamma",
                        "fc1.bias",
                        "norm.beta",
                        "fc2.bias",
                    ]
                },
            ],
        },
        {
            "id": "lr_list",
            "net": "mlp",
            "dtype": "float32",
            "kwargs": {"learning_rate": LR_LIST, "weight_decay": 0.001},
        },
        {
            "id": "layernorm_decay_filter",
            "net": "norm",
            "dtype": "float32",
            "kwargs": {"learning_rate": 0.02, "weight_decay": 0.05},
        },
        {
            "id": "dynamic_lr_cosine",
            "net": "mlp",
            "dtype": "float32",
            "kwargs": {
                "learning_rate": {
                    "dynamic_lr": "cosine_decay_lr",
                    "min_lr": 0.0001,
                    "max_lr": 0.02,
                    "total_step": STEPS,
                    "step_per_epoch": 3,
                    "decay_epoch": 10,
                }
            },
        },
        {
            "id": "schedule_polynomial",
            "net": "mlp",
            "dtype": "float32",
            "kwargs": {
                "learning_rate": {
                    "schedule": "PolynomialDecayLR",
                    "learning_rate": 0.02,
                    "end_learning_rate": 0.001,
                    "decay_steps": 20,
                    "power": 0.5,
                }
            },
        },
        {
            "id": "groups_dynamic_lr",
            "net": "mlp",
            "dtype": "float32",
            "kwargs": {"learning_rate": LR_LIST},
            "groups": [
                {"names": ["fc1.weight", "fc1.bias"], "lr": 0.0123},
                {"names": ["fc2.weight", "fc2.bias"]},
            ],
        },
        {
            "id": "float64_wd_loss_scale",
            "net": "mlp",
            "dtype": "float64",
            "grad_scale": 96.0,
            "kwargs": {
                "learning_rate": 0.01,
                "weight_decay": 0.0021,
                "loss_scale": 96.0,
                "beta2": 0.99,
            },
        },
    ]


def make_lr(spec):
    """The ``learning_rate`` argument from its json description."""
    from mindspore import nn

    if isinstance(spec, dict) and "dynamic_lr" in spec:
        args = {k: v for k, v in spec.items() if k != "dynamic_lr"}
        return getattr(nn.dynamic_lr, spec["dynamic_lr"])(**args)
    if isinstance(spec, dict) and "schedule" in spec:
        args = {k: v for k, v in spec.items() if k != "schedule"}
        return getattr(nn, spec["schedule"])(**args)
    return spec


def gradients(config: dict, names: list[str], shapes: dict, dtype: str, seed: int) -> dict:
    """Seeded gradients per step: standard normal, some steps larger (vhat's max matters)."""
    rng = np.random.default_rng(seed)
    scale = config.get("grad_scale", 1.0)
    out = {}
    for name in names:
        g = rng.standard_normal((STEPS, *shapes[name]))
        factor = np.where(np.arange(STEPS) % 7 == 3, 4.0, 0.3)
        g = g * factor.reshape((STEPS,) + (1,) * len(shapes[name])) * scale
        out[name] = g.astype(dtype)
    return out


def make_optimizer(config: dict, seed: int):
    """The network (its parameters drawn from ``seed``) and ``nn.Adam(use_amsgrad=True)`` of one
    configuration."""
    from mindspore import nn

    net = build_net(config["net"], config["dtype"], seed)
    by_name = {p.name: p for p in net.trainable_params()}
    kwargs = dict(config["kwargs"])
    if "learning_rate" in kwargs:
        kwargs["learning_rate"] = make_lr(kwargs["learning_rate"])
    if config.get("groups"):
        params = []
        for group in config["groups"]:
            if "order_params" in group:
                params.append({"order_params": [by_name[n] for n in group["order_params"]]})
                continue
            entry = {k: v for k, v in group.items() if k != "names"}
            entry["params"] = [by_name[n] for n in group["names"]]
            params.append(entry)
    else:
        params = net.trainable_params()
    return net, nn.Adam(params, use_amsgrad=True, **kwargs)


def run_config(config: dict, seed: int) -> tuple[dict, dict, object]:
    """Run one configuration; returns (manifest entry, arrays, the optimizer)."""
    import mindspore as ms
    from mindspore import Tensor

    _, opt = make_optimizer(config, seed)
    names = [p.name for p in opt.parameters]
    shapes = {p.name: tuple(p.shape) for p in opt.parameters}
    grads = gradients(config, names, shapes, config["dtype"], seed + 1)

    rec: dict[str, list] = {}

    def record() -> None:
        for p, m1, m2, vh in zip(opt.parameters, opt.moment1, opt.moment2, opt.vhat, strict=True):
            rec.setdefault(f"param/{p.name}", []).append(p.asnumpy().copy())
            rec.setdefault(f"moment1/{p.name}", []).append(m1.asnumpy().copy())
            rec.setdefault(f"moment2/{p.name}", []).append(m2.asnumpy().copy())
            rec.setdefault(f"vhat/{p.name}", []).append(vh.asnumpy().copy())
        rec.setdefault("beta1_power", []).append(opt.beta1_power.asnumpy().copy())
        rec.setdefault("beta2_power", []).append(opt.beta2_power.asnumpy().copy())
        rec.setdefault("global_step", []).append(opt.global_step.asnumpy().copy().reshape(()))

    record()
    for t in range(STEPS):
        try:
            lr = opt.get_lr()
        except SystemError:
            # MindSpore 2.10's first Gather on the CPU sometimes trips over a lazily imported
            # module built for NumPy 1.x (an ImportError it reports as SystemError); the
            # second call succeeds and reads the same step.
            lr = opt.get_lr()
        lrs = lr if isinstance(lr, tuple) else (lr,)
        for i, value in enumerate(lrs):
            rec.setdefault(f"lr/{i}", []).append(np.asarray(value.asnumpy()).reshape(()))
        opt(tuple(Tensor(grads[n][t]) for n in names))
        record()
    arrays = {k: np.stack(v) for k, v in rec.items()}
    arrays.update({f"grad/{n}": g for n, g in grads.items()})
    for key, value in arrays.items():
        assert np.all(np.isfinite(value)), (config["id"], key)
    entry = {
        "id": config["id"],
        "net": config["net"],
        "dtype": config["dtype"],
        "steps": STEPS,
        "kwargs": config["kwargs"],
        "groups": config.get("groups"),
        "grad_scale": config.get("grad_scale", 1.0),
        "names": names,
        "shapes": {n: list(s) for n, s in shapes.items()},
        "lr_groups": sum(1 for k in arrays if k.startswith("lr/")),
        "file": f"{config['id']}.npz",
    }
    del ms
    return entry, arrays, opt


def refused() -> list[dict]:
    """What nn.Adam(use_amsgrad=True) refuses on the CPU: float16 parameters, and gradient
    centralization (its Centralization kernel exists on Ascend only)."""
    import mindspore as ms
    from mindspore import Tensor, nn

    def attempt(what: str, dtype, wd: float, gc: bool) -> dict:
        net = nn.Dense(16, 16, dtype=dtype)
        params = (
            [{"params": net.trainable_params(), "grad_centralization": True}]
            if gc
            else (net.trainable_params())
        )
        opt = nn.Adam(params, learning_rate=0.01, use_amsgrad=True, weight_decay=wd)
        grads = tuple(Tensor(np.ones(p.shape), dtype) for p in opt.parameters)
        try:
            opt(grads)
            result = {"kind": "ok"}
        except Exception as e:  # recorded, not raised
            text = str(e)
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "----" not in ln]
            first = lines[0] if lines else ""
            message = next((ln for ln in lines if "Unsupported op" in ln), first)
            result = {"kind": "error", "type": type(e).__name__, "message": message[:400]}
        return {"case": what, "dtype": str(dtype), "weight_decay": wd, "result": result}

    return [
        attempt("float16 parameters", ms.float16, 0.0, False),
        attempt("float16 parameters, weight decay", ms.float16, 0.01, False),
        attempt("grad_centralization on the CPU", ms.float32, 0.0, True),
    ]


# --------------------------------------------------------------------------- checkpoints


def checkpoints(opt, workdir: Path) -> list[dict]:
    """MindSpore writes checkpoints; this project's writer writes some that MindSpore reads."""
    import mindspore as ms

    sys.path.insert(0, str(ROOT / "src"))
    from amsgrad.adapters import mindspore_checkpoint as mc

    ckdir = OUT / "ckpt"
    ckdir.mkdir(exist_ok=True)
    entries = []

    def ms_wrote(name: str, **kwargs) -> Path:
        path = ckdir / name
        if path.exists():
            os.chmod(path, 0o644)
            path.unlink()
        ms.save_checkpoint(opt, str(path), **kwargs)
        os.chmod(path, 0o644)
        return path

    def expected(path: Path, fmt: str, key: bytes | None = None) -> dict[str, np.ndarray]:
        loaded = ms.load_checkpoint(str(path), format=fmt, **({"dec_key": key} if key else {}))
        return {k: v.asnumpy() for k, v in loaded.items()}

    arrays: dict[str, np.ndarray] = {}
    for fname, fmt, kwargs in (
        ("optimizer.ckpt", "ckpt", {}),
        ("optimizer.safetensors", "safetensors", {"format": "safetensors"}),
        ("optimizer_crc.ckpt", "ckpt", {"crc_check": True}),
    ):
        path = ms_wrote(fname, **kwargs)
        got = expected(path, fmt)
        for k, v in got.items():
            arrays[f"{fname}/{k}"] = v
        entries.append(
            {
                "file": f"ckpt/{fname}",
                "writer": "mindspore",
                "format": fmt,
                "names": sorted(got),
                "sha256": sha256(path),
            }
        )
    # An encrypted checkpoint: this project cannot read it and must say so.
    enc = ms_wrote("optimizer_encrypted.ckpt", enc_key=b"0123456789abcdef", enc_mode="AES-GCM")
    entries.append(
        {
            "file": "ckpt/optimizer_encrypted.ckpt",
            "writer": "mindspore",
            "format": "ckpt",
            "encrypted": True,
            "sha256": sha256(enc),
        }
    )

    # This project's writer, read back by MindSpore.
    ours = {
        "w32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "w64": np.linspace(-1, 1, 10).reshape(2, 5),
        "h16": (np.arange(6, dtype=np.float16) - 2.5) / 3,
        "scalar": np.array(0.125, dtype=np.float32),
        "step": np.array([7], dtype=np.int32),
        "i64": np.array([[1, -2], [3, 2**40]], dtype=np.int64),
        "u8": np.arange(5, dtype=np.uint8),
        "flag": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    ours = dict(sorted(ours.items()))  # the order the tests rebuild from checkpoints.npz
    for k, v in ours.items():
        arrays[f"ours/{k}"] = v
    for fmt in ("ckpt", "safetensors"):
        path = workdir / f"ours.{fmt}"
        mc.save_checkpoint(ours, path)
        try:
            got = expected(path, fmt)
            same = set(got) == set(ours) and all(
                got[k].dtype == ours[k].dtype
                and got[k].shape == ours[k].shape
                and got[k].tobytes() == ours[k].tobytes()
                for k in ours
            )
            result = {"read_back_exact": bool(same)}
            if not same:
                result["detail"] = {
                    k: [str(got[k].dtype), list(got[k].shape)] if k in got else None for k in ours
                }
        except Exception as e:
            result = {"read_back_exact": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        entries.append(
            {
                "file": None,
                "writer": "amsgrad",
                "format": fmt,
                "tensors": "ours/*",
                "sha256": sha256(path),
                **result,
            }
        )
        # The optimizer checkpoint, re-written by this project, read back by MindSpore.
        src = mc.load_checkpoint(ckdir / "optimizer.ckpt")
        path = workdir / f"optimizer_rewritten.{fmt}"
        mc.save_checkpoint(src, path)
        got = expected(path, fmt)
        same = set(got) == set(src) and all(
            got[k].dtype == src[k].dtype
            and got[k].shape == src[k].shape
            and got[k].tobytes() == src[k].tobytes()
            for k in src
        )
        entries.append(
            {
                "file": None,
                "writer": "amsgrad",
                "format": fmt,
                "tensors": "optimizer.ckpt/*",
                "sha256": sha256(path),
                "read_back_exact": bool(same),
            }
        )
    write_npz(OUT / "checkpoints.npz", arrays)
    return entries


def main() -> None:
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    OUT.mkdir(exist_ok=True)
    manifest: dict = {"mindspore": ms.__version__, "numpy": np.__version__, "configs": []}
    ckpt_opt = None
    for i, config in enumerate(configurations()):
        entry, arrays, opt = run_config(config, seed=1000 + 17 * i)
        write_npz(OUT / entry["file"], arrays)
        manifest["configs"].append(entry)
        print(config["id"], "ok", flush=True)
        if config["id"] == "weight_decay":
            ckpt_opt = opt
    manifest["refused"] = refused()
    with tempfile.TemporaryDirectory() as tmp:
        manifest["checkpoints"] = checkpoints(ckpt_opt, Path(tmp))
        manifest["checkpoints_of"] = {"config": "weight_decay", "after_steps": STEPS}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
