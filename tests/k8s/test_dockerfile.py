"""The Dockerfile, checked without a Docker engine: its dependency list is the project's pins,
it runs as the non-root UID the chart expects, bakes in no secret, and `replicate` is the entrypoint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from replicate.k8s.manifest import UID

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_runs_as_the_charts_non_root_user_with_replicate_as_entrypoint():
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.M)
    assert users == [f"{UID}:{UID}"]
    assert re.search(r'^ENTRYPOINT \["replicate"\]', DOCKERFILE, flags=re.M)
    assert "useradd --uid 1000" in DOCKERFILE


def test_no_secret_is_baked_in():
    for line in re.findall(r"^(?:ENV|ARG)\s+.*$", DOCKERFILE, flags=re.M):
        assert not re.search(r"(KEY|TOKEN|PASSWORD|SECRET|STORE_URL)\b", line, flags=re.I), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "results", ".git"} <= set(ignored)


def test_cpu_variant_and_pinned_requirements(tmp_path):
    assert "ARG TORCH_VARIANT=cuda" in DOCKERFILE and "download.pytorch.org/whl/cpu" in DOCKERFILE
    script = re.search(r"<<'PY' > /tmp/requirements.txt\n(.*?)\nPY\n", DOCKERFILE, flags=re.S).group(1)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={"EXTRAS": "tensorflow"}).stdout.split()
    assert out and all("==" in req for req in out), out
    assert any(r.startswith("ray[default,train]==") for r in out) and any(r.startswith("torch==") for r in out)
    assert any(r.startswith("tensorflow") for r in out)


def test_the_image_records_its_git_commit(monkeypatch, tmp_path):
    """.git is not in the build context: the commit arrives as a build arg, then as env."""
    lines = DOCKERFILE.splitlines()
    arg, env = lines.index('ARG GIT_COMMIT=""'), lines.index("ENV ZOO_GIT_COMMIT=$GIT_COMMIT")
    last_run = max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    assert last_run < arg < env  # a new commit rebuilds no earlier layer
    assert "--build-arg GIT_COMMIT=$(git rev-parse HEAD)" in DOCKERFILE
    from replicate.runner import environment

    # As in the image: no git to run (the slim base has none) -> the build's commit.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("ZOO_GIT_COMMIT", "0123abc")
    env_ = environment.fingerprint(config_hash="c", dataset_hash=None, device="cpu")
    assert env_["git_commit"] == "0123abc" and env_["git_dirty"] is None
    # With git and a checkout, git's answer wins over the variable.
    monkeypatch.setattr(environment, "git_output", lambda *args: "f00d" if args[0] == "rev-parse" else "")
    assert environment.fingerprint(config_hash="c", dataset_hash=None, device="cpu")["git_commit"] == "f00d"


def test_a_login_shell_finds_ray_and_replicate(tmp_path):
    """KubeRay < 1.4 (or ENABLE_LOGIN_SHELL=true) runs `bash -lc "ray start ..."`: /etc/profile
    resets PATH, so the image's profile.d script must put the venv back. Run here as the image
    would: the script from the Dockerfile (venv path made this one's), after a PATH without it."""
    line = re.search(r"^RUN printf '(.*)\\n' > /etc/profile\.d/zoo-replicate\.sh$", DOCKERFILE, flags=re.M)
    assert line, "the Dockerfile writes /etc/profile.d/zoo-replicate.sh"
    venv_bin = str(Path(sys.executable).parent)
    script = tmp_path / "zoo-replicate.sh"
    script.write_text(line.group(1).replace("/opt/venv/bin", venv_bin) + "\n")
    found = subprocess.run(["bash", "-c", f"export PATH=/usr/bin:/bin; . {script}; command -v ray replicate"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert found == [f"{venv_bin}/ray", f"{venv_bin}/replicate"]


def test_the_lab_zoo_is_installed_beside_the_harness():
    """The image's models are the zoo in models/, installed as its own distribution (its entry
    point is how the harness finds them), and the build context keeps it."""
    install = next(line for line in DOCKERFILE.splitlines() if "pip install" in line and "-e /app" in line)
    assert "-e /app/models" in install
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not any(entry.strip("/") in ("models", "models/zoo_models", "**/*.yaml", "*.pt", "**/*.pt")
                   for entry in ignored)
