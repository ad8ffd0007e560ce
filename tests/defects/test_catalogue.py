"""The defect catalogue: coverage of models, stages and types; selection by config (defect=NAME)
with unknown and inapplicable names refused (exit 2 naming ``defect``); the hash and job id."""

from __future__ import annotations

import pytest

from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.defects import STAGES, TYPES, Target, all_defects, check_defect, defect_of
from replicate.defects.registry import get_defect
from replicate.errors import ConfigError
from replicate.resolved import config_hash, make_spec

CATALOGUE = all_defects()
NAMES = [d.name for d in CATALOGUE]


def implementations() -> set[Target]:
    """Every (model, framework) the configs define."""
    found = set()
    for model in group_options("model"):
        cfg = compose_config([f"model={model}"])
        found |= {Target(model, framework) for framework in cfg.model.frameworks}
    return found


def test_at_least_16_defects_cover_every_model_stage_and_type():
    assert len(CATALOGUE) >= 16
    selftested = {d.targets[0].model for d in CATALOGUE}   # where `replicate selftest` injects each
    assert selftested == set(group_options("model")), "every model gets a defect in the selftest"
    assert {d.stage for d in CATALOGUE} == set(STAGES)
    assert {d.type for d in CATALOGUE} == set(TYPES)
    # yolov3 runs in two frameworks: the TensorFlow build has defects of its own too
    assert Target("yolov3", "tensorflow") in {d.targets[0] for d in CATALOGUE}


def test_every_defect_says_what_went_wrong_and_targets_real_implementations():
    known = implementations()
    # A recipe defect of every implementation covers what the registry has (configs agree with it),
    # its leader first
    assert set(get_defect("lr_10x").targets) == known
    assert get_defect("lr_10x").targets[0] == Target("yolov4")
    for defect in CATALOGUE:
        assert len(defect.why) > 60, f"{defect.name}: the docstring says what a reengineer got wrong"
        assert defect.description and "\n" not in defect.description
        assert set(defect.targets) <= known, defect.name
        assert len(set(defect.targets)) == len(defect.targets), defect.name


def test_no_defect_by_default_and_a_chosen_one_is_recorded():
    clean = compose_config(["model=yolov4"])
    assert clean.defect is None
    spec = make_spec(compose_config(["model=yolov4", "defect=lr_10x"]), "selftest-x")
    assert spec.config["defect"] == "lr_10x" and defect_of({"config": spec.config}) == "lr_10x"
    assert "lr_10x" in spec.job_id   # the job's id says it is injected
    assert defect_of({"config": make_spec(clean, None).config}) is None


def test_the_defect_is_part_of_the_config_hash():
    clean = compose_config(["model=yolov4"])
    hashes = {config_hash(compose_config(["model=yolov4", f"defect={name}"]))
              for name in ("lr_10x", "shuffled_labels", "anchor_wh_swapped_in_decoding")}
    assert len(hashes) == 3 and config_hash(clean) not in hashes
    # no defect hashes as the key's absence: clean jobs keep the hashes they had before the key
    assert config_hash(clean) == config_hash(compose_config(["model=yolov4", "defect=null"]))


def test_an_unknown_defect_is_a_config_error_naming_defect():
    with pytest.raises(ConfigError) as info:
        compose_config(["model=yolov4", "defect=no_such_defect"])
    assert info.value.key == "defect" and "lr_10x" in str(info.value)


@pytest.mark.parametrize("model, framework, defect", [
    ("yolov4", "torch", "cls_prior_init_missing"),           # a RetinaNet defect
    ("pix2pix", "torch", "sgd_momentum_zero"),               # pix2pix trains with Adam
    ("yolov3", "tensorflow", "bn_train_mode_at_inference"),  # the torch implementation's defect
])
def test_a_defect_that_does_not_apply_is_a_config_error_naming_defect(model, framework, defect):
    with pytest.raises(ConfigError) as info:
        check_defect(defect, model, framework)
    assert info.value.key == "defect" and "does not apply" in str(info.value)
    if framework == "torch":   # composing the job refuses it the same way (a TF job also needs TF)
        with pytest.raises(ConfigError, match="defect"):
            compose_config([f"model={model}", f"defect={defect}"])


def test_cli_refuses_an_inapplicable_defect_with_exit_2_and_one_line(capsys):
    from replicate.cli import main

    assert main(["run", "model=yolov4", "defect=cls_prior_init_missing", "logger=none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: defect:")
