"""The torch loop's precision: what it records, and the GAN's two optimizer steps through a real
(CPU) GradScaler, held to PyTorch's AMP recipe for several models, losses and optimizers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from replicate.config.compose import compose_config
from replicate.jobs import JobResult
from replicate.resolved import make_spec
from replicate.runner.mixed_precision import MixedPrecision
from replicate.runner.torch_loop import RunContext, TorchLoop
from replicate.runner.worker import build_task, checkpoint_dir


def _loop(overrides: list[str]) -> TorchLoop:
    cfg = compose_config(overrides)
    spec = make_spec(cfg, None)
    ctx = RunContext(checkpoint_dir=checkpoint_dir(cfg, "precision-test"), progress=False)
    return TorchLoop(build_task(spec, cfg), cfg, ctx, JobResult(spec.job_id))


def _pix2pix(results_dir: Path, shapes_root: Path, tiny: list[str], *extra: str) -> TorchLoop:
    loop = _loop(["model=pix2pix", "tier.compare_with=none", f"results_dir={results_dir}",
                  f"datasets.shapes.root={shapes_root}", *tiny, "model.tiers.smoke.recipe.batch_size=4", *extra])
    loop.setup()
    loop.build_training()
    loop.enter_training()
    return loop


@pytest.mark.parametrize("asked", ["fp32", "amp"])
def test_a_cpu_job_runs_and_records_fp32_whatever_it_asks(asked, results_dir, shapes_root, tiny):
    loop = _pix2pix(results_dir, shapes_root, tiny, f"precision={asked}")
    assert not loop.fp16 and loop.mixed.autocast_device is None and not loop.mixed.scaler.is_enabled()
    assert loop.result.environment["precision"] == "fp32"


def restated_amp_gan_step(model, optimizers, scaler, source, real, lambda_l1):
    """PyTorch's AMP recipe "Working with multiple models, losses, and optimizers"
    (pytorch.org/docs/stable/notes/amp_examples.html): each loss scaled before its backward pass,
    each optimizer stepped through the scaler, ``scaler.update()`` once per iteration; in the
    order of junyanz/pytorch-CycleGAN-and-pix2pix models/pix2pix_model.py optimize_parameters
    (forward; D on the detached fake; then G against the updated D, with D frozen). The losses
    are its backward_D / backward_G: vanilla GANLoss (BCE with logits), D's halved, G's plus
    lambda_L1 * L1."""
    G, D = model.generator, model.discriminator
    fake = G(source)
    optimizers["D"].zero_grad()
    pred_fake = D(torch.cat([source, fake.detach()], 1))
    pred_real = D(torch.cat([source, real], 1))
    loss_d = 0.5 * (F.binary_cross_entropy_with_logits(pred_fake, torch.zeros_like(pred_fake))
                    + F.binary_cross_entropy_with_logits(pred_real, torch.ones_like(pred_real)))
    scaler.scale(loss_d).backward()
    scaler.step(optimizers["D"])
    for p in D.parameters():
        p.requires_grad = False
    optimizers["G"].zero_grad()
    pred = D(torch.cat([source, fake], 1))
    loss_g = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred)) + lambda_l1 * F.l1_loss(fake, real)
    scaler.scale(loss_g).backward()
    scaler.step(optimizers["G"])
    for p in D.parameters():
        p.requires_grad = True
    scaler.update()


# 2**10: every gradient finite, both networks step; 2**127: G's scaled loss (its L1 term is
# weighted 100) overflows, so G's step is skipped and the scale backs off, once.
@pytest.mark.parametrize("init_scale", [2.0**10, 2.0**127])
def test_the_gan_steps_both_optimizers_through_the_scaler_as_the_amp_recipe(init_scale, results_dir, shapes_root,
                                                                           tiny):
    loop = _pix2pix(results_dir, shapes_root, tiny)
    batch = next(loop.batches())
    # the restated side: the same networks and optimizers, copied together (the copies' optimizers
    # hold the copied parameters)
    model, optimizers = copy.deepcopy((loop.model, loop.optimizers))
    generator_before = [p.detach().clone() for p in loop.model.generator.parameters()]
    loop.mixed = MixedPrecision(None, torch.amp.GradScaler("cpu", init_scale=init_scale))   # a real, enabled scaler
    torch.manual_seed(5)   # the U-Net's dropout draws the same masks on both sides
    loop.train_step(batch)

    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    source, real = loop.task.source_target(batch)
    torch.manual_seed(5)
    restated_amp_gan_step(model, optimizers, scaler, source, real, float(loop.task.extra["lambda_l1"]))

    assert loop.mixed.scaler.get_scale() == scaler.get_scale()
    for ours, theirs in zip(loop.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    skipped = all(torch.equal(a, b) for a, b in zip(generator_before, loop.model.generator.parameters()))
    if init_scale == 2.0**127:
        assert skipped and scaler.get_scale() == 2.0**126   # backed off once: one update per iteration
    else:
        assert not skipped and scaler.get_scale() == init_scale


def test_an_enabled_scaler_without_overflow_steps_exactly_as_fp32(results_dir, shapes_root, tiny):
    """Scaling by a power of two and unscaling is exact: amp's scaler alone changes no update."""
    plain = _pix2pix(results_dir, shapes_root, tiny)
    (results_dir / "scaled").mkdir(parents=True)   # results_dir is created only inside an existing folder
    scaled = _pix2pix(results_dir / "scaled", shapes_root, tiny)
    scaled.model.load_state_dict(plain.model.state_dict())
    scaled.mixed = MixedPrecision(None, torch.amp.GradScaler("cpu", init_scale=2.0**12))
    batch = next(plain.batches())
    for loop in (plain, scaled):
        torch.manual_seed(3)
        loop.train_step(batch)
    for a, b in zip(plain.model.parameters(), scaled.model.parameters(), strict=True):
        assert torch.equal(a, b)
