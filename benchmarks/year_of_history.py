"""A year of nightly suites: how the store and its readers scale.

Generates a store of 365 nightly smoke suites x 10 jobs (the smoke suite's 8 and two more
seeds), written through the harness's own record path (``resolve_job``,
``judge_job``, ``job_record``, ``group_record``; only the training is replaced by a curve and a
metric drawn from the reference's draws, 3% of nights regressed), on SQLite and, when Debian's
PostgreSQL is installed, on PostgreSQL. Then times, each in this process as the CLI runs it:

- ``replicate history --model yolov4`` and ``replicate history`` (every job);
- ``replicate report --suite-id <last night>`` (every page, its plots, the history behind them);
- ``replicate cost --suite-id <last night>``;
- the W&B leaderboard's rows (``leaderboard_rows``: what ``log_suite`` sends);

target: each under 2 s; and the report's largest page under 1 MB (plots downsampled).

    python -m benchmarks.year_of_history [--nights 365] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.ratio import Ratio, print_report

LIMIT_S = 2.0
PAGE_LIMIT_BYTES = 1_000_000
EXTRA_SEEDS = [("yolov4", None, 1), ("pix2pix", None, 1)]   # 8 smoke jobs + these = 10 a night
REGRESSED_SHARE = 0.03
START = datetime(2025, 12, 1, 2, 0, tzinfo=timezone.utc)


@dataclasses.dataclass
class Entry:
    """One job of every night: its config, spec and target, composed once."""

    cfg: Any
    spec: Any
    target: Any


def _entries() -> list[Entry]:
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job

    suite = compose_config(["suite=smoke"]).suite
    wanted = [(e.model, e.get("framework"), int(e.seeds[0])) for e in suite.entries] + EXTRA_SEEDS
    entries = []
    for model, framework, seed in wanted:
        cfg = compose_config([f"model={model}", f"seed={seed}", *([f"framework={framework}"] if framework else [])])
        job = resolve_job(cfg, None)
        entries.append(Entry(cfg, job.spec, job.target))
    return entries


def _curve(steps: int, log_every: int, metric: str, final: float, rng: random.Random) -> list[dict[str, Any]]:
    """A loss every ``log_every`` steps settling from 5x to 1x, and the metric at 25% and at the end."""
    points = [{"step": s, "train_s": round(0.1 * s, 3), "lr": 0.001,
               "loss": 1.0 + 4.0 * math.exp(-6.0 * s / steps) + rng.gauss(0.0, 0.02)}
              for s in range(log_every, steps + 1, log_every)]
    points += [{"step": steps // 4, "train_s": 0.1 * steps / 4, metric: final / 8},
               {"step": steps, "train_s": 0.1 * steps, metric: final}]
    return sorted(points, key=lambda p: (p["step"], "loss" not in p))


def fill(store: Any, nights: int, seed: int = 0, progress: Optional[Callable[[int], None]] = None) -> list[str]:
    """Write ``nights`` suites of 10 jobs each; the suite ids, oldest first."""
    from replicate.jobs import JobResult, Times
    from replicate.records import group_record, job_record
    from replicate.verdict import judge_job

    rng = random.Random(seed)
    entries = _entries()
    suite_ids = []
    for night in range(nights):
        day = START + timedelta(days=night)
        suite_id = f"smoke-{day:%Y%m%d}"
        suite_ids.append(suite_id)
        store.upsert_suite(suite_id, "smoke", {"overrides": ["suite=smoke"], "suite": "smoke"})
        groups: dict[tuple, list] = {}
        for index, entry in enumerate(entries):
            tier = entry.cfg.model.tiers.smoke
            ref = tier.reference if entry.spec.framework == "torch" else tier.framework_references[entry.spec.framework]
            final = rng.choice(list(ref.draws)) * (0.5 if rng.random() < REGRESSED_SHARE else 1.0)
            spec = dataclasses.replace(entry.spec, suite_id=suite_id, job_id=f"{entry.spec.job_id}-{day:%Y%m%d}")
            steps = int(tier.recipe.steps)
            result = JobResult(job_id=spec.job_id, metrics={entry.target.metric: final},
                               curve=_curve(steps, int(tier.recipe.log_every), entry.target.metric, final, rng),
                               times=Times(setup_s=2.0, train_s=0.1 * steps, eval_s=5.0), steps_done=steps,
                               steps_planned=steps, images_seen=steps * int(tier.recipe.batch_size))
            verdict, failure = judge_job(result, entry.target)
            record = job_record(spec, result, verdict, failure, entry.target, entry.cfg.hardware)
            record["created_at"] = day + timedelta(minutes=index)
            store.save_job(record)
            groups.setdefault((spec.model, spec.framework), []).append((spec.seed, result, verdict, record, entry))
        for triples in groups.values():
            _, _, _, record, entry = triples[-1]
            store.save_group(group_record(suite_id, record, [t[:3] for t in triples], entry.target))
        store.finish_suite(suite_id)
        if progress is not None:
            progress(night + 1)
    return suite_ids


def _timed(name: str, run: Callable[[], Any]) -> float:
    """Seconds ``run`` took; a reader that fails (exit code not 0) fails the benchmark, rather
    than timing its error message."""
    out, err = io.StringIO(), io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run()
    seconds = time.perf_counter() - began
    if code not in (None, 0):
        raise RuntimeError(f"{name} exited {code}: {(err.getvalue() or out.getvalue()).strip()[-500:]}")
    return seconds


def measure_store(url: str, label: str, results_dir: Path, nights: int, echo: Callable[[str], None]) -> list[Ratio]:
    """Fill the store at ``url``, time every reader on it."""
    from replicate.cli import main
    from replicate.leaderboard import leaderboard_rows
    from replicate.store.results_store import ResultStore

    began = time.perf_counter()
    with ResultStore(url) as store:
        suite_ids = fill(store, nights, progress=lambda n: echo(f"  {label}: {n}/{nights} nights written")
                         if n % 73 == 0 else None)
    echo(f"  {label}: {nights * 10} jobs written in {time.perf_counter() - began:.0f}s")
    last = suite_ids[-1]
    store_args = [f"results_dir={results_dir}", f"store.url='{url}'"]   # quoted: a URL holds = ? &
    readers: dict[str, Callable[[], Any]] = {
        "history --model yolov4": lambda: main(["history", "--model", "yolov4", *store_args]),
        "history (every job)": lambda: main(["history", *store_args]),
        "report --suite-id <last>": lambda: main(["report", "--suite-id", last, *store_args]),
        "cost --suite-id <last>": lambda: main(["cost", "--suite-id", last, *store_args]),
    }

    def leaderboard() -> None:
        with ResultStore(url) as store:
            leaderboard_rows(store, last)

    readers["W&B leaderboard rows"] = leaderboard
    ratios = []
    for name, run in readers.items():
        seconds = min(_timed(name, run) for _ in range(2))   # the faster of two: warm caches, as a nightly reader
        ratios.append(Ratio("history", f"{name} ({label}, {nights} nights)", seconds, LIMIT_S, "lower", "s",
                            f"{nights * 10} jobs"))
        echo(f"  {label}: {name}: {seconds:.2f}s")
    pages = sorted((results_dir / "reports").rglob("*.html"), key=lambda p: p.stat().st_size)
    if pages:
        biggest = pages[-1]
        ratios.append(Ratio("history", f"report's largest page ({label})", biggest.stat().st_size / 1e6,
                            PAGE_LIMIT_BYTES / 1e6, "lower", " MB", biggest.name))
    return ratios


def measure(nights: int = 365, sqlite_only: bool = False, echo: Callable[[str], None] = print) -> list[Ratio]:
    from benchmarks import local_postgres

    work = Path(tempfile.mkdtemp(prefix="zoo-history-"))
    try:
        ratios = measure_store(f"sqlite:///{work / 'sqlite' / 'zoo.db'}", "sqlite", work / "sqlite", nights, echo)
        if sqlite_only:
            return ratios
        if not local_postgres.available():
            echo("  postgresql: not measured (Debian's postgresql package is not installed)")
            return ratios
        server = local_postgres.PostgresServer(work, port=54339)
        server.init()
        server.start()
        try:
            ratios += measure_store(server.create("year"), "postgresql", work / "postgresql", nights, echo)
        finally:
            server.stop()
        return ratios
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args(argv)
    ratios = measure(args.nights, args.sqlite_only)
    return print_report(ratios)


if __name__ == "__main__":
    sys.exit(main())
