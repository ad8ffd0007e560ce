"""``replicate reference list|show|promote|retire|import``: the lab's reference runs for the full
tier's 25% check (replicate/reference_runs.py).

- ``list [--model M] [--status S]``: every reference run: id, status, model group, recipe, the
  metric, loss and weights' drift at the early point, the final metric, its source.
- ``show ID``: one run in full.
- ``promote ID`` / ``retire ID``: a candidate counts from the next job of its recipe on; a retired
  run no longer does.
- ``import FILE``: a curve transcribed from a published training log (JSON: model, variant,
  framework, tier, hardware, recipe, metric_name, direction, fraction, early_metric, optional
  early_loss, early_drift, final_metric, final_loss, and source, which says where it was read),
  saved as a candidate.

Exit 2 names what is wrong: an unknown id, a bad file, a missing store.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from replicate.commands import add_store_overrides, print_json
from replicate.errors import DataError, UserInputError

MAX_IMPORT_BYTES = 64 * 1024
SHOWN = ("id", "status", "model", "variant", "framework", "tier", "hardware", "recipe", "metric_name", "fraction",
         "early_metric", "early_loss", "early_drift", "final_metric", "source")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``reference`` and its actions."""
    parser = subparsers.add_parser("reference", help="the lab's reference runs for the full tier's 25% check: "
                                                     "replicate reference list|show|promote|retire|import")
    actions = parser.add_subparsers(dest="reference_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every reference run")
    listing.add_argument("--model", default=None)
    listing.add_argument("--status", default=None, choices=("candidate", "promoted", "retired"))
    for name, what in (("show", "one run in full"), ("promote", "make a candidate count"),
                       ("retire", "stop a run from counting")):
        action = actions.add_parser(name, help=what)
        action.add_argument("id", type=int)
    imported = actions.add_parser("import", help="a curve from a published training log (JSON)")
    imported.add_argument("file")
    for action in actions.choices.values():
        add_store_overrides(action)
        action.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


class UnknownReferenceRun(UserInputError):
    def __init__(self, run_id: int):
        super().__init__(f"reference run {run_id}: no such run (replicate reference list)")


def _import(store: Any, path: str) -> dict[str, Any]:
    from replicate.json_files import read_json

    record = read_json(path, MAX_IMPORT_BYTES)
    if not isinstance(record, dict):
        raise DataError(path, "a reference curve is one JSON object")
    if record.get("job_id") is not None or record.get("status", "candidate") != "candidate":
        raise DataError(path, "an imported curve has no job_id and starts as a candidate (promote it after)")
    if not str(record.get("source") or "").strip():
        raise DataError(path, "'source' must say where the curve was read (the paper's or repository's log)")
    try:
        run_id = store.add_reference_run(record)
    except ValueError as exc:
        raise DataError(path, str(exc)) from None
    return next(r for r in store.reference_runs() if r["id"] == run_id)


def run(args: argparse.Namespace) -> int:
    from replicate.commands import store_config
    from replicate.store.results_store import open_existing

    store = open_existing(store_config("reference", args.overrides).store)
    try:
        action = args.reference_action
        if action == "list":
            rows = store.reference_runs(model=args.model, status=args.status)
        elif action == "import":
            rows = [_import(store, args.file)]
        elif action == "show":
            rows = [r for r in store.reference_runs() if r["id"] == args.id]
        else:
            changed = store.set_reference_status(args.id, "promoted" if action == "promote" else "retired")
            rows = [changed] if changed is not None else []
        if action != "list" and not rows:
            raise UnknownReferenceRun(args.id)
    finally:
        store.close()
    if args.json:
        print_json(rows if action == "list" else rows[0])
    elif action == "show":
        print(json.dumps(rows[0], indent=2))
    else:
        _print(rows, action)
    return 0


def _print(rows: list[dict[str, Any]], action: str) -> None:
    from rich.table import Table

    from replicate.console import terminal

    if action in ("promote", "retire", "import"):
        row = rows[0]
        print(f"reference run {row['id']}: {row['status']} ({row['model']} {row['tier']} on {row['hardware']}, "
              f"recipe {row['recipe']})")
        return
    table = Table(title=f"reference runs ({len(rows)})")
    for column in SHOWN:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else (f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]))
                        for c in SHOWN))
    terminal().print(table)
