"""benchmarks.gpu_throughput, unchanged, with its synthetic data sets generated up front, in parallel.

The benchmark generates a fresh shapes set per model inside its own temporary folder (about 25 s
of one CPU core for 96 images at 800 px), before its timed loops. Here the sets each model needs
(one per distinct image size) are generated first in parallel processes into a cache, and
replicate.data.shapes.ensure_shapes is wrapped in this process only so that a set with the same
generation parameters is linked from the cache instead of regenerated (the original function then
verifies its manifest as usual). The measured figures are the benchmark's own: generation is not
inside any timed region. Same command line as the benchmark.

    python scripts/gpu_check/gpu_throughput_cached.py [--dry-run] [--models ...] [--steps N] [--time-limit S] --out F
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = Path(tempfile.gettempdir()) / "zoo-gpu-shapes-cache"


def data_overrides(model: str, dry_run: bool) -> list[str]:
    """The data keys benchmarks.gpu_throughput._loop sets for ``model`` (kept in step with it)."""
    from replicate.config.compose import compose_config

    probe = compose_config([f"model={model}", "logger=none"])
    real = next(probe.model.tiers[t] for t in ("full", "eval", "smoke") if t in probe.model.tiers)
    size = int(probe.model.tiers.smoke.input_size if dry_run else real.input_size)
    out = ["datasets.shapes.num_train=64", "datasets.shapes.num_val=32"]
    return out if dry_run else out + [f"datasets.shapes.image_size={size}"]


def _generate(data: list[str]) -> tuple[str, str, float]:
    from replicate.config.compose import compose_config
    from replicate.data.shapes import ensure_shapes, generation_params

    began = time.perf_counter()
    key = "_".join(d.rsplit("=", 1)[1] for d in data)
    cfg = compose_config(["logger=none", f"results_dir={CACHE / key}", *data])
    root = ensure_shapes(cfg.datasets.shapes)
    return json.dumps(generation_params(cfg.datasets.shapes), sort_keys=True), str(root), time.perf_counter() - began


def pregenerate(models: list[str], dry_run: bool) -> dict[str, str]:
    wanted: list[list[str]] = []
    for model in models:
        try:
            data = data_overrides(model, dry_run)
        except Exception as exc:  # noqa: BLE001 - the benchmark itself will report this model
            print(f"  [cache] {model}: {type(exc).__name__}: {exc}", flush=True)
            continue
        if data not in wanted:
            wanted.append(data)
    cache: dict[str, str] = {}
    workers = max(1, min(len(wanted), os.cpu_count() or 1))
    began = time.perf_counter()
    # fork: nothing has touched CUDA yet; the children only write PNG/JSON files
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for data, future in [(d, pool.submit(_generate, d)) for d in wanted]:
            try:
                params, root, seconds = future.result()
                cache[params] = root
                print(f"  [cache] {' '.join(data)}: {root} ({seconds:.1f}s)", flush=True)
            except Exception as exc:  # noqa: BLE001 - that model generates its own set, as without the cache
                print(f"  [cache] {' '.join(data)}: {type(exc).__name__}: {exc}", flush=True)
    print(f"  [cache] {len(cache)} set(s) in {time.perf_counter() - began:.1f}s on {workers} process(es)", flush=True)
    return cache


def install(cache: dict[str, str]) -> None:
    import replicate.data.shapes as shapes

    original = shapes.ensure_shapes

    def ensure_shapes(cfg):  # type: ignore[no-untyped-def]
        root = Path(str(shapes._get(cfg, "root")))
        hit = cache.get(json.dumps(shapes.generation_params(cfg), sort_keys=True))
        if hit and not root.exists():
            root.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(hit, root, target_is_directory=True)
        return original(cfg)

    shapes.ensure_shapes = ensure_shapes


def main(argv: list[str] | None = None) -> int:
    from benchmarks import gpu_throughput

    argv = list(sys.argv[1:] if argv is None else argv)
    models = gpu_throughput.DEFAULT_MODELS
    if "--models" in argv:
        models = tuple(m.strip() for m in argv[argv.index("--models") + 1].split(",") if m.strip())
    install(pregenerate(list(models), "--dry-run" in argv))
    return gpu_throughput.main(argv)


if __name__ == "__main__":
    sys.exit(main())
