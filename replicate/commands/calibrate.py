"""``replicate calibrate model=NAME [--seeds ...] [--variants ...] [--threads ...] [--crossed]``:
measure a smoke reference over draws (replicate/calibrate.py) and print the block to record;
``--early-only`` adds the weight drift to a recorded block by replaying its draws' first quarter."""

from __future__ import annotations

import argparse
import os
from typing import Any

from replicate.commands import add_overrides, echo_for, int_list, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``calibrate`` subcommand."""
    parser = subparsers.add_parser("calibrate", help="measure a smoke reference over seeds and numeric variants: "
                                                     "replicate calibrate model=NAME")
    add_overrides(parser)
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, one draw each (default 0-11)")
    parser.add_argument("--variants", default=None,
                        help="numeric variants (torch: default,avx2,avx512; TF: onednn0,onednn1; default all)")
    parser.add_argument("--threads", default="1,2", help="thread counts, alternating over draws (default 1,2)")
    parser.add_argument("--crossed", action="store_true",
                        help="every seed under every variant (default: one variant per seed, in turn)")
    parser.add_argument("--early-only", action="store_true",
                        help="replay the recorded draws' first quarter to add their weight drift at the early "
                             "check (early_drift_draws); checks that each replay retraces its draw")
    parser.add_argument("--evaluation-reference", action="store_true",
                        help="train the smoke job once, keep its weights, and record what they score through the "
                             "evaluation under each variant and thread count (evaluation_references)")
    parser.add_argument("--images", type=int, default=None,
                        help="with --evaluation-reference: the first N evaluation images scored (default 128)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                        help="draws run side by side while their threads fit in this many CPUs (default: all)")
    return parser


def run(args: argparse.Namespace) -> int:
    import yaml

    from replicate.calibrate import (
        DEFAULT_SEEDS,
        DEFAULT_THREADS,
        MIN_DRAWS,
        calibrate,
        draw_summary,
        plan_draws,
        record_location,
        replay_early,
        smoke_config,
        variants_for,
    )
    from replicate.config.selection import chosen_framework
    from replicate.errors import ConfigError

    echo = echo_for(args)
    probe = smoke_config(args.overrides)
    framework = chosen_framework(probe)
    seeds = int_list(args.seeds, "--seeds") if args.seeds else DEFAULT_SEEDS
    threads = int_list(args.threads, "--threads") if args.threads else list(DEFAULT_THREADS)
    if 0 in threads:
        raise ConfigError("--threads", "thread counts must be >= 1")
    if args.cpus < 1:
        raise ConfigError("--cpus", f"{args.cpus} must be >= 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants \
        else list(variants_for(framework))
    if args.evaluation_reference:
        return _evaluation_reference(args, str(probe.model.name), framework, seeds, variants, threads, echo)
    if args.images is not None:
        raise ConfigError("--images", "only with --evaluation-reference")
    draws = plan_draws(seeds, variants, threads, crossed=args.crossed)
    if len(draws) < MIN_DRAWS and not args.early_only:
        echo(f"warning: {len(draws)} draws; a recorded reference should have at least {MIN_DRAWS}")
    block = (replay_early(args.overrides, cpus=args.cpus, echo=echo) if args.early_only
             else calibrate(args.overrides, draws, cpus=args.cpus, echo=echo))
    summary = draw_summary(block, float(probe.tier.false_alarm), float(probe.tier.early_check.fraction))
    if args.json:
        print_json({"reference": block, "implies": summary, "record_under": record_location(args.overrides)})
    else:
        parent, key = record_location(args.overrides).rsplit(".", 1)
        floor = summary["early_floor"] if summary["early_floor"] is not None else "none (not judged: it reaches 0)"
        print(f"# {summary['n']} draws: band {summary['band']}, 25% floor {floor}, "
              f"loss bands {summary['early_loss_band']} (25%) {summary['final_loss_band']} (last quarter), "
              f"weight drift band {summary['early_drift_band']} (25%), "
              f"std/mean {summary['cv']} (false alarm {probe.tier.false_alarm} per job)")
        print(f"# record under {parent}:")
        print(yaml.safe_dump({key: block}, sort_keys=False, width=200, default_flow_style=None))
    return 0


def _evaluation_reference(args: argparse.Namespace, model: str, framework: str, seeds: list[int], variants: list[str],
                          threads: list[int], echo: Any) -> int:
    """Train, export and score the evaluation weights; print the block and where the file goes."""
    import yaml

    from replicate.calibrate_evaluation import DEFAULT_IMAGES, calibrate_evaluation_reference
    from replicate.errors import ConfigError
    from replicate.runner.evaluation_reference import weights_dir

    if args.early_only or args.crossed:
        raise ConfigError("--evaluation-reference", "takes neither --early-only nor --crossed")
    images = args.images if args.images is not None else DEFAULT_IMAGES
    block = calibrate_evaluation_reference(args.overrides, variants, threads, seed=seeds[0], images=images,
                                           cpus=args.cpus, echo=echo)
    if args.json:
        print_json({"evaluation_reference": block, "framework": framework})
        return 0
    print(f"# copy the weights file written above ({block['weights']}) into "
          f"{weights_dir(model, framework)}, then record under "
          "model.tiers.smoke.evaluation_references:")
    print(yaml.safe_dump({framework: block}, sort_keys=False, width=200, default_flow_style=None))
    return 0
