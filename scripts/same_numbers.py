"""Are two stores' jobs the same to the last bit? For a change that must keep every verdict
(a redesign): run `make run` before and after (two clones), then

    python scripts/same_numbers.py BEFORE/results/zoo.db AFTER/results/zoo.db

Compares, per (model, framework, tier, seed), every final metric and every point of the learning
curve (losses, learning rates; timings left out), exactly. Exit 0 when all are identical."""

from __future__ import annotations

import json
import sqlite3
import sys


def jobs(path: str) -> dict[str, dict]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("select model, framework, tier, seed, metrics, curve from jobs").fetchall()
    return {f"{m}/{f}/{t}/s{s}": {"metrics": json.loads(metrics or "{}"),
                                  "curve": [{k: v for k, v in p.items() if not k.endswith("_s")}
                                            for p in json.loads(curve or "[]")]}
            for m, f, t, s, metrics, curve in rows}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    try:
        before, after = jobs(argv[0]), jobs(argv[1])
    except sqlite3.Error as exc:   # a missing or foreign file: one line, never a traceback
        print(f"error: {exc} (reading {argv[0]} and {argv[1]})", file=sys.stderr)
        return 2
    keys = sorted(before.keys() & after.keys())
    different = [k for k in keys if before[k] != after[k]]
    for key in keys:
        print(f"{key}: {'DIFFERENT' if key in different else 'identical'} ({len(before[key]['metrics'])} metrics, "
              f"{len(before[key]['curve'])} curve points)")
    for key in sorted(before.keys() ^ after.keys()):
        print(f"{key}: in one store only")
    print(f"{len(keys) - len(different)} of {len(keys)} identical")
    return 0 if keys and not different and before.keys() == after.keys() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
