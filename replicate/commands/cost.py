"""``replicate cost [--suite-id ID] [--json] [overrides]``: what replication costs, per suite and per model.

For each suite (or the one ``--suite-id`` names) and each model: accelerator-hours, cost, the
cost saved by early aborts, the time lost to restarts and the cost per PASS. Without
``--suite-id`` the model rows cover the whole history of the store. An unknown suite id is a
UserInputError (exit 2, naming it).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from replicate.commands import add_store_overrides


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``cost`` subcommand on the CLI's subparsers."""
    parser = subparsers.add_parser("cost", help="cost per suite and per model: replicate cost [--suite-id ID]")
    add_store_overrides(parser)
    parser.add_argument("--suite-id", default=None, help="one suite (default: every suite)")
    parser.add_argument("--json", action="store_true", help="print {suites, models} as JSON")
    return parser


def cost_view(store: Any, suite_id: Optional[str]) -> dict[str, list[dict[str, Any]]]:
    """Per-suite and per-model cost rows (one suite, or every suite and the whole history).

    Raises:
        UnknownSuite: ``suite_id`` is given and the store has no such suite.
    """
    from replicate.leaderboard import check_suite, cost_summary, model_costs

    if suite_id is not None:
        check_suite(store, suite_id)
    ids = [suite_id] if suite_id is not None else [s["suite_id"] for s in store.suites()]
    return {"suites": [cost_summary(store, i) for i in ids], "models": model_costs(store, suite_id)}


def run(args: argparse.Namespace) -> int:
    """Print the cost view; typed errors propagate to the CLI (exit 2)."""
    from replicate.commands import store_config
    from replicate.store.results_store import open_existing

    suite_id = args.suite_id
    cfg = store_config("cost", args.overrides)
    store = open_existing(cfg.store)   # read-only: a missing SQLite file is exit 2, never created
    try:
        view = cost_view(store, suite_id)
    finally:
        store.close()
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print_costs(view, suite_id)
    return 0


def _cost_table(title: str, first: str, rows: list[dict[str, Any]], key: str):
    from rich.table import Table

    from replicate.formatting import duration, priced

    table = Table(title=title)
    for col in (first, "jobs", "PASS", "accelerator-h", "cost", "saved by early aborts", "lost to restarts",
                "cost per PASS"):
        table.add_column(col, justify="left" if col == first else "right")
    for row in rows:
        currency = row.get("currency")
        table.add_row(str(row[key]), str(row["jobs"]), str(row["passes"]), f"{row['accelerator_hours']:.3f}",
                      priced(row["cost"], currency), priced(row["early_abort_saved_cost"], currency),
                      duration(row["lost_s"]), priced(row["cost_per_pass"], currency))
    return table


def print_costs(view: dict[str, list[dict[str, Any]]], suite_id: Optional[str]) -> None:
    """The cost view as two rich tables: per suite, then per model."""
    from replicate.console import terminal
    from replicate.formatting import price_note

    console = terminal()
    console.print(_cost_table("cost per suite", "suite", view["suites"], "suite_id"))
    scope = f"suite {suite_id}" if suite_id else "all history"
    console.print(_cost_table(f"cost per model ({scope})", "model", view["models"], "model"))
    note = price_note([*view["suites"], *view["models"]])
    if note:
        console.print(note)
