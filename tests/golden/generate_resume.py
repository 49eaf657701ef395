"""Record MindSpore resuming ``nn.Adam(use_amsgrad=True)`` from checkpoints: its own and ours.

Run with a Python that has mindspore==2.10.0 (its own virtual environment) and NumPy, from the
repository root, after ``generate_replay.py`` (it reads the recorded runs)::

    /work/msenv/bin/python tests/golden/generate_resume.py

For a few recorded runs of ``tests/golden/replay/`` (``CASES``: the run and the step K), it
writes ``tests/golden/replay/resume/``:

* ``<run>.step<K>.ckpt`` (and ``.safetensors`` for one run): ``mindspore.save_checkpoint`` of the
  optimizer after K steps of the run, re-run here from its recorded start and gradients (the
  state after K steps is checked to be the recorded one, bit for bit);
* ``ours.<run>.step<K>.ckpt`` (and ``.safetensors``): the recorded state after K steps written
  by this project (``amsgrad.adapters.mindspore_state.write_state``, imported from ``src/``).
  The test suite holds ``AMSGradV2.save_mindspore`` and ``amsgrad.optax.save_mindspore`` to
  these bytes;
* ``resume.json``: per run, K, and per file its sha256 and what MindSpore did with it: a fresh
  network (parameters drawn from another seed) and optimizer, ``load_checkpoint`` then
  ``load_param_into_net`` on the network and on the optimizer, then the recorded gradients of
  steps K+1 to the end. ``continues_bit_exact`` says whether every parameter, moment1, moment2,
  vhat, beta power, global step and lr equals the recorded run at every one of those steps
  (``first_difference`` names the first that does not); ``not_loaded`` lists the optimizer's
  parameters that ``load_param_into_net`` reported as not loaded.

So the recorded run's steps K+1.. are MindSpore's continuation from each file. Deterministic:
running it again rewrites the same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "replay" / "resume"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import generate_replay as gr  # noqa: E402

#: (recorded run, steps before the checkpoint, formats of MindSpore's and our files)
CASES = [
    ("defaults", 10, ("ckpt", "safetensors")),
    ("dynamic_lr_cosine", 13, ("ckpt",)),
    ("layernorm_decay_filter", 7, ("ckpt",)),
    ("float64_wd_loss_scale", 10, ("ckpt",)),
]
#: The seed of the fresh network that a checkpoint is loaded into (its values are overwritten).
OTHER_SEED = 4242


def recorded(config_id: str) -> tuple[dict, dict, int, dict[str, np.ndarray]]:
    """The run's configuration, manifest entry, seed and recorded arrays."""
    manifest = json.loads((HERE / "replay" / "manifest.json").read_text())
    configs = gr.configurations()
    index = next(i for i, c in enumerate(configs) if c["id"] == config_id)
    entry = next(e for e in manifest["configs"] if e["id"] == config_id)
    with np.load(HERE / "replay" / entry["file"]) as data:
        arrays = {k: data[k] for k in data.files}
    return configs[index], entry, 1000 + 17 * index, arrays


def get_lr(opt) -> np.ndarray:
    try:
        lr = opt.get_lr()
    except SystemError:  # MindSpore 2.10's first Gather on the CPU (see generate_replay.py)
        lr = opt.get_lr()
    lr = lr[0] if isinstance(lr, tuple) else lr
    return np.asarray(lr.asnumpy()).reshape(())


def differences(opt, arrays: dict[str, np.ndarray], t: int) -> list[str]:
    """What of the optimizer's state differs from the recorded one after step t."""
    out = []
    for p, m1, m2, vh in zip(opt.parameters, opt.moment1, opt.moment2, opt.vhat, strict=True):
        for kind, value in (("param", p), ("moment1", m1), ("moment2", m2), ("vhat", vh)):
            expected = arrays[f"{kind}/{p.name}"][t]
            got = value.asnumpy()
            if got.dtype != expected.dtype or got.tobytes() != expected.tobytes():
                out.append(f"{kind}/{p.name}")
    for name in ("beta1_power", "beta2_power"):
        got = getattr(opt, name).asnumpy()
        if got.tobytes() != arrays[name][t].tobytes():
            out.append(name)
    if int(opt.global_step.asnumpy().reshape(())) != int(arrays["global_step"][t]):
        out.append("global_step")
    return out


