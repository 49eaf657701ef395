"""The synthetic experiment of Reddi, Kale and Kumar, "On the Convergence of Adam and Beyond"
(ICLR 2018), run through this package's operator.

The problem
-----------
The decision set is ``[-1, 1]``; at step ``t = 1, 2, ...`` the loss is linear, ``f_t(x) = g_t x``:

* online form: ``g_t = 1010`` when ``t mod 101 == 1``, else ``g_t = -10``;
* stochastic form: ``g_t = 1010`` with probability 0.01, else ``-10`` (independently per step and
  per trajectory).

Over a period of 101 steps the gradients add up to +10 (online) and their mean is +0.2 per step
(stochastic), so the best fixed point is ``x* = -1``. Adam with ``beta1 = 0.9, beta2 = 0.99``
forgets the rare large gradient too fast and drifts to ``x = +1``, the worst point; AMSGrad keeps
the largest second moment (``vhat``) and moves toward ``-1``.

How the operator is used
------------------------
* AMSGrad is :func:`amsgrad.apply_adam_with_amsgrad_v2` itself. Adam is the same call with
  ``vhat`` reset to 0 before each step: since ``v >= 0`` the operator then takes
  ``vhat = max(0, v) = v``, which is exactly Adam's denominator ``sqrt(v) + epsilon``.
* Every trajectory of both methods and of both forms is one row block of a single state array
  of shape ``(form, method, alpha, trajectory)``; there is one operator call per time step for
  all of them. The step size ``alpha_i / sqrt(t)`` is a per-row ``lr`` of shape
  ``(form, method, alpha)``, a leading prefix of the state's shape. The two methods of a form see
  the same gradients (the same realized functions) and start from the same points.
* Projection onto ``[-1, 1]`` (a clip, in one dimension) follows each step.
* Bias correction: by default ``beta1_power = beta2_power = 0``, so that the operator's
  ``lr_t = lr * sqrt(1 - 0) / (1 - 0) = lr`` exactly and the step is the paper's uncorrected
  ``alpha / sqrt(t)``. With ``bias_correction=True``, ``beta1_power = beta1**t`` and
  ``beta2_power = beta2**t`` (computed in float64, then rounded to the state's dtype): the
  bias-corrected step of MindSpore's optimizer. The qualitative result is the same.
* Hyper-parameters (``beta1, beta2, epsilon``, the powers, ``lr``) are passed as arrays of the
  state's dtype, so that a float64 run uses float64 values (Python floats would be rounded
  through float32 by the operator's MindSpore conversion rules).
* float16 cannot hold ``1010**2`` (it overflows to inf), so only float32 and float64 are offered.

Measurements
------------
``x_t`` is the point played at step ``t``; ``x_1`` is the starting point (uniform in ``[-1, 1]``
per trajectory by default, the same for both methods and forms). The regret is measured against
the fixed point ``x* = -1`` over the realized functions: ``R_T = sum_{t<=T} g_t (x_t - x*)``,
accumulated in float64. (In the stochastic form the realized best point of a short horizon can
be ``+1``, so ``R_t / t`` can be negative early on; ``x* = -1`` is the minimizer of the expected
loss and, for long horizons, of the realized one.) Results are recorded at log-spaced times;
the recorded iterate at time ``t`` is the point after ``t`` steps (the one played at ``t + 1``).

:func:`run` does the computation and returns a :class:`Reddi2018Result`; :func:`plot` draws it
(matplotlib, imported lazily, Agg backend); :func:`format_summary` turns it into text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amsgrad import backend
from amsgrad.core.functional import apply_adam_with_amsgrad_v2

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_STEPS",
    "DEFAULT_TRAJECTORIES",
    "DTYPES",
    "FORMS",
    "METHODS",
    "FormResult",
    "Reddi2018Result",
    "checks",
    "format_checks",
    "format_summary",
    "plot",
    "run",
]

FORMS = ("online", "stochastic")
METHODS = ("adam", "amsgrad")
METHOD_LABELS = {"adam": "Adam", "amsgrad": "AMSGrad"}
DTYPES = ("float32", "float64")

PERIOD = 101
BIG_GRADIENT = 1010.0
SMALL_GRADIENT = -10.0
BIG_PROBABILITY = 0.01
X_STAR = -1.0

DEFAULT_STEPS = 1_000_000
DEFAULT_TRAJECTORIES = 8
DEFAULT_ALPHAS = (0.1, 0.5, 1.0)
DEFAULT_RECORDS = 600

_ADAM = METHODS.index("adam")
# Elements per block buffer (steps x state size) above which the block gets shorter.
_BLOCK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class FormResult:
    """The trajectories of one form of the problem.

    Arrays are indexed ``[method, record, alpha, trajectory]`` (method 0 is Adam, 1 AMSGrad):
    ``x[..., k, :, :]`` is the iterate after ``t[k]`` steps and ``avg_regret[..., k, :, :]`` is
    ``R_{t[k]} / t[k]``. ``regret`` is the final ``R_T`` (``[method, alpha, trajectory]``).
    """

    form: str
    alphas: np.ndarray
    t: np.ndarray
    x: np.ndarray
    avg_regret: np.ndarray
    regret: np.ndarray

    @property
    def final_x(self) -> np.ndarray:
        """The final iterates, ``[method, alpha, trajectory]``."""
        return self.x[:, -1]

    @property
    def final_avg_regret(self) -> np.ndarray:
        """``R_T / T`` at the end, ``[method, alpha, trajectory]``."""
        return self.avg_regret[:, -1]

    def method(self, name: str) -> int:
        """The index of ``"adam"`` or ``"amsgrad"`` in the method axis."""
        return METHODS.index(name)


@dataclass(frozen=True)
class Reddi2018Result:
    """What :func:`run` returns: the settings, one :class:`FormResult` per form, and timing."""

    steps: int
    trajectories: int
    alphas: tuple[float, ...]
    seed: int
    dtype: str
    bias_correction: bool
    epsilon: float
    beta1: float
    beta2: float
    x0: float | None
    seconds: float
    backend: str
    forms: dict[str, FormResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable summary: settings, and per form and method the final values."""
        out: dict[str, Any] = {
            "experiment": "reddi2018",
            "steps": self.steps,
            "trajectories_per_alpha": self.trajectories,
            "alphas": list(self.alphas),
            "seed": self.seed,
            "dtype": self.dtype,
            "bias_correction": self.bias_correction,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
            "x0": "uniform(-1, 1)" if self.x0 is None else self.x0,
            "x_star": X_STAR,
            "backend": self.backend,
            "seconds": round(self.seconds, 3),
            "forms": {},
        }
        for form, result in self.forms.items():
            methods: dict[str, Any] = {}
            for index, name in enumerate(METHODS):
                final_x = result.final_x[index]
                avg = result.final_avg_regret[index]
                methods[name] = {
                    "final_x": _stats(final_x),
                    "final_avg_regret": _stats(avg),
                    "by_alpha": [
                        {
                            "alpha": float(alpha),
                            "final_x": _stats(final_x[a]),
                            "final_avg_regret": _stats(avg[a]),
                            "final_x_values": final_x[a].tolist(),
                            "final_avg_regret_values": avg[a].tolist(),
                            "final_regret_values": result.regret[index, a].tolist(),
                        }
                        for a, alpha in enumerate(result.alphas)
                    ],
                }
            out["forms"][form] = methods
        out["checks"] = checks(self)
        return out


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float, *, closed_high: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    inside = low <= number <= high if closed_high else low <= number < high
    if not math.isfinite(number) or not inside:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must be in [{low:g}, {high:g}{bracket}, got {value!r}")
    return number


def _check_forms(forms: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(forms, str):
        forms = FORMS if forms == "both" else (forms,)
    forms = tuple(forms)
    if not forms:
        raise ValueError("forms must name at least one of 'online', 'stochastic'")
    for form in forms:
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}: expected 'online', 'stochastic' or 'both'")
    if len(set(forms)) != len(forms):
        raise ValueError(f"forms must not repeat, got {forms!r}")
    return forms


def _check_alphas(alphas: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(alphas, (int, float)):
        alphas = (alphas,)
    values = tuple(float(alpha) for alpha in alphas)
    if not values:
        raise ValueError("alphas must contain at least one step size")
    for alpha in values:
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"every alpha must be a finite number > 0, got {alpha!r}")
    return values


def record_times(steps: int, records: int) -> np.ndarray:
    """About ``records`` distinct, log-spaced step counts from 1 to ``steps`` (both included)."""
    spaced = np.geomspace(1, steps, num=max(2, records))
    times = np.unique(np.round(spaced).astype(np.int64))
    times[-1] = steps
    return times


# --------------------------------------------------------------------------- the experiment


def run(
    *,
    steps: int = DEFAULT_STEPS,
    trajectories: int = DEFAULT_TRAJECTORIES,
    alphas: float | Sequence[float] = DEFAULT_ALPHAS,
    forms: str | Sequence[str] = FORMS,
    seed: int = 0,
    dtype: str = "float32",
    bias_correction: bool = False,
    epsilon: float = 1e-8,
    beta1: float = 0.9,
    beta2: float = 0.99,
    x0: float | None = None,
    records: int = DEFAULT_RECORDS,
    progress: Callable[[int, int], None] | None = None,
) -> Reddi2018Result:
    """Run Adam and AMSGrad on the problem for ``steps`` steps; return every recorded value.

    ``trajectories`` independent runs per step size in ``alphas`` (they differ by their starting
    point, and in the stochastic form by their gradients); ``forms`` is ``"online"``,
    ``"stochastic"``, ``"both"`` or a sequence of form names; ``x0`` fixes the starting point
    (default: uniform in ``[-1, 1]``, drawn from ``seed``). ``progress(done, total)`` is called
    as steps complete. Raises ValueError for an invalid setting.
    """
    steps = _check_int("steps", steps, 1)
    trajectories = _check_int("trajectories", trajectories, 1)
    records = _check_int("records", records, 2)
    seed = _check_int("seed", seed, 0)
    alpha_values = _check_alphas(alphas)
    form_names = _check_forms(forms)
    if dtype not in DTYPES:
        raise ValueError(
            f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r} "
            "(float16 cannot represent the squared gradient 1010**2)"
        )
    epsilon = _check_float("epsilon", epsilon, 0.0, math.inf, closed_high=False)
    beta1 = _check_float("beta1", beta1, 0.0, 1.0, closed_high=False)
    beta2 = _check_float("beta2", beta2, 0.0, 1.0, closed_high=False)
    if x0 is not None:
        x0 = _check_float("x0", x0, -1.0, 1.0, closed_high=True)
    bias_correction = bool(bias_correction)

    started = time.perf_counter()
    dt = np.dtype(dtype)
    count_forms, count_alphas = len(form_names), len(alpha_values)
    shape = (count_forms, len(METHODS), count_alphas, trajectories)
    state_size = math.prod(shape)

    start_sequence, noise_sequence = np.random.SeedSequence(seed).spawn(2)
    if x0 is None:
        start = np.random.default_rng(start_sequence).uniform(
            -1.0, 1.0, (count_alphas, trajectories)
        )
    else:
        start = np.full((count_alphas, trajectories), x0)
    noise = np.random.default_rng(noise_sequence)

    x = np.empty(shape, dtype=dt)
    x[...] = start.astype(dt)
    m = np.zeros(shape, dtype=dt)
    v = np.zeros(shape, dtype=dt)
    vhat = np.zeros(shape, dtype=dt)
    played_last = x.astype(np.float64)  # x_t of the next step, in float64 for the regret
    regret = np.zeros(shape, dtype=np.float64)

    def as_t(value: float) -> np.ndarray:
        return np.asarray(value, dtype=dt)

    beta1_t, beta2_t, epsilon_t = as_t(beta1), as_t(beta2), as_t(epsilon)
    zero_power = as_t(0.0)
    alpha_array = np.asarray(alpha_values, dtype=np.float64)

    times = record_times(steps, records)
    recorded_x = np.empty((len(times), *shape), dtype=np.float64)
    recorded_avg = np.empty((len(times), *shape), dtype=np.float64)
    next_record = 0

    block = max(1, min(4096, _BLOCK_ELEMENTS // state_size))
    online = form_names.index("online") if "online" in form_names else None
    stochastic = form_names.index("stochastic") if "stochastic" in form_names else None
    if progress is not None:
        progress(0, steps)

    for first in range(1, steps + 1, block):
        count = min(block, steps + 1 - first)
        t = np.arange(first, first + count, dtype=np.int64)
        # Gradients of this block, [step, form, alpha, trajectory]; both methods share them.
        gradient = np.empty((count, count_forms, count_alphas, trajectories), dtype=np.float64)
        if online is not None:
            gradient[:, online] = np.where(t % PERIOD == 1, BIG_GRADIENT, SMALL_GRADIENT)[
                :, None, None
            ]
        if stochastic is not None:
            draws = noise.random((count, count_alphas, trajectories))
            gradient[:, stochastic] = np.where(
                draws < BIG_PROBABILITY, BIG_GRADIENT, SMALL_GRADIENT
            )
        grads = np.ascontiguousarray(
            np.broadcast_to(gradient[:, :, None], (count, *shape)), dtype=dt
        )
        step_sizes = alpha_array / np.sqrt(t.astype(np.float64))[:, None]  # [step, alpha]
        lrs = np.ascontiguousarray(
            np.broadcast_to(step_sizes[:, None, None, :], (count, *shape[:3])), dtype=dt
        )
        if bias_correction:
            # Shape (count, 1): each row is a one-element array of dtype T, not a NumPy
            # scalar (which the operator would round through float32).
            powers1 = (beta1 ** t.astype(np.float64)).astype(dt).reshape(count, 1)
            powers2 = (beta2 ** t.astype(np.float64)).astype(dt).reshape(count, 1)
        after = np.empty((count, *shape), dtype=dt)

        for i in range(count):
            vhat[:, _ADAM] = 0  # Adam: the operator's max(vhat, v) becomes v
            if bias_correction:
                power1, power2 = powers1[i], powers2[i]
            else:
                power1 = power2 = zero_power
            apply_adam_with_amsgrad_v2(
                x, m, v, vhat, power1, power2, lrs[i], beta1_t, beta2_t, epsilon_t, grads[i]
            )
            np.clip(x, -1.0, 1.0, out=x)
            after[i] = x

        # Regret of the block: g_t * (x_t - x*) with x_t the point played at step t.
        played = np.empty((count, *shape), dtype=np.float64)
        played[0] = played_last
        played[1:] = after[:-1]
        played_last = after[-1].astype(np.float64)
        cumulative = np.cumsum(gradient[:, :, None] * (played - X_STAR), axis=0)
        cumulative += regret
        regret = cumulative[-1].copy()

        stop = int(np.searchsorted(times, first + count - 1, side="right"))
        if stop > next_record:
            index = (times[next_record:stop] - first).astype(np.intp)
            recorded_x[next_record:stop] = after[index]
            recorded_avg[next_record:stop] = cumulative[index] / times[next_record:stop].reshape(
                -1, 1, 1, 1, 1
            )
            next_record = stop
        if progress is not None:
            progress(first + count - 1, steps)

    seconds = time.perf_counter() - started
    results = {
        form: FormResult(
            form=form,
            alphas=alpha_array.copy(),
            t=times.copy(),
            x=np.ascontiguousarray(recorded_x[:, f].swapaxes(0, 1)),
            avg_regret=np.ascontiguousarray(recorded_avg[:, f].swapaxes(0, 1)),
            regret=regret[f].copy(),
        )
        for f, form in enumerate(form_names)
    }
    return Reddi2018Result(
        steps=steps,
        trajectories=trajectories,
        alphas=alpha_values,
        seed=seed,
        dtype=dtype,
        bias_correction=bias_correction,
        epsilon=epsilon,
        beta1=beta1,
        beta2=beta2,
        x0=x0,
        seconds=seconds,
        backend=backend(),
        forms=results,
    )


# --------------------------------------------------------------------------- reporting


def format_summary(result: Reddi2018Result) -> str:
    """A human-readable table of the final x and average regret per form, method and alpha."""
    correction = "beta^t (bias-corrected)" if result.bias_correction else "0 (uncorrected, paper)"
    alphas = ", ".join(f"{alpha:g}" for alpha in result.alphas)
    lines = [
        f"Reddi, Kale & Kumar (ICLR 2018) synthetic problem: {result.steps} steps, "
        f"{result.trajectories} trajectories per alpha, alphas {alphas}",
        f"beta1={result.beta1:g} beta2={result.beta2:g} epsilon={result.epsilon:g} "
        f"beta powers={correction} dtype={result.dtype} seed={result.seed} "
        f"backend={result.backend}; {result.seconds:.1f} s",
        "regret against x* = -1; final x and R_T/T as mean [min, max] over trajectories",
    ]
    for form, form_result in result.forms.items():
        lines.append("")
        lines.append(f"{form} form:")
        lines.append(f"  {'method':<8} {'alpha':>6}  {'final x':<32} {'R_T/T':<32}")
        for index, name in enumerate(METHODS):
            final_x = form_result.final_x[index]
            avg = form_result.final_avg_regret[index]
            rows = [("all", final_x, avg)] if len(form_result.alphas) > 1 else []
            rows = [
                (f"{alpha:g}", final_x[a], avg[a]) for a, alpha in enumerate(form_result.alphas)
            ] + rows
            for label, xs, regrets in rows:
                lines.append(
                    f"  {METHOD_LABELS[name]:<8} {label:>6}  {_range_text(xs):<32} "
                    f"{_range_text(regrets):<32}"
                )
    return "\n".join(lines)


def _claims(form_result: FormResult, steps: int, alpha: int | None) -> dict[str, Any]:
    adam, ams = METHODS.index("adam"), METHODS.index("amsgrad")
    pick = slice(None) if alpha is None else alpha
    tenth = int(np.searchsorted(form_result.t, max(1, steps // 10)))
    tenth = min(tenth, len(form_result.t) - 1)
    x_adam = float(form_result.final_x[adam, pick].mean())
    x_ams = float(form_result.final_x[ams, pick].mean())
    r_adam = float(form_result.final_avg_regret[adam, pick].mean())
    r_ams = float(form_result.final_avg_regret[ams, pick].mean())
    r_ams_tenth = float(form_result.avg_regret[ams, tenth, pick].mean())
    return {
        "alpha": None if alpha is None else float(form_result.alphas[alpha]),
        "adam_final_x_mean": x_adam,
        "amsgrad_final_x_mean": x_ams,
        "adam_final_avg_regret_mean": r_adam,
        "amsgrad_final_avg_regret_mean": r_ams,
        "tenth_step": int(form_result.t[tenth]),
        "amsgrad_avg_regret_mean_at_tenth_step": r_ams_tenth,
        "adam_near_plus_one": x_adam > 0.9,
        "amsgrad_toward_minus_one": x_ams < 0.0 and x_ams < x_adam,
        "amsgrad_regret_lower": r_ams < r_adam,
        "amsgrad_regret_falls": r_ams < r_ams_tenth,
    }


def checks(result: Reddi2018Result) -> dict[str, dict[str, Any]]:
    """The paper's claims, tested on the result, per form: over all trajectories and per alpha.

    Means over trajectories: ``adam_near_plus_one``: Adam's final x > 0.9;
    ``amsgrad_toward_minus_one``: AMSGrad's final x < 0 and below Adam's;
    ``amsgrad_regret_lower``: AMSGrad's R_T/T below Adam's; ``amsgrad_regret_falls``: AMSGrad's
    R_t/t at T below its value at about T/10 (``tenth_step``).
    """
    return {
        form: {
            "all": _claims(form_result, result.steps, None),
            "by_alpha": [
                _claims(form_result, result.steps, a) for a in range(len(form_result.alphas))
            ],
        }
        for form, form_result in result.forms.items()
    }


def format_checks(result: Reddi2018Result) -> str:
    """A table: does the result show the paper's claims, per form and alpha?"""

    def mark(flag: bool) -> str:
        return "yes" if flag else "NO "

    header = (
        f"  {'form':<11}{'alpha':>6}  {'Adam x near +1':<16}{'AMSGrad x toward -1':<21}"
        f"{'AMSGrad R_T/T < Adam':<23}AMSGrad R_t/t falls (t=T/10 -> T)"
    )
    lines = ["the paper's claims, on means over trajectories:", header]
    for form, table in checks(result).items():
        rows = table["by_alpha"] + ([table["all"]] if len(table["by_alpha"]) > 1 else [])
        for row in rows:
            label = "all" if row["alpha"] is None else f"{row['alpha']:g}"
            lines.append(
                f"  {form:<11}{label:>6}  "
                f"{row['adam_final_x_mean']:+.3f} {mark(row['adam_near_plus_one']):<9}"
                f"{row['amsgrad_final_x_mean']:+.3f} {mark(row['amsgrad_toward_minus_one']):<14}"
                f"{row['amsgrad_final_avg_regret_mean']:.4f} < "
                f"{row['adam_final_avg_regret_mean']:.4f} {mark(row['amsgrad_regret_lower']):<7}"
                f"{row['amsgrad_avg_regret_mean_at_tenth_step']:.4f} -> "
                f"{row['amsgrad_final_avg_regret_mean']:.4f} {mark(row['amsgrad_regret_falls'])}"
            )
    return "\n".join(lines)


def _range_text(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():+.4f} [{values.min():+.4f}, {values.max():+.4f}]"


_COLORS = {"adam": "tab:red", "amsgrad": "tab:blue"}


def _regret_limits(t: np.ndarray, means: list[np.ndarray]) -> tuple[float, float]:
    """y-limits for a linear R_t/t axis: the mean curves after the early transient."""
    cut = t >= min(max(100, t[-1] // 1000), t[-1])
    values = np.concatenate([mean[cut] for mean in means])
    low, high = float(values.min()), float(values.max())
    pad = 0.08 * (high - low) if high > low else 0.5
    return min(low - pad, -pad), high + pad


def plot(result: Reddi2018Result, form: str, path: str) -> None:
    """Draw x_t and R_t/t of both methods for one form into a PNG at ``path``.

    One column per step size alpha; lines are the mean over trajectories, bands their range.
    Imports matplotlib lazily with the Agg backend; raises ImportError when it is missing.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    form_result = result.forms[form]
    t = form_result.t
    columns = len(form_result.alphas)
    figure, axes = plt.subplots(
        2,
        columns,
        figsize=(4.6 * columns + 0.8, 7.0),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for a, alpha in enumerate(form_result.alphas):
        ax_x, ax_r = axes[0, a], axes[1, a]
        regret_means = []
        for index, name in enumerate(METHODS):
            label = METHOD_LABELS[name]
            for axis, values in ((ax_x, form_result.x), (ax_r, form_result.avg_regret)):
                series = values[index, :, a, :]
                mean = series.mean(axis=1)
                axis.plot(t, mean, color=_COLORS[name], lw=1.3, label=f"{label} (mean)")
                if series.shape[1] > 1:
                    axis.fill_between(
                        t,
                        series.min(axis=1),
                        series.max(axis=1),
                        color=_COLORS[name],
                        alpha=0.15,
                        lw=0,
                        label=f"{label} (range)",
                    )
                if axis is ax_r:
                    regret_means.append(mean)
        ax_x.set_title(f"$\\alpha$ = {alpha:g}  (step $\\alpha/\\sqrt{{t}}$)", fontsize=10)
        ax_x.axhline(X_STAR, color="k", lw=0.8, ls=":")
        ax_x.set_ylim(-1.06, 1.06)
        if form == "online" and all(np.all(mean > 0) for mean in regret_means):
            ax_r.set_yscale("log")
        else:
            ax_r.set_ylim(*_regret_limits(t, regret_means))
            ax_r.axhline(0.0, color="k", lw=0.8, ls=":")
        for axis in (ax_x, ax_r):
            axis.set_xscale("log")
            axis.grid(True, which="major", alpha=0.3)
        ax_r.set_xlabel("step t")
    axes[0, 0].set_ylabel("$x_t$  (optimum x* = -1)")
    axes[1, 0].set_ylabel("average regret $R_t/t$ against x* = -1")
    axes[0, 0].legend(fontsize=8, loc="best")
    if form == "online":
        problem = "$f_t(x) = 1010x$ if $t$ mod 101 = 1, else $-10x$"
    else:
        problem = "$f_t(x) = 1010x$ with probability 0.01, else $-10x$"
    correction = "bias-corrected" if result.bias_correction else "no bias correction"
    figure.suptitle(
        f"Reddi et al. (2018), {form} form: {problem}, $x \\in [-1, 1]$; "
        f"$\\beta_1$={result.beta1:g}, $\\beta_2$={result.beta2:g}, "
        f"$\\epsilon$={result.epsilon:g}, {correction}\n"
        f"Adam vs AMSGrad (amsgrad.ApplyAdamWithAmsgradV2), {result.trajectories} trajectories "
        f"per $\\alpha$, {result.dtype}",
        fontsize=10,
    )
    figure.savefig(path, dpi=100)
    plt.close(figure)
