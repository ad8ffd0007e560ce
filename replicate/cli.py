"""The `replicate` command: a thin layer over plain functions; Hydra overrides follow the subcommand.

Exit codes: 0 success (suite: every verdict PASS), 1 a verdict is not PASS (MEASURED, a job with
nothing to compare with, included) or the harness failed, 2 bad input (config key, file,
resource) with a one-line message naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from replicate.errors import Terminated, ZooError

# Subcommands that live in their own module under replicate/commands/: each module defines
# ``add_parser(subparsers)`` (registering a subcommand of the module's name) and ``run(args) -> int``.
COMMAND_MODULES = ("darknet", "report", "cost", "k8s", "selftest")


def _command_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(f"replicate.commands.{name}") for name in COMMAND_MODULES]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replicate", description="Replicate-and-evaluate a model zoo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, overrides: bool = True, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        if overrides:
            p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=faster_rcnn seed=1")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("run", "run one job: replicate run model=NAME [tier=smoke] [hardware=cpu] [seed=0]")
    suite = add("suite", "run every job of a suite via Ray: replicate suite [suite=smoke]")
    suite.add_argument("--retry-failed", action="store_true",
                       help="run again the jobs of this suite id that ended ERROR (INFRA ones always run again)")
    suite.add_argument("--allow-fail", action="store_true",
                       help="exit 0 whenever the suite completed, whatever the verdicts")
    check = add("check", "pre-flight a model without training: replicate check model=NAME")
    check.add_argument("--visual", action="store_true", help="also write a PNG of training samples")
    add("models", "list the registered models", overrides=False)
    history = add("history", "past jobs from the store: replicate history [--model NAME]")
    history.add_argument("--model", default=None, help="one model: its metric per suite, regressions and drift")
    calibrate = add("calibrate", "measure a smoke reference over seeds x numeric variants: replicate calibrate "
                    "model=NAME", json_flag=True)
    calibrate.add_argument("--seeds", default=None, help="comma-separated seeds, one draw each (default 0-11)")
    calibrate.add_argument("--variants", default=None,
                           help="numeric variants (torch: default,avx2,avx512; TF: onednn0,onednn1; default all)")
    calibrate.add_argument("--threads", default="1,2", help="thread counts, alternating over draws (default 1,2)")
    calibrate.add_argument("--crossed", action="store_true",
                           help="every seed under every variant (default: one variant per seed, in turn)")
    calibrate.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                           help="draws run side by side while their threads fit in this many CPUs (default: all)")
    for module in _command_modules():
        module.add_parser(sub)
    evaluate = add("evaluate", "COCO-evaluate a detections file", overrides=False, json_flag=False)
    evaluate.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    evaluate.add_argument("--detections", required=True, help="COCO results JSON (a list of detections)")
    evaluate.add_argument("--iou-type", default="bbox", choices=("bbox", "segm"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # Overrides may come before or after flags (argparse stops collecting positionals at a flag).
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _cmd_run, "suite": _cmd_suite, "check": _cmd_check, "models": _cmd_models,
        "history": _cmd_history, "evaluate": _cmd_evaluate, "calibrate": _cmd_calibrate,
    }
    handlers.update({name: module.run for name, module in zip(COMMAND_MODULES, _command_modules())})
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return handlers[args.command](args)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # A library may catch the Terminated our handler raised and raise a plain KeyboardInterrupt
        # of its own (Ray's wait does): the flag still says which signal it was.
        if isinstance(exc, Terminated) or _TERMINATED.is_set():
            print("terminated (SIGTERM): finished jobs are in the store and running ones checkpointed; re-run the "
                  "same suite id to resume", file=sys.stderr)
            return 143
        print("interrupted: finished jobs are in the store; re-run the same suite id to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


_TERMINATED = threading.Event()


def _terminate(signum: int, frame: Any) -> None:
    _TERMINATED.set()
    raise Terminated()


def _echo_for(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines go to stderr with --json, so stdout stays parseable."""
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    return lambda line: print(line, file=stream, flush=True)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cmd_run(args: argparse.Namespace) -> int:
    from replicate.console import print_jobs, verdict_summary
    from replicate.harness import run_one

    result = run_one(args.overrides, echo=_echo_for(args))
    if args.json:
        _print_json({"suite_id": result.suite_id, "jobs": result.jobs, "verdicts": result.counts,
                     "logged": result.logged})
    else:
        print_jobs(result.jobs)
        print(verdict_summary(result.counts, "job"))
        _print_outputs(result)
    return 0 if result.all_pass else 1