def run_steps(opt, arrays: dict[str, np.ndarray], start: int, stop: int) -> str | None:
    """Feed the recorded gradients of steps start+1..stop; the first difference, or None."""
    from mindspore import Tensor

    names = [p.name for p in opt.parameters]
    for t in range(start + 1, stop + 1):
        lr = get_lr(opt)
        if lr.tobytes() != arrays["lr/0"][t - 1].tobytes():
            return f"step {t}: lr"
        opt(tuple(Tensor(arrays[f"grad/{n}"][t - 1]) for n in names))
        wrong = differences(opt, arrays, t)
        if wrong:
            return f"step {t}: {', '.join(wrong)}"
    return None


def resume_from(config: dict, path: Path, fmt: str, arrays: dict, k: int, steps: int) -> dict:
    """A fresh network and optimizer load ``path`` and continue; the outcome."""
    import mindspore as ms

    net, opt = gr.make_optimizer(config, OTHER_SEED)
    loaded = ms.load_checkpoint(str(path), format=fmt)
    ms.load_param_into_net(net, loaded)
    not_loaded, _ = ms.load_param_into_net(opt, loaded)
    wrong = differences(opt, arrays, k)
    first = f"after loading: {', '.join(wrong)}" if wrong else run_steps(opt, arrays, k, steps)
    return {
        "continues_bit_exact": first is None,
        "first_difference": first,
        "not_loaded": sorted(not_loaded),
    }


def our_file(entry: dict, config: dict, arrays: dict, k: int, path: Path) -> None:
    """The recorded state after k steps, written by this project."""
    from amsgrad.adapters.mindspore_state import (
        OptimizerState,
        Slot,
        learning_rate_entry,
        write_state,
    )

    names = entry["names"]
    slots = [Slot(n, n, tuple(entry["shapes"][n]), np.dtype(entry["dtype"])) for n in names]
    spec = config["kwargs"].get("learning_rate", 1e-3)
    lr = list(arrays["lr/0"]) if isinstance(spec, (list, dict)) else spec
    state = OptimizerState(
        global_step=int(arrays["global_step"][k]),
        beta1_power=np.float32(arrays["beta1_power"][k]),
        beta2_power=np.float32(arrays["beta2_power"][k]),
        params=[arrays[f"param/{n}"][k] for n in names],
        moment1=[arrays[f"moment1/{n}"][k] for n in names],
        moment2=[arrays[f"moment2/{n}"][k] for n in names],
        vhat=[arrays[f"vhat/{n}"][k] for n in names],
        learning_rates={"learning_rate": learning_rate_entry([lr])},
    )
    write_state(path, slots, state)


def main() -> None:
    import mindspore as ms
    from mindspore import Tensor

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    OUT.mkdir(exist_ok=True)
    cases = []
    for config_id, k, formats in CASES:
        config, entry, seed, arrays = recorded(config_id)
        steps = entry["steps"]
        # MindSpore's own run to step k, checked against the record, then its checkpoints.
        _, opt = gr.make_optimizer(config, seed)
        names = [p.name for p in opt.parameters]
        assert names == entry["names"], config_id
        for t in range(1, k + 1):
            get_lr(opt)
            opt(tuple(Tensor(arrays[f"grad/{n}"][t - 1]) for n in names))
        assert not differences(opt, arrays, k), (config_id, differences(opt, arrays, k))
        files = []
        for fmt in formats:
            for writer in ("mindspore", "amsgrad"):
                stem = f"{config_id}.step{k}.{fmt}"
                path = OUT / (stem if writer == "mindspore" else f"ours.{stem}")
                if writer == "mindspore":
                    ms.save_checkpoint(opt, str(path), format=fmt)
                else:
                    our_file(entry, config, arrays, k, path)
                path.chmod(0o644)
                files.append(
                    {
                        "file": path.name,
                        "writer": writer,
                        "format": fmt,
                        "sha256": gr.sha256(path),
                        **resume_from(config, path, fmt, arrays, k, steps),
                    }
                )
                print(config_id, path.name, files[-1]["continues_bit_exact"], flush=True)
        cases.append({"config": config_id, "after_steps": k, "steps": steps, "files": files})
    manifest = {"mindspore": ms.__version__, "other_seed": OTHER_SEED, "cases": cases}
    (OUT / "resume.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
