"""``metagrad`` command line: argument parsing only; the work is in ``experiments.runner``.

    metagrad train PRESET_OR_CONFIG [--set key=value ...] [--out DIR] [--resume DIR] [--tensorboard]
    metagrad eval RUN_DIR_OR_KEPT_RUN [--tasks N] [--steps T] [--set key=value ...] [--plot]
    metagrad reproduce NAME [--quick] [--seeds N] [--out DIR] [experiment options, e.g. --data thesis]
    metagrad list
    metagrad runs [PATH ...] [--plot PNG] [--tensorboard DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .errors import ConfigError, Interrupted, MetagradError, RunError, TimeLimitReached

__all__ = ["main"]


def duration(text: str) -> float:
    """Seconds from ``3600``, ``45s``, ``90m`` or ``2.5h`` (``--time-limit``)."""
    units = {"s": 1, "m": 60, "h": 3600}
    num, scale = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(num) * scale
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: seconds, or a number with s, m or h (90m, 2.5h)")
    return seconds


def _deadline(limit: Optional[float]) -> Optional[float]:
    """The ``time.time()`` at which ``--time-limit`` seconds from now end (``None``: no limit)."""
    return None if limit is None else time.time() + limit


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
    t.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the config's device, cpu)")
    t.add_argument("--overwrite", action="store_true", help="replace the run files in a non-empty --out")
    t.add_argument("--time-limit", type=duration, metavar="T", help="stop training after T (3600, 90m, 2.5h) "
                   "with a checkpoint, e.g. a job's wall-time limit; --resume continues")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--tensorboard", action="store_true", help="also write the metrics as TensorBoard events to "
                   "RUN/tensorboard (needs `pip install tensorboard`; a resumed run keeps writing them)")
    t.add_argument("--print-config", action="store_true", help="print the config the run would record (the preset "
                   "with every --set applied, checked) as JSON, and exit without training")

    e = sub.add_parser("eval", help="evaluate a trained run on held-out tasks")
    e.add_argument("run", help="run directory written by `metagrad train`, or a run a reproduction kept "
                   "(reproductions/NAME/cells/CELL_sSEED.run.pt: evaluated and printed, nothing written)")
    e.add_argument("--tasks", type=int, help="number of test tasks (default: the config's eval.tasks)")
    e.add_argument("--steps", type=int, help="inner steps at test time (may exceed training's)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="evaluation setting override, e.g. --set task.k_shot=5")
    e.add_argument("--plot", action="store_true", help="also write adaptation.png and training.png")
    e.add_argument("--state", choices=("best", "final"), help="the best validated state or the last one (default: "
                   "the run's eval.test_state, what train tested: best where it validated)")
    e.add_argument("--device", help="cpu, cuda, cuda:1 or mps (a run trained on a GPU evaluates on a CPU)")
    e.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("reproduce", help="run one paper experiment and write table.md and results.json",
                       add_help=False)
    r.add_argument("name", nargs="?", help="experiment name (see `metagrad list`); "
                                           "`metagrad reproduce NAME --help` lists its options")

    sub.add_parser("list", help="list presets and reproducible experiments")
    ls = sub.add_parser("runs", help="the run folders under PATHs: what each trains, how far, its numbers")
    ls.add_argument("paths", nargs="*", default=["runs"], metavar="PATH", help="run folders or folders holding "
                    "them (default runs)")
    ls.add_argument("--plot", metavar="PNG", help="also draw their training losses and validation curves side by side")
    ls.add_argument("--tensorboard", metavar="DIR", help="also write each run's metrics as TensorBoard events to "
                    "DIR/<run folder> (then: tensorboard --logdir DIR; needs `pip install tensorboard`)")
    return p


def _run(args: argparse.Namespace) -> int:
    from .experiments import runner
    if args.command == "train":
        if args.resume and (args.config or args.out):
            raise ConfigError("train: --resume reads the config from the run directory; drop the preset and "
                              "--out (--set may change only resumable settings, e.g. outer.lr)")
        if not args.resume and not args.config:
            raise ConfigError("train: give a preset name or a JSON config (see `metagrad list`)")
        if args.print_config:
            print(json.dumps(runner.planned_config(args.config, args.overrides, args.resume).to_dict(), indent=2))
            return 0
        deadline = _deadline(args.time_limit)
        _check_out(args.out, "train")
        if args.resume:
            run = runner.train(out=args.resume, resume=True, overrides=args.overrides, progress=not args.no_progress,
                               threads=args.threads, device=args.device, deadline=deadline,
                               tensorboard=args.tensorboard)
        else:
            run = runner.train(args.config, args.out, overrides=args.overrides, progress=not args.no_progress,
                               threads=args.threads, device=args.device, overwrite=args.overwrite, deadline=deadline,
                               tensorboard=args.tensorboard)
        if os.environ.get("RANK", "0") == "0":   # under torchrun, rank 0 alone reports (and wrote the files)
            _print_eval(run / "eval.json")
            print(f"run written to {run}")
    elif args.command == "eval":
        res = runner.evaluate_run(args.run, args.tasks, args.steps, args.overrides, plot=args.plot, state=args.state,
                                  progress=not args.no_progress, device=args.device)
        _print_result(res)
    elif args.command == "reproduce":
        return _reproduce(args.name, args.extra)
    elif args.command == "runs":
        from .experiments.listing import find_records, find_runs, format_records, format_runs, plot_runs, read_run
        from .plotting import figure_path
        if args.plot is not None:   # a bad file name is refused before the runs are read
            figure_path(args.plot, "runs --plot")
        if args.tensorboard is not None:
            from .tensorboard_log import export_folder
            export_folder(args.tensorboard)
        infos = [read_run(p) for p in find_runs(args.paths)]
        records = find_records(args.paths)
        print(format_runs(infos) if infos or not records else "no runs found")
        if records:
            print(format_records(records))
        if args.plot is not None:
            plot_runs(infos, args.plot)
            print(f"plot written to {args.plot}")
        if args.tensorboard is not None:
            from .tensorboard_log import export_runs
            export_runs([i.path for i in infos], args.tensorboard)
            print(f"TensorBoard events of {len(infos)} run(s) written to {args.tensorboard}: "
                  f"tensorboard --logdir {args.tensorboard}")
    elif args.command == "list":
        from .experiments.presets import PRESETS, get_preset
        print("presets (metagrad train NAME; --print-config shows every setting):")
        for name in sorted(PRESETS):
            print(f"  {name:29s} {get_preset(name).summary()}")
        _print_experiments()
    return 0


_REPRODUCE_USAGE = ("usage: metagrad reproduce NAME [--quick] [--out DIR] [--report] [--only KEY=VALUE] [--jobs N] ...\n"
                    "       metagrad reproduce all [--out ROOT] [--quick] [--report] [--time-limit T] ...\n\n"
                    "Run one paper experiment (train its missing runs, resume cut-off ones) and write table.md and "
                    "results.json; `all`: every one of them, cheap first.\n"
                    "`metagrad reproduce NAME --help` lists the options of experiment NAME.\n")


def _print_experiments() -> None:
    from .experiments import specs
    print("experiments (metagrad reproduce NAME):")
    for name in sorted(specs.SPECS):
        print(f"  {name:26s} {specs.get(name).description}")


def _reproduce_parser(spec: object) -> argparse.ArgumentParser:
    """The options of ``metagrad reproduce NAME``: the sweep's own, then the experiment's."""
    p = argparse.ArgumentParser(prog=f"metagrad reproduce {spec.name}", description=spec.description)
    p.add_argument("--out", help="output folder: table.md, results.json and cells/ (one JSON per finished run; "
                                 "a rerun reuses them and resumes a cut-off run)")
    p.add_argument("--quick", action="store_true", help="a shortened smoke run (one seed, short training)")
    p.add_argument("--seeds", type=int, help=f"runs per cell, seeds 0..N-1 (default {spec.seeds}, the same for every row)")
    p.add_argument("--only-seeds", nargs="+", type=int, metavar="S", help="train just these seeds (split a cell across jobs)")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help="only the cells whose label matches, e.g. --only model=so-TURTLE --only steps=5,10")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every cell (the grammar of metagrad train); runs record it")
    p.add_argument("--jobs", type=int, default=1, help="train cells as N independent processes")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    p.add_argument("--report", action="store_true", help="tabulate the cached runs only; train nothing")
    p.add_argument("--list", action="store_true", help="list the cells (their --only labels, what each trains, runs "
                   "done and in training); train nothing")
    p.add_argument("--time-limit", type=duration, metavar="T", help="stop training after T (3600, 90m, 2.5h): the "
                   "run in training checkpoints, the table is written as it stands; the same command continues")
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)   # --jobs' processes: the parent's time limit
    for key, default in spec.options.items():
        p.add_argument(f"--{key.replace('_', '-')}", dest=f"opt_{key}", default=default, type=type(default),
                       choices=spec.choices.get(key), help=f"experiment option (default {default!r})")
    return p


def _check_out(out: Optional[str | Path], where: str) -> None:
    """Refuse an ``--out`` that names a file before any work (a missing folder is made later)."""
    if out and Path(out).exists() and not Path(out).is_dir():
        raise RunError(f"{where}: --out {str(out)!r} is a file, not a folder; give a folder (made if missing)")


def _reproduce_all_parser() -> argparse.ArgumentParser:
    from .experiments.records import RECORDS
    p = argparse.ArgumentParser(prog="metagrad reproduce all", description="Every paper table and figure, in the "
                                "order of metagrad.experiments.records.RECORDS (cheap first), each as `metagrad "
                                "reproduce NAME` would run it, then one status line per record.")
    p.add_argument("--out", default="runs/reproduce", help="root folder: one record folder per experiment "
                                                           "(default runs/reproduce; the committed ones: reproductions)")
    p.add_argument("--quick", action="store_true", help="every experiment's smoke run (folders RECORD-quick)")
    p.add_argument("--report", action="store_true", help="tabulate what has run; train nothing")
    p.add_argument("--time-limit", type=duration, metavar="T", help="stop training after T; the records left are "
                   "tabulated, and the same command continues")
    p.add_argument("--jobs", type=int, default=1, help="train each record's cells as N processes")
    p.add_argument("--records", default="", help=f"comma-separated records to run (default all: {', '.join(RECORDS)})")
    return p


def _reproduce_all(argv: Sequence[str]) -> int:
    from .experiments.records import format_status, run_all
    args = _reproduce_all_parser().parse_args(list(argv))
    if args.jobs < 1:
        raise ConfigError(f"reproduce all: --jobs must be >= 1, got {args.jobs}")
    deadline = _deadline(args.time_limit)
    _check_out(args.out, "reproduce all")
    status = run_all(args.out, quick=args.quick, report_only=args.report, deadline=deadline, jobs=args.jobs,
                     only=[r for r in args.records.split(",") if r],
                     log=lambda m: print(time.strftime("%H:%M:%S"), m, file=sys.stderr, flush=True))
    print(format_status(status))
    print(f"records under {args.out}")
    return 0


def _reproduce(name: Optional[str], argv: Sequence[str]) -> int:
    from .experiments import specs, sweep
    if name == "all":
        return _reproduce_all(argv)
    if name is None:
        raise ConfigError(f"reproduce: name an experiment: {', '.join(sorted(specs.SPECS))} "
                          f"(`metagrad reproduce --help` describes each)")
    spec = specs.get(name)
    args = _reproduce_parser(spec).parse_args(list(argv))
    if args.jobs < 1 or (args.seeds is not None and args.seeds < 1) or any(s < 0 for s in args.only_seeds or ()):
        raise ConfigError(f"reproduce: --jobs and --seeds must be >= 1 and --only-seeds >= 0, got jobs={args.jobs}, "
                          f"seeds={args.seeds}, only-seeds={args.only_seeds}")
    if args.report and args.only_seeds is not None:
        raise ConfigError("reproduce: --report trains nothing; drop --only-seeds")
    out = Path(args.out) if args.out else Path("runs") / "reproduce" / (name + ("-quick" if args.quick else ""))
    _check_out(out, "reproduce")
    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_")}
    if args.list:
        for c in sweep.plan(spec, out, quick=args.quick, seeds=args.seeds, overrides=args.overrides, only=args.only,
                            options=options):
            labels = " ".join(f"{k}={v}" for k, v in c["labels"].items())
            print(f"{c['cell']}  [{labels}]  {c['done']} of {c['runs']} runs done"
                  f"{'; ' + c['progress'] if c['progress'] else ''}\n    {c['trains']}")
        return 0
    deadline = args.deadline if args.deadline is not None else _deadline(args.time_limit)
    sweep.run(spec, out, quick=args.quick, seeds=args.seeds, overrides=args.overrides, only=args.only,
              only_seeds=args.only_seeds, options=options, jobs=args.jobs, cell_id=args.cell, report_only=args.report,
              deadline=deadline)
    if args.cell is None:
        print((out / "table.md").read_text())
        print(f"written to {out}")
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
    """Run the ``metagrad`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status:
    0 done (or stopped at ``--time-limit``), 2 bad input (one line on stderr), 128 + signum stopped by
    a signal after checkpointing."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "reproduce" and not args.name and {"-h", "--help"} & set(extra):
        print(_REPRODUCE_USAGE)
        _print_experiments()
        return 0
    if extra and args.command != "reproduce":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return _run(args)
    except BrokenPipeError:   # `metagrad ... | head`: the reader left; no traceback (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("metagrad: interrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130
    except Interrupted as e:   # SIGINT / SIGTERM: checkpointed after the iteration under way
        print(f"metagrad: {e}", file=sys.stderr)
        return 128 + e.signum
    except TimeLimitReached as e:   # not an error: the run stopped where it was asked to
        print(f"metagrad: {e}", file=sys.stderr)
        return 0
    except MetagradError as e:   # bad input: one line; anything else is a bug and keeps its traceback
        if os.environ.get("METAGRAD_DEBUG"):
            raise
        print(f"metagrad: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
