"""Harness overhead: a smoke job's training time through the harness vs the same steps bare.

The harness adds checkpoints, the NaN guard, curve logging, heartbeat files and a progress bar;
target: at most 1.05x the bare loop. Both run in this process on the same model, data, optimizer
and schedule; repeats alternate their order so machine noise hits both alike.

    python benchmarks/harness_overhead.py [--model faster_rcnn] [--steps 60] [--repeats 3] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch

from replicate.config.compose import compose_config
from replicate.plan import make_spec
from replicate.runner.batch_order import epoch_permutation
from replicate.runner.optim import build_optimizer, lr_factor, scaled_lr, total_steps
from replicate.runner.torch_loop import seed_everything
from replicate.runner.worker import build_task, run_job

TARGET = 1.05


def configure(model: str, steps: int, results_dir: str, extra: list[str]):
    return compose_config([f"model={model}", "tier.compare_with=none", f"results_dir={results_dir}",
                           f"model.tiers.smoke.recipe.steps={steps}", "scheduler=inline", *extra])


def bare_loop(cfg) -> float:
    """The same training steps with nothing around them: seconds of the loop only."""
    spec = make_spec(cfg, None)
    task = build_task(spec, cfg)
    seed_everything(int(cfg.seed))
    task.prepare_data()
    recipe = cfg.model.tiers.smoke.recipe
    model = task.build_model(spec.variant, spec.framework)
    data = task.build_dataset("train", train=True)
    steps, per_unit = total_steps(recipe, len(data), 1.0)
    lr, _ = scaled_lr(recipe)
    optimizer = build_optimizer(recipe, task.parameter_groups(model), lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, per_unit, recipe))
    order = epoch_permutation(len(data), int(cfg.seed), 0)   # one seeded order, every epoch (a baseline)
    loader = torch.utils.data.DataLoader(data, batch_size=recipe.batch_size, drop_last=True, sampler=order,
                                         collate_fn=task.collate)
    model.train()
    began, done = time.perf_counter(), 0
    while done < steps:
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            task.training_step(model, batch)["loss"].backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - began


def harness(cfg) -> float:
    """The job through run_job (checkpoints, guard, curve, progress): its recorded training time."""
    result = run_job(make_spec(cfg, None), progress=True)
    if result.failure:
        raise SystemExit(f"harness run failed: {result.failure.message}")
    return result.times.train_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="faster_rcnn")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    ratios = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = configure(args.model, args.steps, tmp, args.overrides)
            run_job(make_spec(cfg, None), progress=False)  # warm-up: data generation, allocator, caches
            order = (bare_loop, harness) if i % 2 == 0 else (harness, bare_loop)
            times = {fn.__name__: fn(configure(args.model, args.steps, f"{tmp}/{fn.__name__}", args.overrides))
                     for fn in order}
        ratios.append(times["harness"] / times["bare_loop"])
        print(f"repeat {i}: bare {times['bare_loop']:.2f}s, harness {times['harness']:.2f}s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    median = statistics.median(ratios)
    print(f"harness/bare training time ratio (median of {args.repeats}): {median:.3f} "
          f"(target <= {TARGET}) -> {'OK' if median <= TARGET else 'ABOVE TARGET'}")
    return 0 if median <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