def _cmd_suite(args: argparse.Namespace) -> int:
    from replicate.console import print_groups, print_jobs, verdict_summary
    from replicate.harness import run_suite

    result = run_suite(args.overrides, echo=_echo_for(args), retry_failed=args.retry_failed)
    if args.json:
        _print_json({"suite_id": result.suite_id, "jobs": result.jobs, "groups": result.groups,
                     "verdicts": result.counts, "skipped": result.skipped, "report": result.report,
                     "logged": result.logged})
    else:
        print_jobs(result.jobs, title=f"suite {result.suite_id}")
        print_groups(result.groups)
        print(verdict_summary(result.counts, "model group"))
        _print_outputs(result)
    return 0 if (result.all_pass or args.allow_fail) else 1


def _print_outputs(result: Any) -> None:
    """Where the run's results landed besides the store: the HTML report and the W&B files."""
    if result.report:
        print(f"report: {result.report}")
    if result.logged:
        print(result.logged)


def _cmd_check(args: argparse.Namespace) -> int:
    from replicate.check import run_check

    report = run_check(args.overrides, echo=_echo_for(args), visual=args.visual)
    if args.json:
        _print_json({"model": report.model, "ok": report.ok, "checks": report.checks})
    return 0 if report.ok else 1


def _cmd_models(args: argparse.Namespace) -> int:
    from replicate.catalog import model_rows
    from replicate.console import print_models

    rows = model_rows()
    _print_json(rows) if args.json else print_models(rows)
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from replicate.commands import store_config
    from replicate.config.compose import group_options
    from replicate.console import print_history, print_jobs
    from replicate.errors import ConfigError
    from replicate.history import annotate_jobs, model_history
    from replicate.store.results_store import open_existing

    model = args.model
    if model is not None and model not in group_options("model"):
        raise ConfigError("--model", f"unknown {model!r}; allowed: {', '.join(group_options('model'))}")
    cfg = store_config("history", args.overrides)
    store = open_existing(cfg.store)   # read-only: a missing SQLite file is exit 2, never created
    rows = store.jobs(model=model)
    # With a model: its metric per suite, marked with regressions and drift (replicate.history).
    series = model_history(store.group_history(model=model), rows) if model else []
    store.close()
    if args.json:
        _print_json(annotate_jobs(rows, series) if model else rows)
    else:
        if series:
            print_history(series, title=f"{model}: metric over time ({len(series)} suite results)")
        print_jobs(rows, title=f"history{' of ' + model if model else ''} ({len(rows)} jobs)")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    from replicate.errors import ConfigError

    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(flag, f"{text!r}: give at least one non-negative integer")
    return values


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import yaml

    from replicate.calibrate import (
        DEFAULT_SEEDS,
        DEFAULT_THREADS,
        MIN_DRAWS,
        calibrate,
        draw_summary,
        plan_draws,
        record_location,
        smoke_config,
        variants_for,
    )
    from replicate.config.selection import chosen_framework
    from replicate.errors import ConfigError

    echo = _echo_for(args)
    probe = smoke_config(args.overrides)
    framework = chosen_framework(probe)
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else DEFAULT_SEEDS
    threads = _int_list(args.threads, "--threads") if args.threads else list(DEFAULT_THREADS)
    if 0 in threads:
        raise ConfigError("--threads", "thread counts must be >= 1")
    if args.cpus < 1:
        raise ConfigError("--cpus", f"{args.cpus} must be >= 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants \
        else list(variants_for(framework))
    draws = plan_draws(seeds, variants, threads, crossed=args.crossed)
    if len(draws) < MIN_DRAWS:
        echo(f"warning: {len(draws)} draws; a recorded reference should have at least {MIN_DRAWS}")
    block = calibrate(args.overrides, draws, cpus=args.cpus, echo=echo)
    summary = draw_summary(block, float(probe.tier.false_alarm), float(probe.tier.early_check.fraction))
    if args.json:
        _print_json({"reference": block, "implies": summary, "record_under": record_location(args.overrides)})
    else:
        parent, key = record_location(args.overrides).rsplit(".", 1)
        print(f"# {summary['n']} draws: band {summary['band']}, 25% floor {summary['early_floor']}, "
              f"loss bands {summary['early_loss_band']} (25%) {summary['final_loss_band']} (last quarter), "
              f"std/mean {summary['cv']} (false alarm {probe.tier.false_alarm} per job)")
        print(f"# record under {parent}:")
        print(yaml.safe_dump({key: block}, sort_keys=False, width=200, default_flow_style=None))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from replicate.evaluation.coco import evaluate_files

    print(json.dumps(evaluate_files(args.annotations, args.detections, args.iou_type)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
