"""``replicate report [--suite-id ID] [--out DIR] [overrides]``: the static HTML report of a suite.

Reads the store the composed config names (``store=...``, ``results_dir=...``), writes
``index.html``, one page per model and the plots to ``--out`` (default
``<results_dir>/reports/<suite id>/``) and prints the index's path. Without ``--suite-id`` it
reports the latest suite. An empty store or an unknown suite id is a UserInputError (exit 2,
naming it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from replicate.commands import add_store_overrides


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand on the CLI's subparsers."""
    parser = subparsers.add_parser("report", help="write the HTML report of a suite: replicate report [--suite-id ID]")
    add_store_overrides(parser)
    parser.add_argument("--suite-id", default=None, help="the suite to report (default: the latest)")
    parser.add_argument("--out", default=None, help="output folder (default: <results_dir>/reports/<suite id>)")
    parser.add_argument("--json", action="store_true", help="print {suite_id, index} as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report; typed errors propagate to the CLI (exit 2)."""
    from replicate.commands import store_config
    from replicate.errors import ConfigError
    from replicate.leaderboard import check_suite, latest_suite_id
    from replicate.store.results_store import open_existing

    suite_id = args.suite_id
    cfg = store_config("report", args.overrides)
    store = open_existing(cfg.store)   # read-only: a missing SQLite file is exit 2, never created
    try:
        if suite_id is None:
            suite_id = latest_suite_id(store)
            if suite_id is None:
                raise ConfigError("suite", f"the store {store!r} holds no suite yet: run `replicate suite` first")
        check_suite(store, suite_id)
        index = _write(store, suite_id, args.out, cfg.results_dir)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"suite_id": suite_id, "index": str(index)}))
    else:
        print(f"report of suite {suite_id}: {index}")
    return 0


def _write(store: Any, suite_id: str, out: Optional[str], results_dir: str) -> Path:
    """Write the report into ``out`` (or the default folder under ``results_dir``).

    Raises:
        UserInputError: the folder cannot be created or written (a file, a read-only or
            virtual file system), naming ``--out`` (or ``results_dir``) and the path.
    """
    from replicate.errors import UserInputError
    from replicate.report import default_report_dir, write_report

    folder = Path(out) if out else default_report_dir(results_dir, suite_id)
    try:
        return write_report(store, suite_id, folder)
    except OSError as exc:
        where = f"--out {out}" if out else f"results_dir={results_dir} ({folder})"
        # mkdir on an existing file says "File exists": say what is actually wrong.
        reason = "a file, not a folder" if folder.is_file() else (exc.strerror or str(exc))
        raise UserInputError(f"{where}: cannot write the report there ({reason}: {exc.filename or folder})") from None
