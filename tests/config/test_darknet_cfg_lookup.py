"""A Darknet cfg the config names but nobody has is the config's error: exit 2 at validation, one
line naming the key, before anything is scheduled; never a model ERROR at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.errors import ConfigError
from zoo_models.darknet.cfg_parser import CFG_DIR_ENV, PACKAGED_CFG_DIR


@pytest.mark.parametrize("override, key", [
    ("model.variants.tiny.arch.cfg=nope.cfg", "model.variants.tiny.arch.cfg"),
    # the smoke tier runs the tiny variant: a broken full variant is refused all the same
    ("model.variants.full.arch.cfg=/nowhere/yolov3.cfg", "model.variants.full.arch.cfg"),
])
@pytest.mark.parametrize("model", ["yolov3", "yolov4"])
def test_a_cfg_found_nowhere_exits_2_naming_the_key_before_scheduling(model, override, key, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv(CFG_DIR_ENV, str(tmp_path / "lab"))
    results = tmp_path / "results"
    code = main(["run", f"model={model}", override, f"results_dir={results}", "scheduler=inline"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {key}: darknet cfg") and "not found" in err, err
    assert not results.exists()  # nothing was planned, scheduled or written


def test_the_lab_directory_may_bring_a_cfg_the_package_lacks(tmp_path, monkeypatch):
    (tmp_path / "mine.cfg").write_text((PACKAGED_CFG_DIR / "yolov3-tiny.cfg").read_text())
    with pytest.raises(ConfigError) as err:
        compose_config(["model=yolov3", "model.variants.tiny.arch.cfg=mine.cfg"])
    assert err.value.key == "model.variants.tiny.arch.cfg"
    monkeypatch.setenv(CFG_DIR_ENV, str(tmp_path))
    cfg = compose_config(["model=yolov3", "model.variants.tiny.arch.cfg=mine.cfg"])
    assert cfg.model.variants.tiny.arch.cfg == "mine.cfg"


def test_every_configured_cfg_is_packaged(monkeypatch):
    """Without $ZOO_DARKNET_CFG_DIR (a fresh clone, the image) every Darknet model validates."""
    monkeypatch.delenv(CFG_DIR_ENV, raising=False)
    for model in ("yolov3", "yolov4"):
        cfg = compose_config([f"model={model}"])
        names = {str(v.arch.cfg) for v in cfg.model.variants.values() if v.arch.get("cfg")}
        assert names and all((PACKAGED_CFG_DIR / name).is_file() for name in names), names


def test_the_packaged_cfgs_ship_with_the_package():
    """The zoo's pyproject package data carries them (a wheel, an install) and the image's build context
    does not leave them out (.dockerignore)."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "models" / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "cfg/*.cfg" in data["zoo_models.darknet"]
    ignored = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not any(part in ignored for part in ("models/zoo_models", "models/zoo_models/darknet",
                                                "models/zoo_models/darknet/cfg", "*.cfg", "**/*.cfg"))
