"""pix2pix (models/zoo_models/pix2pix.py): parameter counts, shapes, the GAN step, the FCN-score hook
(the FCN-score itself: tests/evaluation/test_fcn_score.py).

Fast tests compose the real config shrunk to a tiny generated shapes set; the smoke-tier
learning run (minutes) is marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from replicate.config.compose import compose_config
from replicate.errors import ConfigError, DataError
from replicate.resolved import make_spec, resolve_job
from replicate.runner.optim import build_optimizer
from replicate.runner.worker import build_task
from zoo_models.pix2pix import JitterPairs, Pix2Pix, build_pix2pix

TINY = ["datasets.shapes.num_train=8", "datasets.shapes.num_val=4", "datasets.shapes.image_size=64"]


def make_task(tmp_path: Path, extra: list[str] = ()):
    cfg = compose_config(["model=pix2pix", "tier.compare_with=none", f"results_dir={tmp_path}", *TINY, *extra])
    return build_task(make_spec(cfg, None), cfg), cfg


def first_batch(task, train: bool = False, count: int = 4):
    task.prepare_data()
    dataset = task.build_dataset("train", train=train)
    return task.collate([dataset[i] for i in range(count)])


def test_full_variant_counts_match_the_reference(tmp_path):
    task, cfg = make_task(tmp_path)
    model = task.build_model("full")
    full = cfg.model.variants.full
    assert task.trainable_parameters(model) == full.trainable_params == 54_413_955
    discriminator = sum(p.numel() for p in model.discriminator.parameters() if p.requires_grad)
    assert discriminator == full.arch.discriminator_params == 2_768_705
    # The 70x70 PatchGAN: a 30x30 map of patch logits for a 256x256 pair (6 channels).
    model.eval()
    with torch.no_grad():
        assert model.discriminator(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_unet_256_keeps_the_image_size_and_tanh_range():
    arch = {"generator": "unet_256", "ngf": 8}  # the reference's 8 levels, narrow to stay fast
    model = build_pix2pix(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 3, 256, 256) and out.abs().max() <= 1
    # Dropout sits only in the 8*ngf-wide middle levels: num_downs - 5 = 3 of them.
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 3


def test_small_variant_shapes(tmp_path):
    task, cfg = make_task(tmp_path)
    model = task.build_model("small")
    assert isinstance(model, Pix2Pix)
    batch = first_batch(task)
    assert [tuple(t.shape) for t in batch] == [(4, 3, 64, 64)] * 2 and task.batch_size_of(batch) == 4
    model.eval()
    with torch.no_grad():
        assert task.output_shapes(model, batch) == {"pred": (4, 3, 64, 64), "target": (4, 3, 64, 64),
                                                  "source": (4, 3, 64, 64)}
        patches = model.discriminator(torch.cat(batch, 1))
    assert patches.shape == (4, 1, 14, 14)  # n_layers 2 at 64 px


def test_training_steps_give_finite_losses_and_lower_l1(tmp_path):
    task, cfg = make_task(tmp_path)
    torch.manual_seed(0)
    model = task.build_model("small").train()
    recipe = cfg.model.tiers.smoke.recipe
    optimizers = task.configure_optimizers(model, recipe, float(recipe.lr), build_optimizer)
    assert set(optimizers) == {"G", "D"}
    batch = first_batch(task, train=True)
    losses = [task.training_step(model, batch, optimizers) for _ in range(6)]
    assert set(losses[0]) == {"loss", "loss_G_GAN", "loss_G_L1", "loss_D"}
    assert all(math.isfinite(float(v)) for out in losses for v in out.values())
    assert float(losses[-1]["loss_G_L1"]) < float(losses[0]["loss_G_L1"])
    # D's parameters are trainable again after G's step froze them.
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_check_loss_reaches_every_parameter(tmp_path):
    task, _ = make_task(tmp_path)
    model = task.build_model("small").train()
    task.check_loss(model, first_batch(task)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_evaluator_reports_l1_psnr_ssim(tmp_path):
    task, _ = make_task(tmp_path)
    model = task.build_model("small").eval()
    evaluator = task.build_evaluator("val")
    with torch.no_grad():
        predictions = task.predict(model, first_batch(task))
    evaluator.update(predictions)
    metrics = evaluator.compute()
    assert set(metrics) == {"L1", "PSNR", "SSIM", "layout_per_pixel_acc", "layout_per_class_acc", "layout_class_iou"}
    expected = torch.cat([(p["pred"] - p["target"]).abs().flatten() for p in predictions]).mean()
    assert metrics["L1"] == pytest.approx(float(expected), rel=1e-4)


def test_paper_inference_uses_batch_statistics_and_keeps_state(tmp_path):
    task, _ = make_task(tmp_path, ["+model.tiers.smoke.recipe.extra.paper_inference=true"])
    model = task.build_model("small").eval()
    batch = first_batch(task)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    with torch.no_grad():
        first, second = (task.predict(model, batch)[0]["pred"] for _ in range(2))
        plain = model.generator(task.source_target(batch)[0])
    assert not torch.equal(first, second)  # dropout stays on, as in the paper
    assert not torch.allclose(first, plain)  # batch statistics, not the running ones
    assert not model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_translations_pick_source_and_target(tmp_path):
    task, _ = make_task(tmp_path)  # the smoke config: label_to_photo, the paper's direction
    labels, photos = first_batch(task)
    source, target = task.source_target((labels, photos))
    assert source is labels and target is photos
    task, _ = make_task(tmp_path, ["model.tiers.smoke.recipe.extra.translation=photo_to_foreground"])
    source, target = task.source_target((labels, photos))
    assert source is photos and set(target.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(target[:, 0] < 0, (labels <= 0).all(1))  # background is black in the label map


def test_unknown_translation_names_its_key(tmp_path):
    task, _ = make_task(tmp_path, ["model.tiers.smoke.recipe.extra.translation=sideways"])
    with pytest.raises(ConfigError) as err:
        task.prepare_data()
    assert err.value.key == "model.tiers.smoke.recipe.extra.translation"


def test_shuffled_pairs_differ(tmp_path):
    def pairs(task):  # the training set without its random flips
        task.prepare_data()
        dataset = task.build_dataset("train", train=True)
        dataset = dataset.dataset if isinstance(dataset, JitterPairs) else dataset
        return task.collate([dataset[i] for i in range(len(dataset))])

    labels, photos = pairs(make_task(tmp_path)[0])
    s_labels, s_photos = pairs(make_task(tmp_path, ["shuffle_labels=true"])[0])
    assert torch.equal(s_labels, labels)  # each index keeps its label map, paired with another's photo
    assert all(not torch.equal(a, b) for a, b in zip(s_photos, photos))
    assert sorted(p.sum().item() for p in s_photos) == pytest.approx(sorted(p.sum().item() for p in photos))


def test_jitter_resizes_crops_and_keeps_label_codes():
    torch.manual_seed(0)
    label = torch.full((3, 32, 32), -1.0)
    label[0, 8:20, 8:20] = 1.0  # a red square on black
    pairs = JitterPairs([(label, torch.rand(3, 32, 32) * 2 - 1)], crop_size=32, load_size=36)
    for _ in range(4):
        out_label, out_photo = pairs[0]
        assert out_label.shape == out_photo.shape == (3, 32, 32)
        assert set(out_label.unique().tolist()) == {-1.0, 1.0} and out_photo.abs().max() <= 1


def test_full_tier_requires_the_fcn_segmenter_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    task, _ = make_task(tmp_path, ["tier=full"])
    for hook in (task.prepare_data, lambda: task.build_evaluator("val")):
        with pytest.raises(DataError, match="fcn-8s-cityscapes.caffemodel"):
            hook()


def test_fcn_segmenter_needs_label_to_photo(tmp_path):
    task, _ = make_task(tmp_path, ["+model.tiers.smoke.segmenter={file: fcn.pth, source: lab}",
                                   "model.tiers.smoke.recipe.extra.translation=photo_to_foreground"])
    with pytest.raises(ConfigError) as err:
        task.prepare_data()
    assert err.value.key == "model.tiers.smoke.recipe.extra.translation"


def test_draw_sample_is_a_square_uint8_tile(tmp_path):
    task, _ = make_task(tmp_path)
    task.prepare_data()
    image = task.draw_sample(task.build_dataset("train", train=True)[0])
    assert image.dtype == torch.uint8 and image.shape == (3, 128, 128)


@pytest.mark.slow
def test_smoke_tier_learns_and_shuffled_pairs_do_not(tmp_path):
    """The acceptance run: L1 ends far below the untrained L1 and below what shuffled pairs reach."""
    from replicate.runner.worker import run_job

    finals = {}
    runs = {"untrained": ["model.tiers.smoke.recipe.steps=1"], "trained": [], "shuffled": ["shuffle_labels=true"]}
    for name, extra in runs.items():
        cfg = compose_config(["model=pix2pix", "tier.compare_with=none", f"results_dir={tmp_path / name}", *extra])
        result = run_job(resolve_job(cfg, None), progress=False)
        assert result.failure is None, result.failure
        finals[name] = result.metrics["L1"]
    assert finals["trained"] <= finals["untrained"] / 3
    assert finals["trained"] < 0.6 * finals["shuffled"]


def test_the_references_saved_networks_load_exactly(tmp_path):
    """``latest_net_G.pth`` / ``latest_net_D.pth`` as the reference saves them (bare state dicts in
    its layout, tests/pix2pix_reference.py) load into the full variant with nothing left over."""
    from replicate.errors import DataError
    from tests import pix2pix_reference as ref

    task, _ = make_task(tmp_path, ["tier=full"])
    model = task.build_model("full")
    assert {k: tuple(v.shape) for k, v in model.generator.state_dict().items()} == ref.generator_layout()
    assert {k: tuple(v.shape) for k, v in model.discriminator.state_dict().items()} == ref.discriminator_layout()
    generator = {k: torch.randn(s) if s else torch.tensor(7) for k, s in ref.generator_layout().items()}
    discriminator = {k: torch.randn(s) if s else torch.tensor(7) for k, s in ref.discriminator_layout().items()}
    torch.save(generator, tmp_path / "latest_net_G.pth")
    torch.save(discriminator, tmp_path / "latest_net_D.pth")
    assert task.load_checkpoint(model, tmp_path / "latest_net_G.pth") is True
    torch.testing.assert_close(model.generator.state_dict()["model.model.3.bias"], generator["model.model.3.bias"])
    torch.testing.assert_close(model.discriminator.state_dict()["model.0.weight"], discriminator["model.0.weight"])
    assert task.load_checkpoint(model, tmp_path / "model.pt") is False          # the loop's own format
    del generator["model.model.1.model.2.running_var"]
    torch.save(generator, tmp_path / "bad_net_G.pth")
    with pytest.raises(DataError, match="bad_net_G.pth.*running_var"):
        task.load_checkpoint(model, tmp_path / "bad_net_G.pth")


def test_pairs_read_as_the_references_aligned_test_transform(tmp_path):
    """An aligned Cityscapes pair at the reference's test settings (load 256 = crop 256, no flip):
    torchvision's ToTensor + Normalize(0.5, 0.5) on each half, photo left (A), label right (B,
    the input of --direction BtoA)."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from replicate.data.paired_dataset import PairedImages

    rng = np.random.default_rng(0)
    (tmp_path / "val").mkdir()
    Image.fromarray(rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)).save(tmp_path / "val" / "0.png")
    label, photo = PairedImages(tmp_path, "val", size=256)[0]
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    pair = Image.open(tmp_path / "val" / "0.png").convert("RGB")
    torch.testing.assert_close(photo, reference(pair.crop((0, 0, 256, 256))), atol=1e-6, rtol=0)
    torch.testing.assert_close(label, reference(pair.crop((256, 0, 512, 256))), atol=1e-6, rtol=0)
