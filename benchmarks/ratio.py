"""One measured figure of a benchmark against its target, and how the runner shows them."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Ratio:
    """A figure measured in this run: a ratio against a baseline measured in the same run
    (``unit`` "x"), or, where the issue sets an absolute limit, seconds or bytes."""

    benchmark: str    # the module that measured it: harness, history, gpu, ...
    name: str         # what was measured, with its setting (store, model, framework)
    value: float
    target: float
    better: str       # "lower": value <= target passes; "higher": value >= target passes
    unit: str = "x"
    detail: str = ""  # the two measurements behind a ratio, or what a limit covers

    @property
    def ok(self) -> bool:
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def target_text(ratio: Ratio) -> str:
    return f"{'<=' if ratio.better == 'lower' else '>='} {ratio.target:g}{ratio.unit}"


def value_text(ratio: Ratio) -> str:
    return f"{ratio.value:.3g}{ratio.unit}"


def machine() -> str:
    """The machine the figures were measured on, in one line (date and cores included)."""
    return (f"{dt.date.today().isoformat()}, {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")


def markdown_table(ratios: Iterable[Ratio]) -> str:
    """The README's performance table."""
    lines = ["| benchmark | measured | value | target | ok | detail |", "|---|---|---|---|---|---|"]
    for r in ratios:
        lines.append(f"| {r.benchmark} | {r.name} | {value_text(r)} | {target_text(r)} | "
                     f"{'yes' if r.ok else 'NO'} | {r.detail} |")
    return "\n".join(lines)


def print_report(ratios: Sequence[Ratio]) -> int:
    """A benchmark run on its own: print its table; the exit code (1 when a figure misses)."""
    print(markdown_table(ratios))
    return 0 if all(r.ok for r in ratios) else 1
