"""Calibrate a smoke reference over draws that span seeds and the numeric variants of other CPUs.

A smoke reference is a measured result of this implementation. One machine's seeds are not
enough: another CPU runs other ATen kernels (AVX512, AVX2, none), other oneDNN code and maybe
another thread count, and the training trajectory moves with them. So each *draw* is one smoke
job under one (seed, numeric variant, threads) combination, run in its own process (the kernel
choice is made when torch loads), two at a time. The band and the 25% floor are then prediction
intervals for one new draw (``replicate.verdict.draws_band``).

Every draw is written to ``results/calibration/NAME.json`` as it finishes, so an interrupted
calibration resumes where it stopped (a draw with the same config hash and label is not re-run).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from replicate.config.compose import compose_config
from replicate.config.selection import chosen_framework, chosen_reference
from replicate.errors import ConfigError
from replicate.resolved import config_hash, plain

# What another CPU would change. torch: the ATen kernel set (AVX512, AVX2, or none). oneDNN's ISA
# (ONEDNN_MAX_CPU_ISA) is left to the machine: capping it at SSE4.1 made a yolov4 draw 5x slower,
# which a 12-draw calibration of every model cannot afford on 2 cores. TensorFlow: its oneDNN
# graph rewrites on or off.
TORCH_VARIANTS: dict[str, dict[str, str]] = {
    "default": {"ATEN_CPU_CAPABILITY": "default"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
}
TF_VARIANTS: dict[str, dict[str, str]] = {
    "onednn0": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn1": {"TF_ENABLE_ONEDNN_OPTS": "1"},
}
# 12 draws, each on a seed of its own: the band must hold for seeds it never saw (the nightly's,
# a selftest control's), and 4 seeds x 3 variants measured the seed spread from 4 values only
# (yolov4's 25% loss: seed 3 alone sat 1.5 below the other three under every variant).
DEFAULT_SEEDS = list(range(12))
DEFAULT_THREADS = (1, 2)
MIN_DRAWS = 12


@dataclass(frozen=True)
class Draw:
    """One calibration run: a seed under one numeric variant and thread count."""

    seed: int
    variant: str
    threads: int

    @property
    def label(self) -> str:
        return f"s{self.seed}/{self.variant}/t{self.threads}"

    @classmethod
    def from_label(cls, label: str) -> "Draw":
        """The draw a recorded label names ("s3/avx2/t2")."""
        parts = label.split("/")
        if len(parts) != 3 or not parts[0][1:].isdigit() or not parts[2][1:].isdigit():
            raise ValueError(f"draw label {label!r} is not s<seed>/<variant>/t<threads>")
        return cls(int(parts[0][1:]), parts[1], int(parts[2][1:]))


def variants_for(framework: str) -> dict[str, dict[str, str]]:
    return TF_VARIANTS if framework == "tensorflow" else TORCH_VARIANTS


def plan_draws(seeds: Sequence[int], variants: Sequence[str], threads: Sequence[int], *,
               crossed: bool = False) -> list[Draw]:
    """One draw per seed, the variants taken in turn (``crossed``: every seed under every variant).

    The thread count rotates with seed and variant together, so each variant sees each count (an
    index over the draws alone would tie them when the number of variants is a multiple of the
    number of counts: onednn0 always 1 thread, onednn1 always 2)."""
    if crossed:
        return [Draw(int(seed), variant, int(threads[(i + j) % len(threads)]))
                for (i, seed), (j, variant) in itertools.product(enumerate(seeds), enumerate(variants))]
    # draw i is the (i % n)th variant of round i // n: the thread count rotates as in the crossed plan
    n = len(variants)
    return [Draw(int(seed), variants[i % n], int(threads[(i // n + i % n) % len(threads)]))
            for i, seed in enumerate(seeds)]


def smoke_config(overrides: Sequence[str]) -> Any:
    return compose_config([*overrides, "tier=smoke", "tier.compare_with=none"])


def calibrate(overrides: Sequence[str], draws: Sequence[Draw], *, cpus: int = 2,
              out: Optional[Path] = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the draws side by side within ``cpus`` threads, record each, return the reference block."""

    probe = smoke_config(overrides)
    framework = chosen_framework(probe)
    known = variants_for(framework)
    unknown = sorted({d.variant for d in draws} - set(known))
    if unknown:
        raise ConfigError("--variants", f"{', '.join(unknown)} unknown for {framework}; allowed: {', '.join(known)}")
    if probe.model.tiers.smoke.recipe.steps is None:
        raise ConfigError("model.tiers.smoke.recipe.steps", "calibration needs a step count, not epochs")
    out = out or Path(probe.results_dir) / "calibration" / f"{probe.model.name}-{framework}.json"
    asked = list(overrides)   # what the user typed: the recorded command shows these
    overrides = [*overrides, *prepared_data(probe, echo)]
    digest = _draw_hash(probe)
    record = _load_record(out, digest, also=list(probe.model.tiers.smoke.also_judged))
    todo = [d for d in draws if d.label not in record["draws"]]
    echo(f"calibrate {probe.model.name} ({framework}): {len(draws)} draws, {len(draws) - len(todo)} already "
         f"recorded in {out}; running {len(todo)} within {cpus} CPU threads")
    _run_recorded(todo, len(draws), lambda d: run_draw(overrides, d, known[d.variant]), record, out, cpus, echo,
                  _describe)
    failed = {label: m["error"] for label, m in record["draws"].items() if m.get("error")}
    if failed:
        label, error = next(iter(failed.items()))
        raise RuntimeError(f"calibration draw {label} failed: {error} (all draws: {out})")
    chosen = [record["draws"][d.label] | {"label": d.label, "seed": d.seed} for d in draws]
    return reference_block(probe, chosen, asked, draws)


