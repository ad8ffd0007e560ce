"""Overrides parsed once with Hydra's grammar: keys, values, removal, bad input."""

from __future__ import annotations

import pytest

from replicate.config.compose import compose_config
from replicate.config.overrides import Overrides
from replicate.errors import ConfigError


def test_keys_and_values_follow_hydra_grammar():
    parsed = Overrides.parse(["model=yolov3", "+model.tiers.smoke.recipe.extra.x=1", "note='a=b'",
                              "model.tiers.smoke.recipe.milestones=[300,400]", "~checkpoint", "data@x=y"])
    assert parsed.keys() == {"model", "model.tiers.smoke.recipe.extra.x", "note",
                             "model.tiers.smoke.recipe.milestones", "checkpoint", "data"}
    assert parsed.value("model") == "yolov3"
    assert parsed.value("note") == "a=b"          # a quoted value holding '=' is one value
    assert parsed.value("model.tiers.smoke.recipe.milestones") == "[300,400]"
    assert parsed.value("checkpoint") is None and parsed.value("absent") is None
    assert Overrides.parse(["defect=a,b", "seed=3"]).value("defect") == "a,b"   # a sweep, as typed
    assert Overrides.parse(["seed=3"]).value("seed") == "3"


def test_the_last_override_of_a_key_wins_and_without_removes_every_one():
    parsed = Overrides.parse(["seed=1", "tier=smoke", "seed=2"])
    assert parsed.value("seed") == "2"
    assert parsed.without("seed").as_list() == ["tier=smoke"]
    assert parsed.plus("seed=3").value("seed") == "3" and len(parsed.plus("seed=3")) == 4
    assert Overrides.parse(parsed) is parsed


@pytest.mark.parametrize("bad, message", [("novalue", "overrides are KEY=VALUE"),
                                          ("a=[1,", "not a valid override")])
def test_a_malformed_override_is_a_config_error_naming_it(bad, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Overrides.parse(["model=yolov3", bad])
    # the key alone (a KEY=VALUE's value is shown repr-escaped in the message, never as the key)
    assert raised.value.key == bad.split("=", 1)[0]


def test_a_mapping_fills_an_optional_typed_section_that_is_null():
    cfg = compose_config(["model=pix2pix", "model.tiers.smoke.segmenter={file: fcn.pth, source: lab}"])
    assert cfg.model.tiers.smoke.segmenter.file == "fcn.pth"
    assert cfg.model.tiers.smoke.segmenter.sha256_prefix is None           # the schema's default
    with pytest.raises(ConfigError) as err:                                 # a misspelt key is named
        compose_config(["model=pix2pix", "model.tiers.smoke.segmenter={fil: fcn.pth, source: lab}"])
    assert err.value.key == "model.tiers.smoke.segmenter" and "fil" in str(err.value)
