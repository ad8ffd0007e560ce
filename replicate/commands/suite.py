"""``replicate suite [suite=smoke]``: every job of a suite through the scheduler; group verdicts."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import add_overrides, echo_for, print_json, print_outputs


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``suite`` subcommand."""
    parser = subparsers.add_parser("suite", help="run every job of a suite via Ray: replicate suite [suite=smoke]")
    add_overrides(parser)
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the jobs of this suite id that ended ERROR (INFRA ones always run again)")
    parser.add_argument("--allow-fail", action="store_true",
                        help="exit 0 whenever the suite completed, whatever the verdicts")
    parser.add_argument("--plan", action="store_true",
                        help="print what would run, what each job is judged against and its expected cost; run nothing")
    return parser


def _plan(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from replicate.plan_estimate import plan_of_suite

    suite_id, planned, lines = plan_of_suite(args.overrides)
    if args.json:
        print_json({"suite_id": suite_id, "jobs": [asdict(job) for job in planned]})
    else:
        print("\n".join(lines))
    return 0


def run(args: argparse.Namespace) -> int:
    from replicate.console import print_groups, print_jobs, verdict_summary
    from replicate.harness import run_suite

    if args.plan:
        return _plan(args)

    result = run_suite(args.overrides, echo=echo_for(args), retry_failed=args.retry_failed)
    if args.json:
        print_json({"suite_id": result.suite_id, "jobs": result.jobs, "groups": result.groups,
                    "verdicts": result.counts, "skipped": result.skipped, "report": result.report,
                    "logged": result.logged})
    else:
        print_jobs(result.jobs, title=f"suite {result.suite_id}")
        print_groups(result.groups)
        print(verdict_summary(result.counts, "model group"))
        print_outputs(result)
    return 0 if (result.all_pass or args.allow_fail) else 1