# A replayed first quarter must retrace its recorded draw: its early-check loss equal to the
# recorded one up to the record's rounding (5 significant digits). Anything else means the code or
# the recipe changed since the calibration, and the drift would belong to another trajectory.
REPLAY_RTOL = 1e-4


def replay_early(overrides: Sequence[str], *, cpus: int = 2, out: Optional[Path] = None,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Add ``early_drift_draws`` to the recorded reference by replaying each draw's first quarter.

    A smoke draw is deterministic under its (seed, numeric variant, threads), so re-running the
    steps up to the early check retraces the recorded draw; each replay's early loss is checked
    against the recorded one. A quarter of a calibration's cost, and no evaluation.

    Raises:
        ConfigError: no recorded reference, or one without labels or early losses.
        RuntimeError: a replay failed or did not retrace its draw (recalibrate in full).
    """
    probe = smoke_config(overrides)
    framework = chosen_framework(probe)
    reference = chosen_reference(probe)
    where = record_location(overrides)
    if reference is None or not reference.labels or not reference.early_loss_draws:
        raise ConfigError(where, "no recorded draws with labels and early losses to replay: run a full calibration")
    try:
        draws = [Draw.from_label(label) for label in reference.labels]
    except ValueError as exc:
        raise ConfigError(f"{where}.labels", str(exc)) from None
    known = variants_for(framework)
    out = out or Path(probe.results_dir) / "calibration" / f"{probe.model.name}-{framework}-early.json"
    asked = " ".join(overrides)   # what the user typed: the recorded source shows these
    overrides = [*overrides, *prepared_data(probe, echo)]
    record = _load_record(out, _draw_hash(probe), EARLY_DRAW_KEYS)
    todo = [d for d in draws if d.label not in record["draws"]]
    echo(f"replay {probe.model.name} ({framework}): first quarter of {len(draws)} recorded draws, "
         f"{len(draws) - len(todo)} already in {out}; running {len(todo)} within {cpus} CPU threads")
    _run_recorded(todo, len(draws), lambda d: run_draw(overrides, d, known[d.variant], early_only=True), record, out,
                  cpus, echo, lambda m: f"loss {m['early_loss']:.5g}, drift {m['early_drift']:.4g}")
    block = plain(reference)
    drifts = []
    for draw, recorded in zip(draws, reference.early_loss_draws):
        measured = record["draws"][draw.label]
        if measured.get("error"):
            raise RuntimeError(f"replay of draw {draw.label} failed: {measured['error']} (all replays: {out})")
        if abs(measured["early_loss"] - float(recorded)) > REPLAY_RTOL * abs(float(recorded)):
            raise RuntimeError(f"replay of draw {draw.label} does not retrace it: early loss "
                               f"{measured['early_loss']:.6g}, recorded {float(recorded):.6g}; the training changed "
                               "since: recalibrate in full")
        drifts.append(_sig(measured["early_drift"]))
    block["early_drift_draws"] = drifts
    block["source"] = (f"{block['source']}; early_drift_draws replayed: `replicate calibrate {asked} --early-only` "
                       f"on {dt.date.today().isoformat()}")
    return block


def _draw_hash(cfg: Any) -> str:
    """What decides a draw's result: the job's config without the recorded smoke references (which
    calibrations themselves produce: pasting a new block must not discard the draws behind it)."""
    from omegaconf import DictConfig, OmegaConf, open_dict

    bare = OmegaConf.create(plain(cfg))
    assert isinstance(bare, DictConfig)
    with open_dict(bare):
        bare.model.tiers.smoke.reference = None
        bare.model.tiers.smoke.framework_references = {}
        bare.model.tiers.smoke.evaluation_references = {}
    return config_hash(bare)


def prepared_data(cfg: Any, echo: Callable[[str], None]) -> list[str]:
    """Prepare the tier's dataset once, here, and point every draw at it (draws run in parallel,
    each in a scratch results_dir: without this each would generate, or race on, its own copy)."""
    from replicate.data.prepare import prepare_dataset

    name = cfg.model.tiers.smoke.data
    root = Path(cfg.datasets[name].root).resolve()
    echo(f"dataset {name}: {root}")
    prepare_dataset(cfg.datasets[name])
    return [f"datasets.{name}.root={root}"]


def run_within_cpus(draws: Sequence[Draw], run: Callable[[Draw], dict[str, Any]], cpus: int,
                    done: Callable[[Draw, dict[str, Any]], None]) -> None:
    """Run draws side by side while their threads fit in ``cpus``; ``done`` each as it finishes.

    Oversubscribing the cores is not just slow here: a 2-thread draw beside another draw on 2
    cores spends its time in OpenMP's spin-waits (measured: a yolov4 draw took 506 s, against 48 s
    for a 1-thread draw with a core of its own). A draw with more threads than ``cpus`` runs alone.
    """
    free, lock = [cpus], threading.Condition()

    def worker(draw: Draw) -> tuple[Draw, dict[str, Any]]:
        need = min(draw.threads, cpus)
        with lock:
            lock.wait_for(lambda: free[0] >= need)
            free[0] -= need
        try:
            return draw, run(draw)
        finally:
            with lock:
                free[0] += need
                lock.notify_all()

    with ThreadPoolExecutor(max_workers=max(1, len(draws))) as pool:
        for future in as_completed([pool.submit(worker, d) for d in draws]):
            done(*future.result())


def run_draw(overrides: Sequence[str], draw: Draw, env: dict[str, str], *, early_only: bool = False,
             results_dir: Optional[Path] = None) -> dict[str, Any]:
    """One draw in a fresh process (ATen picks its kernels when torch loads); ``early_only``: its
    first quarter only, up to the early check (replay_early). ``results_dir``: where the job writes
    (its checkpoints kept for the caller); default a scratch folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="zoo-calibrate-") as tmp:
        result_file = Path(tmp) / "draw.json"
        args = {"overrides": [*overrides, "tier=smoke", "tier.compare_with=none", f"seed={draw.seed}",
                              f"results_dir={results_dir or tmp}", "logger=none"],
                "threads": draw.threads, "out": str(result_file), "early_only": early_only}
        child_env = {**os.environ, **env, "OMP_NUM_THREADS": str(draw.threads)}
        proc = subprocess.run([sys.executable, "-m", "replicate.calibration_draw", json.dumps(args)],
                              env=child_env, capture_output=True, text=True)
        if proc.returncode != 0 or not result_file.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {tail[0]}"}
        return json.loads(result_file.read_text())


