"""``replicate check model=NAME [--visual]``: the pre-flight check (replicate/check.py)."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import add_overrides, echo_for, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``check`` subcommand."""
    parser = subparsers.add_parser("check", help="pre-flight a model without training: replicate check model=NAME")
    add_overrides(parser)
    parser.add_argument("--visual", action="store_true", help="also write a PNG of training samples")
    return parser


def run(args: argparse.Namespace) -> int:
    from replicate.check import run_check

    report = run_check(args.overrides, echo=echo_for(args), visual=args.visual)
    if args.json:
        print_json({"model": report.model, "ok": report.ok, "checks": report.checks})
    return 0 if report.ok else 1
