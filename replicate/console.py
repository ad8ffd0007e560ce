"""Human-readable tables (rich) for jobs, seed groups and the model catalogue."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from replicate.defects import defect_of
from replicate.formatting import currency_of, priced
from replicate.formatting import duration as _duration
from replicate.jobs import MEASURED, PASS
from replicate.verdict import target_label

# MEASURED (nothing to compare with) is neutral grey: neither a PASS's green nor a failure's red.
VERDICT_STYLES = {"PASS": "green", "UNCHANGED": "dark_green", "MEASURED": "grey70", "BELOW": "red", "ABOVE": "yellow",
                  "OFF_CURVE": "dark_orange", "EARLY_ABORT": "magenta", "ERROR": "red", "INFRA": "blue"}


def terminal() -> Console:
    return Console(width=160)


def _fmt(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _compared_with(row: dict[str, Any]) -> str:
    """The target's value and band, labelled claim or reference (this implementation)."""
    target = row.get("compared_with") or {}
    if target.get("value") is None:
        return target_label(target.get("kind"))
    band = f"[{_fmt(target['low'])}, {_fmt(target['high'])}]"
    return escape(f"{target_label(target['kind'])}: {_fmt(target['value'])} {band}")


def model_label(row: Mapping[str, Any]) -> str:
    """The model, with its framework when it is not the default one (yolov3 runs in both), and
    the defect injected into the job, if any (``replicate selftest``): it is no real result."""
    framework = row.get("framework")
    label = row["model"] if framework in (None, "torch") else f"{row['model']} ({framework})"
    defect = defect_of(row)
    return label if defect is None else f"{label} (defect {defect})"


def _when(row: Mapping[str, Any]) -> str:
    """When a row was recorded, to the minute (UTC, as stored)."""
    return str(row.get("created_at") or "")[:16].replace("T", " ")


def print_jobs(rows: list[dict[str, Any]], title: str = "jobs", with_suite: bool = False) -> None:
    """One line per job: verdict, metric vs reference band, time, cost, failure class; with
    ``with_suite`` (jobs of several suites: history) first its suite and when it was recorded."""
    table = Table(title=title)
    # escape: rich would take "[band]" for a markup tag and drop it from the header.
    for col in (*(("suite", "when") if with_suite else ()), "model", "tier", "hardware", "seed", "verdict", "metric",
                "value", escape("compared with [band]"), "time", "cost", "failure"):
        table.add_column(col)
    for row in rows:
        verdict = row["verdict"]
        failure = f"{row['failure_stage']} / {row['failure_impact']}" if row.get("failure_stage") else ""
        suite = (str(row.get("suite_id") or ""), _when(row)) if with_suite else ()
        table.add_row(*suite, model_label(row), row["tier"], row["hardware"], str(row["seed"]),
                      f"[{VERDICT_STYLES.get(verdict, 'white')}]{verdict}[/]", row.get("metric_name") or "-",
                      _fmt(row.get("metric_value")), _compared_with(row), _duration(row.get("wall_s")),
                      priced(row.get("cost"), currency_of(row)), failure)
    terminal().print(table)
    for row in rows:
        if row.get("failure_message") and row["verdict"] != PASS:
            terminal().print(f"  {model_label(row)} s{row['seed']}: {row['failure_message']}", markup=False)
    shown = set()
    for row in rows:   # a BELOW on a tier that deviates from the reference may be the deviation's
        deviations = (row.get("compared_with") or {}).get("deviations") or []
        if deviations and (row["model"], row["tier"]) not in shown:
            shown.add((row["model"], row["tier"]))
            terminal().print(f"  {model_label(row)} {row['tier']} deviates from the reference: {'; '.join(deviations)}",
                             markup=False)


def print_groups(groups: Sequence[Mapping[str, Any]]) -> None:
    """Multi-seed verdicts; only printed when some group has more than one seed."""
    if not any(len(g["seeds"]) > 1 for g in groups):
        return
    table = Table(title="verdicts over seeds")
    for col in ("model", "tier", "hardware", "seeds", "verdict", "mean", "std", "note"):
        table.add_column(col)
    for g in groups:
        table.add_row(model_label(g), g["tier"], g["hardware"], ",".join(map(str, g["seeds"])),
                      f"[{VERDICT_STYLES.get(g['verdict'], 'white')}]{g['verdict']}[/]", _fmt(g["mean"]),
                      _fmt(g["std"]), g.get("noise_note") or "")
    terminal().print(table)


def verdict_summary(counts: dict[str, int], unit: str) -> str:
    """One line counting the verdicts (``replicate.jobs.verdict_counts``), PASS and MEASURED apart,
    e.g. ``verdicts (3 model groups): 2 PASS, 1 MEASURED (nothing to compare with)``."""
    total = sum(counts.values())
    parts = [f"{n} {verdict}" + (f" ({target_label('none')})" if verdict == MEASURED else "")
             for verdict, n in counts.items()]
    return f"verdicts ({total} {unit}{'' if total == 1 else 's'}): {', '.join(parts) or 'none'}"


def print_models(rows: list[dict[str, Any]]) -> None:
    table = Table(title="registered models")
    for col in ("name", "zoo", "frameworks", "variants", "tiers", "full trainable params", "primary claim"):
        table.add_column(col)
    for r in rows:
        claim = r["primary_claim"]
        zoo = f"{r['zoo']['distribution']} {r['zoo']['version']}" if r.get("zoo") else "–"
        table.add_row(r["name"], zoo, ", ".join(r["frameworks"]), ", ".join(r["variants"]), ", ".join(r["tiers"]),
                      f"{r['trainable_params']:,}",
                      f"{claim['metric']} {claim['value']} on {claim['split']} ({claim['source']})")
    terminal().print(table)


def print_history(rows: list[dict[str, Any]], title: str = "metric over time") -> None:
    """One line per group and suite (``replicate.history.model_history``), oldest first:
    verdict, mean +- std, band, and REGRESSION / DRIFT marks with what changed underneath."""
    table = Table(title=title)
    for col in ("suite", "when", "variant / framework", "tier", "hardware", "verdict", "mean ± std", "band", "flags"):
        table.add_column(col)
    for r in rows:
        flags = []
        if r.get("regression"):
            flags.append(f"[red]REGRESSION[/] (PASS in {r['regression']})")
        if r.get("drift"):
            flags.append("[dark_orange]DRIFT[/]")
        spread = f" ± {_fmt(r['std'], 3)}" if r.get("std") is not None else ""
        table.add_row(r["suite_id"], _when(r),
                      f"{r['variant']} / {r.get('framework') or '-'}", r["tier"],
                      r["hardware"], f"[{VERDICT_STYLES.get(r['verdict'], 'white')}]{r['verdict']}[/]",
                      f"{_fmt(r.get('mean'))}{spread}", f"[{_fmt(r.get('band_low'))}, {_fmt(r.get('band_high'))}]",
                      " ".join(flags))
    terminal().print(table)
    for r in rows:
        for change in r.get("changes") or []:
            terminal().print(f"  {r['suite_id']} changed since {r['regression']}: {change['section']} "
                             f"{change['key']}: {change['before']!r} -> {change['after']!r}", markup=False)
    drifted = {r["drift"] for r in rows if r.get("drift")}
    for text in sorted(drifted):
        terminal().print(f"  drift: {text}", markup=False)
