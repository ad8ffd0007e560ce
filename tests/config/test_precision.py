"""precision (fp32 | amp) as a tier setting with the references' default, a job-wide override, its
validation, its part of the config hash and the deviation it declares beside the verdict."""

from __future__ import annotations

import pytest

from replicate.catalog import model_rows
from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.errors import ConfigError
from replicate.precision import AMP_DEVIATION, autocasts, chosen_precision, declared_deviations
from replicate.resolved import config_hash
from replicate.verdict import target_for

EVAL_MODELS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet", "yolov3", "yolov4")
GPU = ["hardware=h100x1", "logger=none"]


@pytest.mark.parametrize("model", EVAL_MODELS)
def test_an_eval_tier_on_a_gpu_profile_is_fp32_and_declares_no_precision_deviation(model):
    cfg = compose_config([f"model={model}", "tier=eval", *GPU])
    assert chosen_precision(cfg) == "fp32"
    assert AMP_DEVIATION not in (target_for(cfg, cfg.model.tiers.eval.variant).deviations or [])


def test_every_tier_of_every_model_defaults_to_fp32_as_its_reference():
    for model in group_options("model"):
        cfg = compose_config([f"model={model}", "logger=none"])
        assert {str(t.precision) for t in cfg.model.tiers.values()} == {"fp32"}, model


@pytest.mark.parametrize("override", ["precision=amp", "model.tiers.eval.precision=amp"])
def test_amp_when_asked_for_job_wide_or_by_the_tier_and_declared_beside_the_verdict(override):
    cfg = compose_config(["model=faster_rcnn", "tier=eval", *GPU, override])
    assert chosen_precision(cfg) == "amp"
    target = target_for(cfg, "full")
    assert target.deviations == [AMP_DEVIATION]      # the tier lists none ([]): amp's is added
    assert "fp16 autocast" in AMP_DEVIATION and "the reference runs fp32" in AMP_DEVIATION


def test_the_job_wide_setting_wins_over_the_tier():
    cfg = compose_config(["model=faster_rcnn", "tier=eval", *GPU, "model.tiers.eval.precision=amp",
                          "precision=fp32"])
    assert chosen_precision(cfg) == "fp32" and target_for(cfg, "full").deviations == []


def test_the_hash_follows_the_precision_computed_not_where_it_was_set():
    base = ["model=faster_rcnn", "tier=eval", *GPU]
    fp32 = config_hash(compose_config(base))
    assert config_hash(compose_config([*base, "precision=fp32"])) == fp32   # fp32 hashes as before the key
    amp = {config_hash(compose_config([*base, o])) for o in ("precision=amp", "model.tiers.eval.precision=amp")}
    assert len(amp) == 1 and fp32 not in amp


@pytest.mark.parametrize("override,key", [("precision=fp16x", "precision"),
                                          ("model.tiers.eval.precision=fp16x", "model.tiers.eval.precision")])
def test_an_unknown_precision_exits_2_naming_the_key(override, key, capsys):
    assert main(["run", "model=faster_rcnn", "tier=eval", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err == f"error: {key}: 'fp16x' is not allowed; allowed: fp32, amp", err


@pytest.mark.parametrize("override,key", [("precision=amp", "precision"),
                                          ("model.tiers.smoke.precision=amp", "model.tiers.smoke.precision")])
def test_amp_is_refused_for_tensorflow_which_runs_fp32_only(override, key):
    with pytest.raises(ConfigError) as err:
        compose_config(["model=yolov3", "framework=tensorflow", "logger=none", override])
    assert err.value.key == key and "TensorFlow loop runs fp32 only" in str(err.value)


def test_autocast_only_for_amp_on_cuda():
    assert autocasts("amp", "cuda")
    assert not autocasts("amp", "cpu")          # a CPU job computes fp32, whatever it asks
    assert not autocasts("fp32", "cuda")        # the references' arithmetic on a GPU
    assert not autocasts("fp32", "cpu")


def test_declared_deviations_add_amp_once_and_keep_none_for_an_uncompared_fp32_tier():
    assert declared_deviations(None, "fp32") is None
    assert declared_deviations(["x"], "fp32") == ["x"]
    assert declared_deviations(["x"], "amp") == ["x", AMP_DEVIATION]
    assert declared_deviations(None, "amp") == [AMP_DEVIATION]


def test_models_json_shows_each_tier_precision():
    rows = {r["name"]: {t["tier"]: t for t in r["tier_details"]} for r in model_rows()}
    assert {t["precision"] for tiers in rows.values() for t in tiers.values()} == {"fp32"}
    # the full tiers of the torchvision detectors no longer list AMP: they run fp32, as the reference
    assert not [d for d in rows["faster_rcnn"]["full"]["deviations"] if "AMP" in d or "autocast" in d]
