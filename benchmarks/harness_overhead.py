"""Harness overhead: a smoke job's training time through the harness vs the same steps bare.

The harness adds checkpoints, the NaN guard, curve logging, heartbeat files, the early check's
weight snapshot and a progress bar; target (issue 14): at most 1.02x the bare loop. Both run in
this process on the same model, data, optimizer and schedule; repeats alternate their order so
machine noise hits both alike, and the geometric mean of the ratios counts. ``python -m benchmarks`` measures
every torch implementation; the TensorFlow loop has no bare counterpart here yet.

    python -m benchmarks.harness_overhead [--model faster_rcnn|all] [--steps 60] [--repeats 4] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from typing import Callable, Sequence

import torch

from benchmarks.ratio import Ratio
from replicate.config.compose import compose_config
from replicate.resolved import make_spec, resolve_job
from replicate.runner.batch_order import epoch_permutation
from replicate.runner.optim import build_optimizer, lr_factor, scaled_lr, total_steps
from replicate.runner.torch_loop import seed_everything
from replicate.runner.worker import build_task, run_job

TARGET = 1.02


def configure(model: str, steps: int, results_dir: str, extra: list[str]):
    # 16 validation images: the evaluations around the timed steps are not what is measured
    return compose_config([f"model={model}", "tier.compare_with=none", f"results_dir={results_dir}",
                           f"model.tiers.smoke.recipe.steps={steps}", "scheduler=inline", "datasets.shapes.num_val=16",
                           *extra])


def bare_loop(cfg) -> float:
    """The same training steps with nothing around them: seconds of the loop only."""
    spec = make_spec(cfg, None)
    task = build_task(spec, cfg)
    seed_everything(int(cfg.seed))
    task.prepare_data()
    recipe = cfg.model.tiers.smoke.recipe
    model = task.build_model(spec.variant)
    data = task.build_dataset("train", train=True)
    steps, per_unit = total_steps(recipe, len(data), 1.0)
    lr, _ = scaled_lr(recipe)
    optimizers = task.configure_optimizers(model, recipe, lr, build_optimizer)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, steps, per_unit, recipe))
                 for o in optimizers.values()]
    order = epoch_permutation(len(data), int(cfg.seed), 0)   # one seeded order, every epoch (a baseline)
    loader = torch.utils.data.DataLoader(data, batch_size=recipe.batch_size, drop_last=True, sampler=order,
                                         collate_fn=task.collate)
    model.train()
    began, done = time.perf_counter(), 0
    while done < steps:
        for batch in loader:
            if task.manual_optimization:   # a GAN steps its own optimizers
                task.training_step(model, batch, optimizers)
            else:
                optimizers["main"].zero_grad(set_to_none=True)
                task.training_step(model, batch)["loss"].backward()
                optimizers["main"].step()
            for schedule in schedules:
                schedule.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - began


def harness(cfg) -> float:
    """The job through run_job (checkpoints, guard, curve, progress): its recorded training time."""
    result = run_job(resolve_job(cfg, None), progress=True)
    if result.failure:
        raise SystemExit(f"harness run failed: {result.failure.message}")
    return result.times.train_s


def ratio_for(model: str, steps: int, repeats: int, overrides: Sequence[str] = (),
              echo: Callable[[str], None] = print) -> Ratio:
    """The harness/bare training-time ratio of ``model``: the geometric mean over ``repeats``
    pairs (rounded up to even), half run bare first and half harness first. Whichever runs second
    in a pair is measured slower (about 12% on 2 cores: centernet 5.15 s bare then 5.92 s
    harness, 5.31 s harness then 5.88 s bare), so a median over unbalanced orders measures the
    order, not the harness."""
    repeats += repeats % 2
    ratios, pairs = [], []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = configure(model, steps, tmp, list(overrides))
            run_job(resolve_job(cfg, None), progress=False)  # warm-up: data generation, allocator, caches
            order = (bare_loop, harness) if i % 2 == 0 else (harness, bare_loop)
            times = {fn.__name__: fn(configure(model, steps, f"{tmp}/{fn.__name__}", list(overrides)))
                     for fn in order}
        ratios.append(times["harness"] / times["bare_loop"])
        pairs.append(f"{times['bare_loop']:.2f}/{times['harness']:.2f}s")
        echo(f"  {model} repeat {i}: bare {times['bare_loop']:.2f}s, harness {times['harness']:.2f}s, "
             f"ratio {ratios[-1]:.3f}")
    ratio = math.exp(statistics.fmean(math.log(r) for r in ratios))
    return Ratio("harness", f"train step, harness / bare loop ({model}, {steps} steps)", ratio,
                 TARGET, "lower", "x", f"geometric mean of {repeats}, orders balanced; bare/harness {', '.join(pairs)}")


def measure_all(steps: int = 60, repeats: int = 4, echo: Callable[[str], None] = print) -> list[Ratio]:
    """``ratio_for`` every registered model that trains in torch."""
    from replicate.models.registry import implementations

    return [ratio_for(name, steps, repeats, echo=echo) for name, framework in implementations() if framework == "torch"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="faster_rcnn", help="a model, or all")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    ratios = (measure_all(args.steps, args.repeats) if args.model == "all"
              else [ratio_for(args.model, args.steps, args.repeats, args.overrides)])
    for r in ratios:
        print(f"{r.name}: {r.value:.3f} (target <= {TARGET}) -> {'OK' if r.ok else 'ABOVE TARGET'}")
    return 0 if all(r.ok for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
