"""``replicate run model=NAME [tier=smoke] [hardware=cpu] [seed=0]``: one job, judged and stored."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import add_overrides, echo_for, print_json, print_outputs


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``run`` subcommand."""
    parser = subparsers.add_parser("run", help="run one job: replicate run model=NAME [tier=smoke] [hardware=cpu] "
                                               "[seed=0]")
    add_overrides(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from replicate.console import print_jobs, verdict_summary
    from replicate.harness import run_one

    result = run_one(args.overrides, echo=echo_for(args))
    if args.json:
        print_json({"suite_id": result.suite_id, "jobs": result.jobs, "verdicts": result.counts,
                    "logged": result.logged})
    else:
        print_jobs(result.jobs)
        print(verdict_summary(result.counts, "job"))
        print_outputs(result)
    return 0 if result.all_pass else 1
