"""``replicate history [--model NAME] [--suite-id ID] [--limit N] [--json] [overrides]``: the newest
jobs from the store, each with its suite and date; with a model, its metric per suite with
verdicts, regressions (and what changed) and drift; with a suite id, that suite's jobs only.

A year of nightly suites holds thousands of jobs: the job list shows the newest ``--limit``
(default 50; 0 shows all), and "what changed" reads only the jobs of the suites it compares."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import add_store_overrides, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``history`` subcommand."""
    parser = subparsers.add_parser("history", help="past jobs from the store: replicate history [--model NAME]")
    add_store_overrides(parser)
    parser.add_argument("--model", default=None, help="one model: its metric per suite, regressions and drift")
    parser.add_argument("--suite-id", default=None, help="the jobs of one suite only")
    parser.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT,
                        help=f"show the newest N jobs (default {DEFAULT_LIMIT}; 0: all of them)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


DEFAULT_LIMIT = 50


def _limit(text: str) -> int:
    """``--limit``: a whole number >= 0 (the CLI turns the error into one line, exit 2)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from replicate.commands import store_config
    from replicate.config.conf_tree import group_options
    from replicate.console import print_history, print_jobs
    from replicate.errors import ConfigError
    from replicate.history import annotate_jobs, diff_suites, model_history
    from replicate.store.results_store import open_existing

    model = args.model
    if model is not None and model not in group_options("model"):
        raise ConfigError("--model", f"unknown {model!r}; allowed: {', '.join(group_options('model'))}")
    cfg = store_config("history", args.overrides)
    store = open_existing(cfg.store)   # read-only: a missing SQLite file is exit 2, never created
    try:
        suite_id = args.suite_id
        if suite_id is not None and not store.count_jobs(suite_id=suite_id):
            raise ConfigError("--suite-id", f"no job of suite {suite_id!r} in the store")
        rows = store.jobs(model=model, suite_id=suite_id, limit=args.limit or None)
        total = store.count_jobs(model=model, suite_id=suite_id)
        series: list = []
        if model:
            # Its metric per suite, marked with regressions and drift (replicate.history); the
            # jobs diffed for "what changed" are those of the regressions' suites only.
            groups = store.group_history(model=model)
            compared = [job for earlier in diff_suites(groups) for job in store.jobs(model=model, suite_id=earlier)]
            series = model_history(groups, compared)
    finally:
        store.close()
    if args.json:
        print_json(annotate_jobs(rows, series) if model else rows)
        return 0
    if series:
        print_history(series, title=f"{model}: metric over time ({len(series)} suite results)")
    shown = f"{len(rows)} jobs" if len(rows) == total else f"newest {len(rows)} of {total} jobs; --limit 0 for all"
    scope = "".join((f" of {model}" if model else "", f" in suite {suite_id}" if suite_id else ""))
    print_jobs(rows, title=f"history{scope} ({shown})", with_suite=True)
    return 0
