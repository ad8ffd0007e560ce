"""``replicate history [--model NAME] [--json] [overrides]``: past jobs from the store; with a
model, its metric per suite with verdicts, regressions (and what changed) and drift."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import add_store_overrides, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``history`` subcommand."""
    parser = subparsers.add_parser("history", help="past jobs from the store: replicate history [--model NAME]")
    add_store_overrides(parser)
    parser.add_argument("--model", default=None, help="one model: its metric per suite, regressions and drift")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run(args: argparse.Namespace) -> int:
    from replicate.commands import store_config
    from replicate.config.conf_tree import group_options
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
        print_json(annotate_jobs(rows, series) if model else rows)
    else:
        if series:
            print_history(series, title=f"{model}: metric over time ({len(series)} suite results)")
        print_jobs(rows, title=f"history{' of ' + model if model else ''} ({len(rows)} jobs)")
    return 0
