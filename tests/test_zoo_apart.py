"""The zoo apart from the harness: ``replicate/`` names no model and imports no zoo; the project's
models come from ``models/`` through the same entry point a lab's zoo uses; a broken or clashing
zoo is refused in one line."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from replicate.config.conf_tree import group_options
from replicate.errors import ConfigError
from replicate.zoo import installed
from replicate.zoo.registry import implementations, registered_names, zoo_of

ROOT = Path(__file__).resolve().parents[1]


def test_the_harness_imports_no_zoo_and_names_no_model():
    """Every import in replicate/ and every string literal (not docstrings: they may explain with
    an example) is read from the source; none is a zoo's package or a registered model's name."""
    zoo_packages = {z.spec.package for z in installed.installed_zoos()}
    models = set(registered_names())
    assert "zoo_models" in zoo_packages and "yolov4" in models   # what is looked for is there to find
    hits = []
    for path in sorted((ROOT / "replicate").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            hits += [f"{path.relative_to(ROOT)}:{node.lineno}: import {n}" for n in names
                     if n.split(".")[0] in zoo_packages or any(m in n.split(".") for m in models)]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value in models or node.value.split(".")[0] in zoo_packages:
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not hits, "\n".join(hits)


def test_the_projects_models_are_a_zoo_beside_the_harness():
    assert (ROOT / "models" / "pyproject.toml").is_file() and not (ROOT / "replicate" / "models").exists()
    zoo = next(z for z in installed.installed_zoos() if z.spec.package == "zoo_models")
    assert zoo.distribution == "zoo-replicate-models" and zoo.version == "0.1.0"
    assert Path(zoo.spec.config_dir).is_relative_to(ROOT / "models")
    for model, framework in implementations():
        if model != "tiny_fcos":   # the example zoo, where a developer installed it
            assert zoo_of(model, framework) == zoo, (model, framework)
    # every model of the project's zoo has its config in the zoo, none in the harness's conf/
    assert not (ROOT / "conf" / "model").exists()
    assert {p.stem for p in (Path(zoo.spec.config_dir) / "model").glob("*.yaml")} <= set(group_options("model"))


def test_the_cli_lists_each_models_zoo_and_takes_a_zoos_command():
    out = subprocess.run([sys.executable, "-m", "replicate.cli", "models", "--json"], capture_output=True,
                         text=True, check=True).stdout
    assert '"distribution": "zoo-replicate-models"' in out
    darknet = subprocess.run([sys.executable, "-m", "replicate.cli", "darknet", "yolov3-tiny.cfg"],
                             capture_output=True, text=True)
    assert darknet.returncode == 0 and "yolov3-tiny.cfg: input 416x416x3" in darknet.stdout


def _fake_distribution(folder: Path, name: str, entry: str) -> None:
    """A distribution as an installer leaves it (a .dist-info with METADATA and entry_points.txt),
    naming ``entry`` in the zoo group: found by importlib.metadata on sys.path like any other."""
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{installed.ENTRY_POINT_GROUP}]\n{name} = {entry}\n")


@pytest.mark.parametrize("module, entry, says", [
    ("", "missing_zoo_pkg.zoo:ZOO", "does not load: ModuleNotFoundError"),
    ("ZOO = 42\n", "zoo_wrong_kind:ZOO", "is a int, not a replicate.zoo.installed.ZooSpec"),
    ("from pathlib import Path\nfrom replicate.zoo.installed import ZooSpec\n"
     "ZOO = ZooSpec(package='zoo_models', config_dir=Path(__file__).parent)\n", "zoo_no_conf:ZOO",
     "has no model/ folder"),
])
def test_a_broken_zoo_is_refused_in_one_line_naming_its_entry_point(tmp_path, module, entry, says):
    _fake_distribution(tmp_path, "broken-zoo", entry)
    if module:
        (tmp_path / f"{entry.split(':')[0]}.py").write_text(module)
    proc = subprocess.run([sys.executable, "-m", "replicate.cli", "models"], capture_output=True, text=True,
                          env={**_env(), "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "entry point zoo_replicate.zoos:broken-zoo" in lines[0] and says in lines[0], lines


def test_two_zoos_shipping_one_model_name_are_refused(tmp_path):
    """The model a job gets must never depend on which zoo the search path reads first."""
    conf = tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "yolov4.yaml").write_text("name: yolov4\n")
    (tmp_path / "clash_zoo.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from replicate.zoo.installed import ZooSpec
        ZOO = ZooSpec(package="clash_zoo_pkg", config_dir=Path({str(tmp_path / 'conf')!r}))
    """))
    _fake_distribution(tmp_path, "clash-zoo", "clash_zoo:ZOO")
    proc = subprocess.run([sys.executable, "-m", "replicate.cli", "run", "model=yolov4"], capture_output=True,
                          text=True, env={**_env(), "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "model=yolov4: offered twice" in proc.stderr and str(conf / "yolov4.yaml") in proc.stderr


def test_a_zoo_package_claimed_twice_is_refused(monkeypatch):
    spec = installed.ZooSpec(package="zoo_models", config_dir=ROOT / "models" / "zoo_models" / "conf")
    twice = (installed.InstalledZoo("a", "a", "1", spec), installed.InstalledZoo("b", "b", "1", spec))
    assert twice[0].owns_module("zoo_models.yolo") and not twice[0].owns_module("zoo_models_other")
    with pytest.raises(ConfigError, match="claimed by more than one zoo"):
        installed.check_distinct_packages(twice)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