def _run_recorded(todo: Sequence[Draw], total: int, run: Callable[[Draw], dict[str, Any]], record: dict[str, Any],
                  out: Path, cpus: int, echo: Callable[[str], None],
                  describe: Callable[[dict[str, Any]], str]) -> None:
    """Run ``todo`` within ``cpus``; save each draw to ``out`` as it finishes (an interrupted
    calibration or replay resumes from there) and echo it with ``describe`` (or its error)."""
    began = time.perf_counter()

    def record_draw(draw: Draw, measured: dict[str, Any]) -> None:
        record["draws"][draw.label] = measured
        _save_record(out, record)
        shown = f"FAILED {measured['error']}" if measured.get("error") else describe(measured)
        echo(f"  {draw.label}: {shown} ({len(record['draws'])}/{total}, {time.perf_counter() - began:.0f}s)")

    run_within_cpus(todo, run, cpus, record_draw)


def _describe(measured: dict[str, Any]) -> str:
    return (f"{measured['metric']} {measured['final']:.4g} (25%: {measured['early']:.4g}), "
            f"{measured['cpu_capability']}, {measured['wall_s']:.0f}s")


FULL_DRAW_KEYS = ("early_loss", "final_loss", "early_drift")
EARLY_DRAW_KEYS = ("early_loss", "early_drift")


