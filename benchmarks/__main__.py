"""``python -m benchmarks``: every benchmark's figures against their targets, in one run.

Each benchmark module has ``measure(...) -> list[Ratio]``; this prints them in one table, writes
them as JSON (``--json``, default ``results/benchmarks/last.json``) and, with ``--markdown``, the
README's performance table with the date and machine. Exit 1 when a figure misses its target,
2 for an unknown benchmark name.

    python -m benchmarks [--only harness,eval,history,coco,scheduling,dp,gpu] [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional

from benchmarks.ratio import Ratio, machine, markdown_table, target_text, value_text


def _harness(quick: bool) -> list[Ratio]:
    from benchmarks.harness_overhead import measure_all

    return measure_all(steps=20 if quick else 60, repeats=2 if quick else 4)


def _eval(quick: bool) -> list[Ratio]:
    from benchmarks.eval_throughput import MODELS, measure

    return measure(models=("faster_rcnn", "yolov3") if quick else MODELS, images=2 if quick else 8,
                   repeats=1 if quick else 4)


def _history(quick: bool) -> list[Ratio]:
    from benchmarks.year_of_history import measure

    return measure(nights=30 if quick else 365, sqlite_only=quick)


def _coco(quick: bool) -> list[Ratio]:
    from benchmarks.coco_eval import measure

    return measure(images=500 if quick else 5000, segm_images=100 if quick else 1000)


def _scheduling(quick: bool) -> list[Ratio]:
    from benchmarks.scheduling import measure

    return measure(models=("yolov4", "yolov3") if quick else ("yolov4", "yolov3", "pix2pix", "centernet"))


def _data_parallel(quick: bool) -> list[Ratio]:
    from benchmarks.data_parallel import measure

    return measure(steps=20 if quick else 60)


def _gpu(quick: bool) -> list[Ratio]:
    from benchmarks.gpu_throughput import measure

    return measure(dry_run=True)


# name -> what it measures; the order is the table's
BENCHMARKS: dict[str, Callable[[bool], list[Ratio]]] = {
    "harness": _harness,   # a training step through the harness vs a bare loop, per model
    "eval": _eval,         # an eval tier's path through the harness vs its reference's own loop, per model
    "history": _history,   # a year of nightly suites: store readers and report size
    "coco": _coco,         # COCO evaluation at val2017 scale against pycocotools
    "scheduling": _scheduling,   # two smoke jobs at a time vs one; a job's fixed cost through Ray
    "dp": _data_parallel,  # a job on 2 Ray Train workers vs 1 process, same global batch (CPU)
    "gpu": _gpu,           # the GPU throughput script, in its dry mode on a CPU
}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help=f"comma-separated: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a check that the benchmarks run")
    parser.add_argument("--json", default="results/benchmarks/last.json", help="where the figures are written")
    parser.add_argument("--markdown", action="store_true", help="also print the README's table")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: --only: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    ratios: list[Ratio] = []
    for name in names:
        print(f"{name}:", flush=True)
        ratios += BENCHMARKS[name](args.quick)
    width = max((len(r.name) for r in ratios), default=10)
    print(f"\n{'benchmark':<10} {'measured':<{width}} {'value':>10} {'target':>10}  ok")
    for r in ratios:
        print(f"{r.benchmark:<10} {r.name:<{width}} {value_text(r):>10} {target_text(r):>10}  "
              f"{'yes' if r.ok else 'NO'}")
    missed = [r for r in ratios if not r.ok]
    print(f"{len(ratios) - len(missed)}/{len(ratios)} figures meet their target ({machine()})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "quick": args.quick,
                               "figures": [r.to_dict() for r in ratios]}, indent=1))
    if args.markdown:
        print(f"\nMeasured {machine()}, `python -m benchmarks{' --quick' if args.quick else ''}`:\n")
        print(markdown_table(ratios))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
