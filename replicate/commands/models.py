"""``replicate models [--json]``: the registered models, their variants, claims and tiers."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``models`` subcommand."""
    parser = subparsers.add_parser("models", help="list the registered models")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run(args: argparse.Namespace) -> int:
    from replicate.catalog import model_rows
    from replicate.console import print_models

    rows = model_rows()
    print_json(rows) if args.json else print_models(rows)
    return 0