def _load_record(path: Path, digest: str, required: Sequence[str] = FULL_DRAW_KEYS,
                 also: Sequence[str] = ()) -> dict[str, Any]:
    """The draws recorded so far for this exact config (another config starts afresh); a draw
    that lacks one of ``required`` or of the ``also`` metrics is run again."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("config_hash") != digest:
        return {"config_hash": digest, "draws": {}}
    # a failed draw is retried, and so is one recorded before all of ``required`` were measured
    record["draws"] = {k: v for k, v in record.get("draws", {}).items()
                       if not v.get("error") and all(v.get(key) is not None for key in required)
                       and all(name in (v.get("also") or {}) for name in also)}
    return record


def _save_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)   # atomic: a crash never leaves half a record


def record_location(overrides: Sequence[str]) -> str:
    """Where the measured block belongs: a model's first framework owns ``reference``, any other
    framework its own ``framework_references.NAME`` (validate.py selects it for that framework)."""

    cfg = smoke_config(overrides)
    framework = chosen_framework(cfg)
    if framework == cfg.model.frameworks[0]:
        return "model.tiers.smoke.reference"
    return f"model.tiers.smoke.framework_references.{framework}"


def _sig(value: float, digits: int = 5) -> float:
    """Rounded to significant digits: an L1 of 0.04 keeps as many as a bbox_AP of 40."""
    return float(f"{value:.{digits}g}")


def reference_block(cfg: Any, measured: list[dict[str, Any]], overrides: Sequence[str],
                    draws: Sequence[Draw]) -> dict[str, Any]:
    """The YAML block to record: mean and std of the final metric and of the 25% point, every draw."""
    from replicate.runner.environment import git_output

    finals = [m["final"] for m in measured]
    earlies = [m["early"] for m in measured]
    fraction = str(cfg.tier.early_check.fraction)
    reference = chosen_reference(cfg)
    primary = next(c.direction for c in cfg.model.claims if c.primary)
    direction = reference.direction if reference is not None else primary
    seeds = sorted({d.seed for d in draws})
    command = " ".join(["replicate calibrate", *overrides,
                        f"--seeds {','.join(str(s) for s in seeds)}",
                        f"--variants {','.join(dict.fromkeys(d.variant for d in draws))}",
                        f"--threads {','.join(dict.fromkeys(str(d.threads) for d in draws))}",
                        *(["--crossed"] if len(seeds) < len(draws) else [])])
    return {
        "metric": measured[0]["metric"],
        "value": _sig(statistics.fmean(finals)),
        "spread": _sig(statistics.stdev(finals)) if len(finals) > 1 else 0.0,
        "draws": [_sig(v) for v in finals],
        "early_draws": [_sig(v) for v in earlies],
        "early_loss_draws": [_sig(m["early_loss"]) for m in measured],
        "final_loss_draws": [_sig(m["final_loss"]) for m in measured],
        "early_drift_draws": [_sig(m["early_drift"]) for m in measured],
        "labels": [m["label"] for m in measured],
        "seeds": sorted({m["seed"] for m in measured}),
        "direction": direction,
        "curve": {fraction: _sig(statistics.fmean(earlies))},
        "curve_spread": {fraction: _sig(statistics.stdev(earlies)) if len(earlies) > 1 else 0.0},
        **({"also": {str(name): {"direction": str(direction), "draws": [_sig(m["also"][name]) for m in measured]}
                     for name, direction in cfg.model.tiers.smoke.also_judged.items()}}
           if cfg.model.tiers.smoke.also_judged else {}),
        "source": f"measured: `{command}` on {dt.date.today().isoformat()} "
                  f"(git {(git_output('rev-parse', '--short', 'HEAD') or 'unknown')}, {os.cpu_count()} CPU cores)",
    }


def draw_summary(block: dict[str, Any], false_alarm: float, early_fraction: float) -> dict[str, Any]:
    """Band, 25% floor, loss and drift bands the recorded block implies (what the verdict will use)."""
    from replicate.verdict import draws_band, draws_bound, early_check_alarm, final_check_alarm

    n = len(block["draws"])
    final_alarm = final_check_alarm(false_alarm, early_enabled=True, also=len(block.get("also") or {}))
    early_alarm = early_check_alarm(false_alarm)
    low, high = draws_band(block["draws"], final_alarm) or (math.nan, math.nan)
    floor = draws_bound(block["early_draws"], early_alarm, block["direction"])

    def band(draws: Any, alarm: float) -> Optional[list[float]]:
        found = draws_band(draws, alarm)
        return [_sig(v) for v in found] if found is not None else None

    also = {name: band(recorded["draws"], final_alarm) for name, recorded in (block.get("also") or {}).items()}
    return {"n": n, "band": [_sig(low), _sig(high)], "early_floor": _sig(floor) if floor is not None else None,
            **({"also_bands": also} if also else {}),
            "early_loss_band": band(block.get("early_loss_draws"), early_alarm),
            "early_drift_band": band(block.get("early_drift_draws"), early_alarm),
            "final_loss_band": band(block.get("final_loss_draws"), final_alarm),
            "cv": _sig(block["spread"] / abs(block["value"]), 3) if block["value"] else None}
