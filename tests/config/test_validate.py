"""Malformed configuration: exit code 2 and one line naming the key, never a traceback."""

from __future__ import annotations

import pytest

from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.config.selection import chosen_framework
from replicate.errors import ConfigError
from replicate.zoo.registry import frameworks_of, registered_names

BAD = {
    "unknown model": (["model=resnet9000"], "model: unknown 'resnet9000'; allowed:"),
    "unknown hardware": (["hardware=gpu9000"], "hardware: unknown 'gpu9000'; allowed:"),
    "tolerance above 0.5": (["model.claims.0.tolerance=0.7"], "model.claims[0].tolerance: 0.7 is outside (0, 0.5]"),
    "tolerance zero": (["model.claims.1.tolerance=0"], "model.claims[1].tolerance: 0.0 is outside (0, 0.5]"),
    "claim value missing": (["model.claims.0.value=???"], "model.claims[0].value: required value is missing"),
    "claim source empty": (["model.claims.0.source=''"], "model.claims[0].source: required"),
    "claim value not a number": (["model.claims.0.value=high"], "model.claims.0.value: Value 'high'"),
    "TPU for a torch-only model": (["hardware=tpu_v4_8"],
                                   "hardware: 'tpu_v4_8' is a TPU profile but model 'faster_rcnn'"),
    "tier the model lacks": (["model=pix2pix", "tier=eval"], "tier: model 'pix2pix' defines no tier 'eval'; allowed:"),
    "framework the model lacks": (["framework=tensorflow"], "framework: 'tensorflow' is not allowed; allowed: torch"),
    "unknown optimizer": (["model.tiers.smoke.recipe.optimizer=rmsprop"],
                          "model.tiers.smoke.recipe.optimizer: 'rmsprop'"),
    "negative seed": (["seed=-3"], "seed: -3 must be >= 0"),
    "misspelt key": (["model.tiers.smoke.recipe.stepz=3"], "model.tiers.smoke.recipe.stepz"),
    "not KEY=VALUE": (["faster_rcnn"], "faster_rcnn: overrides are KEY=VALUE"),
    "unknown dataset": (["model.tiers.smoke.data=imagenet"], "model.tiers.smoke.data: 'imagenet' is not allowed"),
    "suite names unknown model": (["suite.entries.0.model=nope"], "suite.entries[0].model: 'nope' is not allowed"),
    "early check fraction": (["tier.early_check.fraction=1.5"], "tier.early_check.fraction: 1.5 is outside (0, 1)"),
    "no primary claim": (["model.claims.0.primary=false"], "model.claims: one claim must be primary"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_config_exits_2_with_one_line_naming_the_key(name, capsys):
    overrides, expected = BAD[name]
    code = main(["run", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert expected in err, err


def test_every_model_config_is_valid_at_every_tier_it_defines():
    for model in group_options("model"):
        cfg = compose_config([f"model={model}"] + (["tier.compare_with=none"]))
        for tier in cfg.model.tiers:
            compose_config([f"model={model}", f"tier={tier}", "tier.compare_with=none"])


def test_tpu_profile_selects_tensorflow_for_a_model_that_has_it():
    cfg = compose_config(["model=yolov3", "hardware=tpu_v4_8", "tier.compare_with=none"])
    assert chosen_framework(cfg) == "tensorflow"
    assert cfg.hardware.ray.resources["TPU"] == 4


def test_every_hardware_profile_composes():
    for hw in group_options("hardware"):
        cfg = compose_config(["model=yolov3", f"hardware={hw}", "tier.compare_with=none"])
        assert cfg.hardware.count >= 1 and cfg.hardware.price_source


@pytest.mark.parametrize("suite", group_options("suite"))
def test_every_suite_plans_into_valid_jobs_with_stable_ids(suite):
    from replicate.plan import plan_suite

    # planned for the cluster (scheduler=kuberay): nightly's eval entry reads weights from its volume
    overrides = [f"suite={suite}", "suite_id=fixed", "scheduler=kuberay", "results_dir=/results"]
    root = compose_config(overrides)
    suite_id, jobs = plan_suite(root, overrides)
    assert suite_id == "fixed" and jobs
    assert sum(len(e.seeds) for e in root.suite.entries) == len(jobs)
    assert len({j.spec.job_id for j in jobs}) == len(jobs)
    _, again = plan_suite(root, overrides)
    assert [j.spec.job_id for j in again] == [j.spec.job_id for j in jobs]
    assert all(j.problem is None for j in jobs), [j.problem for j in jobs if j.problem]


@pytest.mark.parametrize("model", registered_names())
def test_config_frameworks_agree_with_the_registered_task(model):
    # a framework the config lists but the task lacks fails only at run time; one the task has
    # but the config omits can never be chosen
    cfg = compose_config([f"model={model}", "tier.compare_with=none"])
    assert tuple(cfg.model.frameworks) == frameworks_of(model)


@pytest.fixture
def no_tensorflow(monkeypatch):
    """TensorFlow looked up by validation as absent (TF itself stays installed for other tests)."""
    from replicate.config import validate as validate_module

    real = validate_module.find_spec
    monkeypatch.setattr(validate_module, "find_spec",
                        lambda name, *args: None if name == "tensorflow" else real(name, *args))


@pytest.mark.parametrize("selection", [["framework=tensorflow"], ["hardware=tpu_v4_8"]])
def test_a_tensorflow_job_without_tensorflow_is_refused_before_scheduling(no_tensorflow, selection, capsys):
    with pytest.raises(ConfigError, match=r"^framework: tensorflow is not installed; .*\[tensorflow\]"):
        compose_config(["model=yolov3", "tier.compare_with=none", *selection])
    assert main(["run", "model=yolov3", "tier.compare_with=none", *selection]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "framework: tensorflow is not installed" in err, err


def test_without_tensorflow_torch_jobs_and_cluster_workers_are_not_refused(no_tensorflow):
    compose_config(["model=yolov3", "tier.compare_with=none"])   # torch, the model's first framework
    # a Ray address: jobs run on the cluster's workers, whose image may carry TensorFlow
    cfg = compose_config(["model=yolov3", "framework=tensorflow", "scheduler=kuberay", "results_dir=/results",
                          "tier.compare_with=none"])
    assert chosen_framework(cfg) == "tensorflow"


def test_without_tensorflow_a_tpu_profile_for_a_torch_only_model_still_names_the_profile(no_tensorflow):
    with pytest.raises(ConfigError, match="'tpu_v4_8' is a TPU profile but model 'faster_rcnn'"):
        compose_config(["model=faster_rcnn", "hardware=tpu_v4_8", "tier.compare_with=none"])


def test_a_claim_on_another_split_than_the_evaluated_one_is_refused():
    # Faster R-CNN's FPN paper number is on minival2014: the eval tier evaluates val2017
    cfg = compose_config(["model=faster_rcnn", "tier=eval"])
    assert cfg.datasets.coco2017.splits.val.published_as == cfg.model.tiers.eval.claim_split == "val2017"
    with pytest.raises(ConfigError) as err:
        compose_config(["model=faster_rcnn", "tier=eval", "model.tiers.eval.claim_split=minival2014"])
    assert err.value.key == "model.tiers.eval.claim_split" and "val2017" in str(err.value)


def test_a_claim_tier_lists_its_deviations_and_they_reach_the_leaderboard():
    from replicate.leaderboard import target_columns
    from replicate.verdict import target_for

    cfg = compose_config(["model=centernet", "tier=full"])
    target = target_for(cfg, "full")
    assert target.kind == "claim" and list(target.deviations) == list(cfg.model.tiers.full.deviations)
    assert any("Pillow" in d for d in target.deviations)
    row = target_columns({"compared_with": target.to_dict(), "metric_name": target.metric, "mean": 20.0})
    assert row["deviations"] == target.deviations
    # a faithful tier says so ([]); a claim tier nobody has compared is refused
    assert compose_config(["model=faster_rcnn", "tier=eval"]).model.tiers.eval.deviations == []
    with pytest.raises(ConfigError) as err:
        compose_config(["model=faster_rcnn", "tier=full", "model.tiers.full.deviations=null"])
    assert err.value.key == "model.tiers.full.deviations"
    with pytest.raises(ConfigError) as err:
        compose_config(["model=faster_rcnn", "tier=eval", "model.tiers.eval.eval_batch_size=0"])
    assert err.value.key == "model.tiers.eval.eval_batch_size"


def test_models_json_shows_each_tier_with_what_it_is_compared_with():
    from replicate.catalog import model_rows

    rows = {r["name"]: {t["tier"]: t for t in r["tier_details"]} for r in model_rows()}
    eval_tier = rows["faster_rcnn"]["eval"]
    assert eval_tier["compared_with"]["kind"] == "claim" and eval_tier["compared_with"]["value"] == 37.0
    assert eval_tier["evaluated_split"] == eval_tier["compared_with"]["split"] == "val2017"
    assert eval_tier["deviations"] == []
    # the papers report test-dev only: a named third party's val2017 measurement, at its resolution
    yolo = rows["yolov3"]["eval"]["compared_with"]
    assert (yolo["metric"], yolo["value"], yolo["split"]) == ("bbox_AP50", 67.7, "val2017")
    assert "open_model_zoo" in yolo["source"] and rows["yolov3"]["eval"]["test"]["protocol"] == "omz_accuracy_checker"
    assert rows["centernet"]["eval"]["released"]["file"] == "ctdet_coco_resdcn18.pth"
    assert rows["centernet"]["full"]["backbone_weights"]["sha256_prefix"] == "5c106cde"
    for name, tiers in rows.items():   # every model meets at least one published number
        assert any(t["compared_with"] and t["compared_with"]["kind"] == "claim" and t["deviations"] is not None
                   for t in tiers.values()), name
    assert rows["centernet"]["smoke"]["compared_with"]["kind"] == "reference"


def test_a_claim_tier_at_another_resolution_than_its_claim_is_refused():
    with pytest.raises(ConfigError) as err:
        compose_config(["model=yolov3", "tier=eval", "model.tiers.eval.input_size=608"])
    assert err.value.key == "model.tiers.eval.input_size" and "416" in str(err.value)


def test_an_unknown_claim_kind_is_refused():
    with pytest.raises(ConfigError) as err:
        compose_config(["model=yolov3", "model.claims.3.kind=blog"])
    assert err.value.key == "model.claims[3].kind"


@pytest.mark.parametrize("model", ["centernet", "faster_rcnn", "mask_rcnn", "pix2pix", "retinanet", "yolov3", "yolov4"])
def test_every_model_has_a_short_tier_on_its_full_recipe(model):
    """The short tier: the first 25% of the full recipe, judged against the lab's promoted runs of
    that recipe (the same recipe key as full), MEASURED until one is promoted."""
    from replicate.reference_runs import recipe_of
    from replicate.resolved import resolve_job

    short = resolve_job(compose_config([f"model={model}", "tier=short"]), None)
    full = resolve_job(compose_config([f"model={model}", "tier=full"]), None)
    assert short.cfg.tier.schedule_fraction == 0.25 and short.target.kind == "reference_curve"
    assert short.target.value is None and recipe_of(short.spec.config) == recipe_of(full.spec.config)
