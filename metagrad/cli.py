"""``metagrad`` command line: argument parsing only; the work is in ``experiments.runner``.

    metagrad train PRESET_OR_CONFIG [--set key=value ...] [--out DIR] [--resume DIR]
    metagrad eval RUN_DIR [--tasks N] [--steps T] [--set key=value ...] [--plot]
    metagrad reproduce NAME [--quick] [--seeds N] [--out DIR] [experiment options, e.g. --data thesis]
    metagrad list
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metagrad", description="Gradient-based meta-learning: train, evaluate, reproduce.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train a preset or a JSON config")
    t.add_argument("config", nargs="?", help="preset name (see `metagrad list`) or path to a JSON config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set inner.steps=5 (repeatable)")
    t.add_argument("--out", help="run directory (default runs/<name>-<time>)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    t.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for this process (also on --resume: e.g. more once other jobs end)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="evaluate a trained run on held-out tasks")
    e.add_argument("run", help="run directory written by `metagrad train`")
    e.add_argument("--tasks", type=int, help="number of test tasks (default: the config's eval.tasks)")
    e.add_argument("--steps", type=int, help="inner steps at test time (may exceed training's)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="evaluation setting override, e.g. --set task.k_shot=5")
    e.add_argument("--plot", action="store_true", help="also write adaptation.png and training.png")
    e.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("reproduce", help="run one paper experiment and write table.md and results.json",
                       epilog="Further options go to the experiment itself where it has its own command line "
                              "(turtle-table6: --data thesis, --models, --shots, --steps, --report, --set ...; "
                              "`python -m metagrad.experiments.reproduce.turtle_table6 --help` lists them).")
    r.add_argument("name", help="experiment name (see `metagrad list`)")
    r.add_argument("--quick", action="store_true", help="a shortened run for smoke checks")
    r.add_argument("--seeds", type=int, help="number of seeds where the experiment aggregates runs")
    r.add_argument("--out", help="output directory (default runs/reproduce/<name>[-quick])")

    sub.add_parser("list", help="list presets and reproducible experiments")
    return p


def _run(args: argparse.Namespace) -> int:
    from .experiments import runner
    if args.command == "train":
        if args.resume:
            if args.config or args.overrides:
                raise ValueError("train: --resume reads the config from the run directory; drop the preset and --set")
            run = runner.train(out=args.resume, resume=True, progress=not args.no_progress, threads=args.threads)
        else:
            if not args.config:
                raise ValueError("train: give a preset name or a JSON config (see `metagrad list`)")
            run = runner.train(args.config, args.out, overrides=args.overrides, progress=not args.no_progress,
                               threads=args.threads)
        _print_eval(run / "eval.json")
        print(f"run written to {run}")
    elif args.command == "eval":
        res = runner.evaluate_run(args.run, args.tasks, args.steps, args.overrides, plot=args.plot,
                                  progress=not args.no_progress)
        _print_result(res)
    elif args.command == "reproduce":
        from .experiments.reproduce import load
        mod = load(args.name)
        out = Path(args.out) if args.out else Path("runs") / "reproduce" / (args.name + ("-quick" if args.quick else ""))
        if args.extra:
            # experiment-specific options (e.g. turtle-table6 --data thesis) go to its own parser
            if not hasattr(mod, "main"):
                raise ValueError(f"reproduce: {args.name} takes only --quick, --seeds and --out, got {' '.join(args.extra)}")
            mod.main([*args.extra, "--out", str(out), *(["--quick"] if args.quick else []),
                      *([] if args.seeds is None else ["--seeds", str(args.seeds)])])
        else:
            mod.run(out, quick=args.quick, seeds=args.seeds)
        print((out / "table.md").read_text())
        print(f"written to {out}")
    elif args.command == "list":
        from .experiments.presets import PRESETS
        from .experiments.reproduce import EXPERIMENTS, load
        print("presets:")
        for name in sorted(PRESETS):
            print(f"  {name}")
        print("experiments (metagrad reproduce NAME):")
        for name in sorted(EXPERIMENTS):
            print(f"  {name:24s} {getattr(load(name), 'DESCRIPTION', '')}")
    return 0


def _print_result(res: dict) -> None:
    if res["metric"] == "accuracy":
        print(f"accuracy {100 * res['mean']:.2f}% ± {100 * res['ci95']:.2f}% "
              f"({res['n_tasks']} tasks, {res['steps']} steps, k={res.get('k_shot')})")
    else:
        print(f"{res['metric']} {res['mean']:.4f} ± {res['ci95']:.4f} "
              f"({res['n_tasks']} tasks, {res['steps']} steps, k={res.get('k_shot')})")


def _print_eval(path: Path) -> None:
    if path.exists():
        _print_result(json.loads(path.read_text()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "reproduce":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("metagrad: interrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, ArithmeticError) as e:
        if os.environ.get("METAGRAD_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"metagrad: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
