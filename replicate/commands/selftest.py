"""``replicate selftest [model=M] [framework=F] [defect=D[,D2...]] [--json] [overrides]``: the benchmark's power.

Injects each selected defect of the catalogue (replicate/defects) into its implementation, runs
the pre-flight check and, unless that catches it, the smoke job; plus a clean control per
implementation (replicate/selftest.py). Prints one row per defect and control and the summary:
the share of defects flagged, the share of controls that PASS, and the largest cost share at
which a training-stage defect was caught. Exit 0 whenever the selftest completed: it measures,
it does not judge. Without a filter it runs the whole catalogue (``make selftest``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``selftest`` subcommand on the CLI's subparsers."""
    parser = subparsers.add_parser("selftest", help="inject the defect catalogue and measure what the benchmark "
                                                     "catches: replicate selftest [model=M] [defect=D]")
    parser.add_argument("overrides", nargs="*", help="model=NAME, framework=F, defect=NAME[,NAME...] (filters) "
                                                     "and Hydra overrides, e.g. results_dir=...")
    parser.add_argument("--json", action="store_true", help="print {suite_id, rows, summary, report} as JSON")
    parser.add_argument("--list", action="store_true", help="list the defect catalogue (runs nothing)")
    return parser


def catalogue_rows() -> list[dict[str, Any]]:
    """The catalogue as rows: name, stage, type, the implementations it applies to (the first is
    where the selftest injects it), what is wrong, and what a reengineer got wrong."""
    from replicate.defects import all_defects

    return [{"defect": d.name, "stage": d.stage, "type": d.type, "targets": [str(t) for t in d.targets],
             "description": d.description, "why": d.why} for d in all_defects()]


def run(args: argparse.Namespace) -> int:
    """Run the selftest; typed errors propagate to the CLI (exit 2)."""
    from replicate.selftest import run_selftest

    if args.list:
        rows = catalogue_rows()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print_catalogue(rows)
        return 0
    stream = sys.stderr if args.json else sys.stdout
    result = run_selftest(args.overrides, echo=lambda line: print(line, file=stream, flush=True))
    if args.json:
        print(json.dumps({"suite_id": result.suite_id, "rows": result.rows, "summary": result.summary,
                          "report": result.report, "logged": result.logged}, indent=2, default=str))
    else:
        print_selftest(result.rows, result.summary, result.suite_id)
        if result.report:
            print(f"report: {result.report}")
        if result.logged:
            print(result.logged)
    return 0


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def print_selftest(rows: list[dict[str, Any]], summary: dict[str, Any], suite_id: str) -> None:
    """The rows as a rich table, then one summary line."""
    from rich.table import Table

    from replicate.console import VERDICT_STYLES, terminal
    from replicate.power import CONTROL

    table = Table(title=f"selftest {suite_id}")
    for col in ("defect", "model", "stage", "type", "verdict", "flagged", "caught at", "cost share"):
        table.add_column(col, no_wrap=col == "defect")   # a name cut short would name no defect
    for row in rows:
        model = row["model"] if row["framework"] == "torch" else f"{row['model']} ({row['framework']})"
        verdict = row.get("verdict") or "-"
        failed = (row.get("preflight") or {}).get("caught_by")
        caught = row.get("caught_at") or "-"
        if failed:
            caught += f" ({', '.join(failed)})"
        if row["role"] == CONTROL:
            flagged = "[red]false alarm[/]" if row["flagged"] else "no"
        else:
            flagged = "[green]yes[/]" if row["flagged"] else "[red]no[/]"
        table.add_row(row.get("defect") or "(clean control)", model, row.get("stage") or "-",
                      row.get("defect_type") or "-", f"[{VERDICT_STYLES.get(verdict, 'white')}]{verdict}[/]", flagged,
                      caught, _percent(row.get("cost_share")))
    console = terminal()
    console.print(table)
    console.print(summary_line(summary), markup=False)


def print_catalogue(rows: list[dict[str, Any]]) -> None:
    """The defect catalogue as a rich table."""
    from rich.table import Table

    from replicate.console import terminal

    table = Table(title=f"defect catalogue ({len(rows)})")
    for col in ("defect", "stage", "type", "injected into", "also applies to", "what is wrong"):
        table.add_column(col, no_wrap=col == "defect")
    for row in rows:
        table.add_row(row["defect"], row["stage"], row["type"], row["targets"][0], ", ".join(row["targets"][1:]),
                      row["description"])
    terminal().print(table)


def summary_line(summary: dict[str, Any]) -> str:
    """e.g. ``flagged 19/21 defects (90%); controls PASS 8/8 (100%); training-stage defects caught
    at <= 27% of a run's cost``."""
    line = (f"flagged {summary['flagged']}/{summary['defects']} defects ({_percent(summary['flagged_share'])}); "
            f"controls PASS {summary['controls_pass']}/{summary['controls']} "
            f"({_percent(summary['controls_pass_share'])}); ")
    worst = summary["training_max_cost_share"]
    line += ("no training-stage defect caught" if worst is None
             else f"training-stage defects caught at <= {_percent(worst)} of a run's cost")
    if summary.get("not_measured"):
        line += f"; {summary['not_measured']} not measured (INFRA)"
    for key, what in (("not_tuned", "written before the checks"), ("tuned", "written after seeing the checks")):
        half = summary.get(key) or {}
        if half.get("defects"):
            line += f"; {what}: {half['flagged']}/{half['defects']} ({_percent(half['flagged_share'])})"
    return line
