"""The ``amsgrad`` command (also ``python -m amsgrad``).

Subcommands::

    amsgrad demo                     MindSpore's documented example, compared bit for bit
    amsgrad reproduce reddi2018      Reddi, Kale & Kumar (ICLR 2018): Adam vs AMSGrad
    amsgrad bench [OPTIONS]          the benchmark suite (options go to amsgrad.apps.bench)

Exit status: 0 on success; 1 when ``demo`` finds a mismatch or on an unexpected error; 2 for a
usage error (unknown subcommand or option, invalid value). Errors are one line on stderr,
``amsgrad: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from amsgrad.apps.files import folder_problem

__all__ = ["UsageError", "build_parser", "main"]

PROG = "amsgrad"


class UsageError(Exception):
    """A wrong subcommand, option or value: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- value types


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _alphas(text: str) -> tuple[float, ...]:
    parts = [part.strip() for part in text.split(",")]
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers > 0 such as 0.1,0.5,1, got {text!r}"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(
                f"every alpha must be a finite number > 0, got {part!r}"
            )
        values.append(value)
    return tuple(values)


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``amsgrad`` command."""
    from amsgrad import __version__
    from amsgrad.apps.reddi2018 import (
        DEFAULT_ALPHAS,
        DEFAULT_RECORDS,
        DEFAULT_STEPS,
        DEFAULT_TRAJECTORIES,
        DTYPES,
    )

    parser = _Parser(
        prog=PROG,
        description="MindSpore's ApplyAdamWithAmsgradV2 (AMSGrad), bit-exact: demo, experiment, "
        "benchmarks.",
        epilog="Exit status: 0 success, 1 mismatch or unexpected error, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        help="run MindSpore's documented example and compare it bit for bit",
        description="Run the example of MindSpore's ApplyAdamWithAmsgradV2 documentation through "
        "amsgrad's MindSpore-compatible surface, print the updated var next to MindSpore's "
        "published output and compare their float32 bits. Exit 0 on a match, 1 on a mismatch.",
    )
    demo.set_defaults(handler=_run_demo)

    reproduce = commands.add_parser(
        "reproduce",
        help="reproduce a published experiment (reddi2018)",
        description="Reproduce a published experiment with this package's operator.",
    )
    experiments = reproduce.add_subparsers(
        dest="experiment", metavar="EXPERIMENT", parser_class=_Parser
    )
    reddi = experiments.add_parser(
        "reddi2018",
        help="Reddi, Kale & Kumar (ICLR 2018): Adam drifts to +1, AMSGrad moves toward -1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="The synthetic problem of 'On the Convergence of Adam and Beyond' (Reddi, "
        "Kale, Kumar, ICLR 2018): x in [-1, 1], f_t(x) = 1010x when t mod 101 = 1 else -10x "
        "(online form), or 1010x with probability 0.01 else -10x (stochastic form); beta1=0.9, "
        "beta2=0.99, step alpha/sqrt(t), projection onto [-1, 1]. AMSGrad is the operator; Adam "
        "is the operator with vhat reset to 0 before each step. All trajectories of both "
        "methods go through one operator call per time step (per-row lr). Regret is measured "
        "against x* = -1. Prints the final x and average regret of each method, writes a PNG "
        "per form (matplotlib).",
    )
    reddi.add_argument(
        "--steps", type=_int_at_least(1), default=DEFAULT_STEPS, help="number of time steps T"
    )
    reddi.add_argument(
        "--trajectories",
        type=_int_at_least(1),
        default=DEFAULT_TRAJECTORIES,
        help="independent trajectories per step size (random start in [-1, 1]; in the "
        "stochastic form also their own gradients)",
    )
    reddi.add_argument(
        "--alphas",
        type=_alphas,
        default=DEFAULT_ALPHAS,
        metavar="A[,A...]",
        help="step sizes alpha (the step at t is alpha/sqrt(t)), comma-separated",
    )
    reddi.add_argument(
        "--form",
        choices=("online", "stochastic", "both"),
        default="both",
        help="which form of the problem to run",
    )
    reddi.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    reddi.add_argument(
        "--out",
        default="reddi2018_{form}.png",
        metavar="PATH",
        help="PNG path; '{form}' is replaced by the form's name; a directory gets "
        "reddi2018_<form>.png; with both forms and no '{form}', '_<form>' goes before the "
        "extension",
    )
    reddi.add_argument("--no-plot", action="store_true", help="do not write PNGs")
    reddi.add_argument(
        "--json",
        action="store_true",
        help="print the settings, final values and regrets as JSON on stdout (nothing else "
        "on stdout; notes go to stderr)",
    )
    reddi.add_argument("--dtype", choices=DTYPES, default="float32", help="state dtype")
    reddi.add_argument(
        "--bias-correction",
        action="store_true",
        help="pass beta1_power=beta1^t, beta2_power=beta2^t (MindSpore's bias-corrected step) "
        "instead of 0 (the paper's uncorrected step alpha/sqrt(t), exactly)",
    )
    reddi.add_argument("--epsilon", type=_finite_float, default=1e-8, help="epsilon")
    reddi.add_argument(
        "--x0",
        type=_finite_float,
        default=None,
        help="starting point in [-1, 1] for every trajectory (default: uniform in [-1, 1])",
    )
    reddi.add_argument(
        "--records",
        type=_int_at_least(2),
        default=DEFAULT_RECORDS,
        help="about how many log-spaced time points to record for the plot",
    )
    reddi.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown only on a terminal)"
    )
    reddi.set_defaults(handler=_run_reddi2018)

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite (options are passed to amsgrad.apps.bench; try --help)",
        add_help=False,
        description="Run the benchmark suite; every option is passed to amsgrad.apps.bench.",
    )
    bench.set_defaults(handler=None)
    return parser


# --------------------------------------------------------------------------- subcommands


def _run_demo(args: argparse.Namespace) -> int:
    from amsgrad.apps import demo

    result = demo.run()
    print(demo.format_report(result))
    return 0 if result.match else 1


def _plot_paths(out: str, forms: Sequence[str]) -> dict[str, str]:
    """Where the PNG of each form goes (see the --out help); checks that it can be written."""
    paths: dict[str, str] = {}
    for form in forms:
        if os.path.isdir(out) or out.endswith(("/", os.sep)):
            path = os.path.join(out, f"reddi2018_{form}.png")
        elif "{form}" in out:
            path = out.replace("{form}", form)
        elif len(forms) > 1:
            stem, extension = os.path.splitext(out)
            path = f"{stem}_{form}{extension or '.png'}"
        else:
            path = out
        problem = folder_problem(os.path.dirname(path) or ".")
        if problem:
            raise UsageError(f"argument --out: {problem}")
        paths[form] = path
    return paths


def _run_reddi2018(args: argparse.Namespace) -> int:
    from amsgrad.apps import reddi2018
    from amsgrad.apps.progress import Progress

    forms = reddi2018.FORMS if args.form == "both" else (args.form,)
    if args.x0 is not None and not -1.0 <= args.x0 <= 1.0:
        raise UsageError(f"argument --x0: expected a number in [-1, 1], got {args.x0!r}")
    if args.epsilon < 0:
        raise UsageError(f"argument --epsilon: expected a number >= 0, got {args.epsilon!r}")
    paths = {} if args.no_plot else _plot_paths(args.out, forms)

    label = f"reddi2018 ({', '.join(forms)})"
    with Progress(args.steps, label, enabled=False if args.no_progress else None) as bar:
        result = reddi2018.run(
            steps=args.steps,
            trajectories=args.trajectories,
            alphas=args.alphas,
            forms=forms,
            seed=args.seed,
            dtype=args.dtype,
            bias_correction=args.bias_correction,
            epsilon=args.epsilon,
            x0=args.x0,
            records=args.records,
            progress=lambda done, total: bar.update(done),
        )

    notes = sys.stderr if args.json else sys.stdout
    if not args.json:
        print(reddi2018.format_summary(result))
        print()
        print(reddi2018.format_checks(result))
    written: dict[str, str | None] = {form: None for form in forms}
    if paths:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "matplotlib is not installed: no plot written (pip install 'amsgrad[plot]')",
                file=notes,
            )
        else:
            for form, path in paths.items():
                reddi2018.plot(result, form, path)
                written[form] = path
                print(f"wrote {path}", file=notes)
    if args.json:
        summary = result.to_dict()
        summary["plots"] = written
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def _run_bench(argv: list[str]) -> int:
    from amsgrad.apps import bench

    status: object
    try:
        status = bench.main(argv)
    except SystemExit as stop:  # its argparse: --help (0) or a usage error (2)
        status = stop.code
    if status is None:
        return 0
    if isinstance(status, int):
        return status
    print(f"{PROG}: error: {status}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- entry point


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "bench":  # everything after it belongs to amsgrad.apps.bench
        return _run_bench(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named against the command they were given to, whose --help lists its own
        prog = " ".join(
            [parser.prog, *(str(w) for w in (args.command, getattr(args, "experiment", None)) if w)]
        )
        raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
    if args.command is None:
        raise UsageError("a command is required: demo, reproduce or bench (see 'amsgrad --help')")
    if args.command == "reproduce" and args.experiment is None:
        raise UsageError("an experiment is required: reddi2018 (see 'amsgrad reproduce --help')")
    return int(args.handler(args))


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``amsgrad`` command with ``argv`` (default: ``sys.argv[1:]``); return the status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(arguments)
    except SystemExit as stop:  # --help and --version
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except (UsageError, ValueError) as error:
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (e.g. piped into head)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except OSError as error:  # e.g. the PNG cannot be written
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:
        print(
            f"{PROG}: error: unexpected {type(error).__name__}: {_one_line(error)}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
