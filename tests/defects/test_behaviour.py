"""Each defect of the catalogue changes what its job does, on the same input, against the same job
without it; and an injection changes only its own Task (nothing leaks into the next job).

One probe per defect, run on the implementation ``replicate selftest`` injects it into (its first
target). A defect added to the catalogue without a probe fails ``test_every_defect_has_a_probe``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
import torch

from replicate.defects import all_defects
from replicate.runner.optim import build_optimizer

CATALOGUE = {d.name: d for d in all_defects()}
PROBES: dict[str, Callable[[Any, Any], None]] = {}


def probe(name: str):
    """Register ``fn(clean, injected)``: asserts the injected job behaves differently."""

    def register(fn):
        PROBES[name] = fn
        return fn

    return register


def _recipe(job):
    return job.cfg.model.tiers[job.cfg.tier.name].recipe


def _items(job, split: str, train: bool, n: int = 4) -> list:
    dataset = job.task.build_dataset(split, train=train)
    return [dataset[i] for i in range(n)]


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape != b.shape or not torch.allclose(a.float(), b.float())
    if isinstance(a, dict):
        return any(_differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    return a != b


def _seeded_model(job, seed: int = 0):
    torch.manual_seed(seed)
    return job.task.build_model(job.task.ctx.variant)


# ---------------------------------------------------------------------------- recipe and config
@probe("lr_10x")
def _(clean, bad):
    assert _recipe(bad).lr == pytest.approx(10 * _recipe(clean).lr)


@probe("sgd_momentum_zero")
def _(clean, bad):
    model = _seeded_model(clean)
    momenta = [build_optimizer(_recipe(job), model.parameters(), 0.01).param_groups[0]["momentum"]
               for job in (clean, bad)]
    assert momenta == [0.9, 0.0]


@probe("eval_on_train_split")
def _(clean, bad):
    tiers = [job.cfg.model.tiers[job.cfg.tier.name] for job in (clean, bad)]
    assert tiers[0].eval_split == "val" and tiers[1].eval_split == tiers[1].train_split == "train"


@probe("shuffled_labels")
def _(clean, bad):
    assert _differs([t["labels"] for _, t in _items(clean, "train", True, 8)],
                    [t["labels"] for _, t in _items(bad, "train", True, 8)])


@probe("l1_weight_100x_small")
def _(clean, bad):
    assert _recipe(bad).extra.lambda_l1 == pytest.approx(_recipe(clean).extra.lambda_l1 / 100)


# ------------------------------------------------------------------------- torchvision detectors
def _detection_batch(job, train: bool):
    items = _items(job, "train" if train else "val", train, 2)
    return job.task.collate(items)


@probe("box_regression_loss_dropped")
def _(clean, bad):
    batch = _detection_batch(clean, True)
    losses = []
    for job in (clean, bad):
        model = _seeded_model(job)
        model.train()
        out = job.task.training_step(model, batch)
        out["loss"].backward()
        losses.append((set(out), model.roi_heads.box_predictor.bbox_pred.weight.grad))
    assert "loss_box_reg" in losses[0][0] and "loss_box_reg" not in losses[1][0]
    assert losses[0][1] is not None and losses[1][1] is None   # the box head gets no gradient


@probe("flip_image_not_boxes")
def _(clean, bad):
    pairs = list(zip(_items(clean, "train", True, 8), _items(bad, "train", True, 8)))
    assert all(not _differs(a[0], b[0]) for a, b in pairs), "the same images (same flip draws)"
    assert any(_differs(a[1]["boxes"], b[1]["boxes"]) for a, b in pairs), "boxes left unflipped"


@probe("flip_at_evaluation")
def _(clean, bad):
    pairs = list(zip(_items(clean, "val", False, 8), _items(bad, "val", False, 8)))
    assert any(_differs(a[0], b[0]) for a, b in pairs)


@probe("cls_prior_init_missing")
def _(clean, bad):
    biases = [_seeded_model(job).head.classification_head.cls_logits.bias for job in (clean, bad)]
    assert biases[0].mean() < -4 and torch.count_nonzero(biases[1]) == 0


@probe("optimizer_heads_only")
def _(clean, bad):
    model = _seeded_model(clean)
    trained = [{id(p) for p in job.task.parameter_groups(model)} for job in (clean, bad)]
    backbone = {id(p) for p in model.backbone.parameters()}
    assert backbone <= trained[0] and not backbone & trained[1] and trained[1] < trained[0]


@probe("coco_boxes_xywh_twice")
def _(clean, bad):
    items = _items(clean, "val", False, len(clean.task.build_dataset("val", train=False)))
    perfect = [{"image_id": t["image_id"], "boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])),
                "labels": t["labels"]} for _, t in items]
    scores = []
    for job in (clean, bad):
        evaluator = job.task.build_evaluator("val")
        evaluator.update(copy.deepcopy(perfect))
        scores.append(evaluator.compute()["bbox_AP"])
    assert scores[0] == pytest.approx(100.0) and scores[1] < 90


# -------------------------------------------------------------------------------------- CenterNet
@probe("center_offset_half_cell")
def _(clean, bad):
    items = _items(clean, "train", True)
    (_, _, a), (_, _, b) = clean.task.collate(items), bad.task.collate(items)
    mask = a["mask"].bool()
    assert torch.allclose(b["reg"][mask], a["reg"][mask] - 0.5) and torch.equal(a["hm"], b["hm"])


@probe("heatmap_radius_exact_roots")
def _(clean, bad):
    items = _items(clean, "train", True)
    (_, _, a), (_, _, b) = clean.task.collate(items), bad.task.collate(items)
    assert b["hm"].sum() < a["hm"].sum()   # narrower gaussians, same peaks
    assert torch.equal(a["hm"] == 1, b["hm"] == 1)


# ---------------------------------------------------------------------------------------- pix2pix
@probe("direction_swapped_in_training")
def _(clean, bad):
    batch = clean.task.collate(_items(clean, "train", True, 2))
    model = _seeded_model(clean)
    l1 = []
    for job in (clean, bad):
        copy_ = copy.deepcopy(model)
        optimizers = job.task.configure_optimizers(copy_, _recipe(job), 1e-3, build_optimizer)
        l1.append(float(job.task.training_step(copy_, batch, optimizers)["loss_G_L1"]))
    assert l1[0] != pytest.approx(l1[1])


@probe("gan_default_init")
def _(clean, bad):
    stds = [float(_seeded_model(job).generator.model.model[0].weight.std()) for job in (clean, bad)]
    assert stds[0] == pytest.approx(0.02, rel=0.2) and stds[1] != pytest.approx(stds[0], rel=0.2)


# ---------------------------------------------------------------------------------------- YOLOs
def _yolo_predictions(clean, bad, tensorflow: bool = False) -> list[list[dict]]:
    """Both tasks' predictions of the same model (objectness raised so every head detects) on the
    same validation batch."""
    from zoo_models.yolo.torch_task import set_objectness_prior

    model = _seeded_model(clean)
    set_objectness_prior(model, 0.5)
    model.eval()
    batch = clean.task.collate(_items(clean, "val", False, 2))
    _items(bad, "val", False, 1)   # a task learns its category ids from the dataset it builds
    with torch.no_grad():
        return [job.task.predict(model, batch) for job in (clean, bad)]


@probe("anchor_wh_swapped_in_decoding")
def _(clean, bad):
    ours, theirs = _yolo_predictions(clean, bad)
    assert len(ours[0]["boxes"]) > 0 and _differs(ours[0]["boxes"], theirs[0]["boxes"])


@probe("bn_train_mode_at_inference")
def _(clean, bad):
    ours, theirs = _yolo_predictions(clean, bad)
    assert len(ours[0]["scores"]) > 0 and _differs(ours[0]["scores"], theirs[0]["scores"])


@probe("class_index_as_category_id")
def _(clean, bad):
    ours, theirs = _yolo_predictions(clean, bad)
    assert len(ours[0]["labels"]) > 0
    assert torch.equal(theirs[0]["labels"], ours[0]["labels"] - 1)   # shapes' category ids are 1..3


@probe("box_scale_ignores_aspect")
def _(clean, bad):
    pairs = list(zip(_items(clean, "train", True), _items(bad, "train", True)))
    assert all(not _differs(a[0], b[0]) for a, b in pairs), "the same images (same jitter draws)"
    assert any(_differs(a[1]["boxes"], b[1]["boxes"]) for a, b in pairs)


@probe("normalised_for_training_only")
def _(clean, bad):
    assert _differs(_items(clean, "train", True)[0][0], _items(bad, "train", True)[0][0])
    assert not _differs(_items(clean, "val", False)[0][0], _items(bad, "val", False)[0][0])


@probe("keras_training_false_in_step")
def _(clean, bad):
    from replicate.tf_import import tensorflow

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    model = clean.task.build_model(clean.task.ctx.variant)
    arrays, _ = clean.task.collate(_items(clean, "train", True, 2))
    tensors = {k: tf.convert_to_tensor(v) for k, v in arrays.items()}
    losses = [float(job.task.training_step(model, tensors)["loss"]) for job in (clean, bad)]
    assert losses[0] != pytest.approx(losses[1])


# ------------------------------------------------------ written blind, 2026-12-07
@probe("score_thresh_from_demo")
def _(clean, bad):
    assert [_seeded_model(job).roi_heads.score_thresh for job in (clean, bad)] == [0.05, 0.7]


@probe("box_head_matcher_rpn_thresholds")
def _(clean, bad):
    matchers = [_seeded_model(job).roi_heads.proposal_matcher for job in (clean, bad)]
    assert (matchers[0].high_threshold, matchers[1].high_threshold) == (0.5, 0.7)
    assert matchers[1].low_threshold == 0.3


@probe("retinanet_score_nms_swapped")
def _(clean, bad):
    ours, theirs = _seeded_model(clean), _seeded_model(bad)
    assert (theirs.score_thresh, theirs.nms_thresh) == (ours.nms_thresh, ours.score_thresh) == (0.5, 0.05)


@probe("mask_binarised_as_logits")
def _(clean, bad):
    model = _seeded_model(clean)
    model.eval()
    model.roi_heads.score_thresh = 0.0   # an untrained model: keep whatever it detects
    batch = _detection_batch(clean, False)
    with torch.no_grad():
        ours, theirs = (job.task.predict(model, batch) for job in (clean, bad))
    assert len(ours[0]["masks"]) > 0
    assert int((theirs[0]["masks"]).sum()) > int((ours[0]["masks"] > 0.5).sum())


@probe("ignore_thresh_from_truth_thresh")
def _(clean, bad):
    ours, theirs = (_seeded_model(job).heads for job in (clean, bad))
    assert all(h.ignore_thresh < 1 for h in ours) and all(h.ignore_thresh == 1.0 for h in theirs)


@probe("discriminator_unconditioned")
def _(clean, bad):
    ours, theirs = _seeded_model(clean).discriminator, _seeded_model(bad).discriminator
    x = torch.randn(1, ours.model[0].in_channels, 64, 64)
    changed = x.clone()
    changed[:, : x.shape[1] // 2] += 1   # another input image, the same output image
    with torch.no_grad():
        assert _differs(ours(x), ours(changed)) and not _differs(theirs(x), theirs(changed))


# ------------------------------------------------------ written blind, 2026-12-07 (second half)
@probe("centernet_wh_off_weights_swapped")
def _(clean, bad):
    ours, theirs = clean.task.loss_settings(), bad.task.loss_settings()
    assert ours["wh_weight"] != ours["off_weight"]
    assert (theirs["wh_weight"], theirs["off_weight"]) == (ours["off_weight"], ours["wh_weight"])
    batch = clean.task.collate(_items(clean, "train", True, 2))
    model = _seeded_model(clean)
    losses = [float(job.task.training_step(model, batch)["loss"].detach()) for job in (clean, bad)]
    assert losses[0] != pytest.approx(losses[1])


@probe("centernet_top_k_from_demo")
def _(clean, bad):
    model = _seeded_model(clean)
    model.eval()
    batch = clean.task.eval_collate(_items(clean, "val", False, 2))
    _items(bad, "val", False, 1)   # a task learns its category ids from the dataset it builds
    with torch.no_grad():
        ours, theirs = (job.task.predict(model, batch) for job in (clean, bad))
    assert len(ours[0]["scores"]) > 10 and len(theirs[0]["scores"]) == 10
    assert torch.equal(theirs[0]["scores"], ours[0]["scores"][:10])


def _tf_model(job):
    from replicate.tf_import import tensorflow

    tensorflow().keras.utils.set_random_seed(0)
    return job.task.build_model(job.task.ctx.variant)


@probe("keras_bn_momentum_torch_sense")
def _(clean, bad):
    from replicate.tf_import import tensorflow

    tf = tensorflow()
    models = [_tf_model(job) for job in (clean, bad)]
    momenta = [[b.bn.momentum for _, b in m.conv_blocks() if b.bn is not None] for m in models]
    assert all(k > 0.5 for k in momenta[0]) and momenta[1] == pytest.approx([1 - k for k in momenta[0]])
    arrays, _ = clean.task.collate(_items(clean, "train", True, 2))
    images = tf.convert_to_tensor(arrays["images"])
    for model in models:
        model(images, training=True)   # one training-mode pass updates the moving statistics
    first = [next(b.bn for _, b in m.conv_blocks() if b.bn is not None) for m in models]
    assert _differs(torch.from_numpy(first[0].moving_mean.numpy()), torch.from_numpy(first[1].moving_mean.numpy()))


@probe("channels_last_transposed")
def _(clean, bad):
    items = _items(clean, "train", True, 2)
    _items(bad, "train", True, 1)   # a task learns its category ids from the dataset it builds
    (ours, _), (theirs, _) = clean.task.collate(items), bad.task.collate(items)
    assert _differs(torch.from_numpy(ours["images"]), torch.from_numpy(theirs["images"]))
    assert torch.equal(torch.from_numpy(theirs["images"]), torch.from_numpy(ours["images"]).transpose(1, 2))
    assert torch.equal(torch.from_numpy(ours["boxes"]), torch.from_numpy(theirs["boxes"]))


@probe("bgr_at_evaluation")
def _(clean, bad):
    ours, theirs = _items(clean, "val", False, 2), _items(bad, "val", False, 2)
    assert all(torch.equal(b[0], a[0].flip(0)) and _differs(a[0], b[0]) for a, b in zip(ours, theirs))
    assert not _differs(_items(clean, "train", True)[0][0], _items(bad, "train", True)[0][0])


@probe("warmup_integer_division")
def _(clean, bad):
    from replicate.runner.optim import lr_factor

    recipe = _recipe(clean)
    model = _seeded_model(clean)
    applied = []
    for job in (clean, bad):
        optimizer = job.task.configure_optimizers(model, recipe, 0.01, build_optimizer)["main"]
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, 1000, 1.0, recipe))
        rates = []
        for _ in range(recipe.warmup_steps + 2):
            optimizer.step()   # no gradients: only the rate it ran with matters
            rates.append(optimizer.param_groups[0]["lr"])
            schedule.step()
        applied.append(rates)
    half = recipe.warmup_steps // 2
    assert applied[1][half] == pytest.approx(0.01 * recipe.warmup_factor)
    assert applied[0][half] > 100 * applied[1][half]
    assert applied[0][-1] == pytest.approx(applied[1][-1]) == pytest.approx(0.01)


# ------------------------------------------------------ written blind, 2026-12-07 (third set)
@probe("category_ids_zero_based")
def _(clean, bad):
    pairs = list(zip(_items(clean, "train", True), _items(bad, "train", True)))
    assert all(torch.equal(b[1]["labels"], a[1]["labels"] - 1) for a, b in pairs)
    assert any((b[1]["labels"] == 0).any() for _, b in pairs), "the first class becomes background"
    assert all(not _differs(a[0], b[0]) and not _differs(a[1]["boxes"], b[1]["boxes"]) for a, b in pairs)


@probe("mask_channel_label_minus_one")
def _(clean, bad):
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    ours, theirs = (_seeded_model(job).roi_heads.mask_predictor for job in (clean, bad))
    labels = torch.arange(1, ours.mask_fcn_logits.out_channels)   # one detection of each class
    x = torch.randn(len(labels), ours.conv5_mask.in_channels, 7, 7)
    with torch.no_grad():
        assert not _differs(ours(x), theirs(x)), "training reads channel `labels`"
        ours.eval()
        theirs.eval()
        a, b = ours(x), theirs(x)
    picked = maskrcnn_inference(b, [labels])[0]   # the channel inference selects for each detection ...
    assert torch.allclose(picked, maskrcnn_inference(a, [labels - 1])[0])   # ... is the previous class's
    assert _differs(picked, maskrcnn_inference(a, [labels])[0])


@probe("focal_loss_mean_reduction")
def _(clean, bad):
    ours, theirs = (_seeded_model(job).head.classification_head for job in (clean, bad))
    torch.manual_seed(0)
    logits = torch.randn(1, 6, ours.num_classes)   # one image, six anchors
    matched = torch.tensor([[0, -1, 1, ours.BETWEEN_THRESHOLDS, 0, -1]])   # 3 foreground, 5 not ignored
    targets = [{"labels": torch.tensor([1, 2])}]
    a, b = (float(head.compute_loss(targets, {"cls_logits": logits}, list(matched))) for head in (ours, theirs))
    # the summed loss over 3 foreground anchors against its mean over 5 anchors x the classes
    assert a > 0 and b == pytest.approx(a * 3 / (5 * ours.num_classes))


@probe("centre_index_column_major")
def _(clean, bad):
    items = _items(clean, "train", True)
    (_, _, a), (_, _, b) = clean.task.collate(items), bad.task.collate(items)
    height, width = a["hm"].shape[-2:]
    mask = a["mask"].bool()
    y, x = a["ind"] // width, a["ind"] % width   # the reference's row-major y * W + x
    assert torch.equal(b["ind"][mask], (x * height + y)[mask]) and _differs(a["ind"][mask], b["ind"][mask])
    assert torch.equal(a["hm"], b["hm"]) and torch.equal(a["wh"], b["wh"]) and torch.equal(a["reg"], b["reg"])


@probe("pair_flipped_independently")
def _(clean, bad):
    """Smoke pix2pix has no crop: a training pair is its unjittered pair, each half mirrored or
    not; the clean job mirrors both halves or neither, the defect some pairs by one half only."""
    raw = clean.task.build_dataset("train", train=True).dataset   # JitterPairs' inner, unjittered pairs

    def mirrored(items):
        flags = []
        for i, (label, photo) in enumerate(items):
            pair = raw[i]
            flags.append(tuple(_differs(half, original) for half, original in zip((label, photo), pair)))
            for half, original, flipped in zip((label, photo), pair, flags[-1]):
                assert torch.equal(half, original.flip(-1) if flipped else original)
        return flags

    torch.manual_seed(0)
    ours = mirrored(_items(clean, "train", True, 8))
    torch.manual_seed(0)
    theirs = mirrored(_items(bad, "train", True, 8))
    assert all(f[0] == f[1] for f in ours) and any(f[0] for f in ours)
    assert any(f[0] != f[1] for f in theirs), "some pair has only one half mirrored"


@probe("objectness_bce_mean_reduction")
def _(clean, bad):
    """yolov3's objectness part is each [yolo] layer's summed BCE over its anchors x cells in the
    defect, the sum itself in the clean loss (box and class parts alike in both)."""
    from zoo_models.yolo.loss import layer_loss, truths_tensor

    model = _seeded_model(clean)
    images, targets = batch = clean.task.collate(_items(clean, "train", True, 2))
    with torch.no_grad():
        ours, theirs = (job.task.training_step(model, batch) for job in (clean, bad))
        outputs = model(images)
    gt, size, hw = truths_tensor(targets, images.device), len(images), tuple(images.shape[-2:])
    obj = [(float(layer_loss(raw.float(), gt, head, hw, size)["obj"]), len(head.mask) * raw.shape[-2] * raw.shape[-1])
           for raw, head in zip(outputs, model.heads)]
    assert float(ours["obj"]) == pytest.approx(sum(o for o, _ in obj) / size)
    assert float(theirs["obj"]) == pytest.approx(sum(o / cells for o, cells in obj) / size)
    assert float(ours["box"]) == pytest.approx(float(theirs["box"]))
    assert float(ours["cls"]) == pytest.approx(float(theirs["cls"]))


@probe("tf_boxes_in_yxyx_order")
def _(clean, bad):
    items = _items(clean, "train", True, 2)
    _items(bad, "train", True, 1)   # a task learns its category ids from the dataset it builds
    (ours, _), (theirs, _) = clean.task.collate(items), bad.task.collate(items)
    a, b = torch.from_numpy(ours["boxes"]), torch.from_numpy(theirs["boxes"])
    valid = torch.from_numpy(ours["valid"])
    assert torch.equal(b, a[..., [1, 0, 3, 2]]) and _differs(a[valid], b[valid])   # (y0, x0, y1, x1)
    assert all(torch.equal(torch.from_numpy(ours[k]), torch.from_numpy(theirs[k]))
               for k in ("images", "classes", "valid"))


@probe("objectness_prior_in_class_column")
def _(clean, bad):
    ours, theirs = _seeded_model(clean), _seeded_model(bad)
    prior = float(torch.logit(torch.tensor(0.01)))
    assert ours.heads
    for head in ours.heads:   # each anchor's (x, y, w, h, objectness, classes...) biases
        a, b = (m.net.layers[head.index - 1].conv.bias.detach().view(len(head.mask), head.classes + 5)
                for m in (ours, theirs))
        assert torch.allclose(a[:, 4], torch.full_like(a[:, 4], prior))   # clean: objectness, channel 4
        assert torch.equal(b[:, 5], a[:, 4]) and torch.count_nonzero(b[:, 4]) == 0   # defect: the first class's
        assert torch.equal(b[:, :4], a[:, :4]) and torch.equal(b[:, 6:], a[:, 6:])


# -------------------------------------------------------------------------------------- the tests
def test_every_defect_has_a_probe():
    assert set(PROBES) == set(CATALOGUE)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_the_defect_changes_behaviour_on_its_selftest_target(name, build_job):
    target = CATALOGUE[name].targets[0]
    PROBES[name](build_job(target), build_job(target, name))


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_an_injection_changes_only_its_own_task(name, build_job):
    """Patches are per instance: a clean Task of the same class built after an injected one is
    untouched (a Ray worker runs other jobs in the same process)."""
    target = CATALOGUE[name].targets[0]
    probe = build_job(target)
    classes = {cls: dict(vars(cls)) for cls in type(probe.task).__mro__}   # a class-level patch shows here
    injected = build_job(target, name)
    clean = build_job(target)
    assert {cls: dict(vars(cls)) for cls in type(probe.task).__mro__} == classes, "a class was patched"
    assert getattr(injected.task, "injected_defect", None) == name or target.framework != "torch"
    assert not {k for k in vars(clean.task) if callable(vars(clean.task)[k])}, "no instance patches"
    assert not hasattr(clean.task, "injected_defect")
    assert clean.task.ctx.shuffle_labels is False
    recipe = clean.cfg.model.tiers[clean.cfg.tier.name].recipe
    assert recipe.lr == compose_lr(target)


def compose_lr(target) -> float:
    from replicate.config.compose import compose_config

    return compose_config([f"model={target.model}"]).model.tiers.smoke.recipe.lr
