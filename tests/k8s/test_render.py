"""``replicate k8s render``: the RayJob of a suite, valid against the KubeRay CRD, built from the
composed config (worker groups = the suite's hardware profiles); bad input exits 2 naming the key."""

from __future__ import annotations

import shlex

import pytest
import yaml

from replicate.cli import main

TPU_SUITE = "suite.entries=[{model:yolov3,tier:smoke,hardware:tpu_v4_8,seeds:[0]}]"


def _render(capsys, *args: str) -> dict:
    assert main(["k8s", "render", *args]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_nightly_rayjob_validates_and_has_one_group_per_profile(capsys, crd_validator, chart):
    job = _render(capsys, "suite=nightly", "--name=zoo-nightly-1", "-n", "lab")
    crd_validator(job)
    spec = job["spec"]
    assert job["metadata"]["namespace"] == "lab" and job["metadata"]["labels"]["zoo-replicate/suite"] == "nightly"
    assert shlex.split(spec["entrypoint"])[:5] == ["replicate", "suite", "suite=nightly", "scheduler=kuberay",
                                                   "results_dir=/results"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] > 0 and spec["preRunningDeadlineSeconds"] > 0
    assert spec["ttlSecondsAfterFinished"] >= 0
    groups = {g["groupName"]: g for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    assert sorted(groups) == ["cpu", "h100x1"]  # conf/suite/nightly.yaml's hardware
    gpu = groups["h100x1"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    # Only the head with the autoscaler sidecar gets an API token (it scales the RayCluster).
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"] == {"mode": "token"}   # the cluster's token, as Ray 2.60 uses locally
    assert cluster["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert all(g["template"]["spec"]["automountServiceAccountToken"] is False for g in groups.values())
    assert spec["submitterPodTemplate"]["spec"]["automountServiceAccountToken"] is False
    for _, container in chart.containers(job):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["runAsNonRoot"] is True


def test_render_heads_the_manifest_with_the_plan(capsys, crd_validator):
    assert main(["k8s", "render", "suite=nightly"]) == 0
    out = capsys.readouterr().out
    head = [line for line in out.splitlines() if line.startswith("#")]
    assert head[0].startswith("# plan of suite nightly-") and any("against the paper" in line for line in head)
    assert sum(" eval on h100x1" in line for line in head) == 6   # the six detectors (tests/test_plan.py)
    crd_validator(yaml.safe_load(out))   # the comments leave the manifest as it was


def test_tpu_suite_gets_a_tpu_worker_group(capsys, crd_validator):
    job = _render(capsys, "suite=smoke", TPU_SUITE, "--set", "workerGroups.tpu_v4_8.enabled=true")
    crd_validator(job)
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["groupName"] == "tpu-v4-8" and group["numOfHosts"] == 1
    # What the TPU job asks for beyond the chips (replicate/scheduling/resources.py), advertised.
    assert group["rayStartParams"]["resources"] == """'{"TPU":4,"accelerator_type:TPU-V4":1}'"""
    assert group["template"]["spec"]["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x2x1"
    assert TPU_SUITE in shlex.split(job["spec"]["entrypoint"])  # passed on to `replicate suite`


def test_values_file_and_set_reach_the_manifest(capsys, tmp_path, crd_validator):
    values = tmp_path / "lab.yaml"
    values.write_text("image: {repository: registry.lab/zoo, tag: abc}\n"
                      "store: {existingSecret: {name: zoo-db, key: url}}\n")
    job = _render(capsys, "suite=smoke", f"--values={values}", "--set", "rayJob.backoffLimit=2")
    crd_validator(job)
    assert job["spec"]["backoffLimit"] == 2
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "registry.lab/zoo:abc"
    assert "store=postgres" in shlex.split(job["spec"]["entrypoint"])


@pytest.mark.parametrize("args, key", [
    (["suite=bogus"], "suite"),
    (["hardware=bogus"], "hardware"),
    (["suite=smoke", "suite.entries=[{model:yolov3,tier:smoke,hardware:tpu_v9}]"], "suite.entries[0].hardware"),
    (["suite=smoke", "--set", "rayJob.backofLimit=1"], "rayJob"),
    (["suite=nightly", "--set", "workerGroups.h100x1=null"], "workerGroups.h100x1"),
    # A disabled group is refused, not silently added; min > max cannot be scaled.
    (["suite=smoke", TPU_SUITE], "workerGroups.tpu_v4_8.enabled"),
    (["suite=nightly", "--set", "workerGroups.cpu.minReplicas=3"], "workerGroups.cpu.minReplicas"),
    (["suite=smoke", "scheduler=local"], "scheduler"),
    (["suite=smoke", "--values=/nonexistent/values.yaml"], "/nonexistent/values.yaml"),
    (["suite=smoke", "--name=Not_A_Label"], "--name"),
    (["suite=smoke", "--set", "storage.datasets.accessModes=[ReadWriteOnce]"], "storage.datasets.accessModes"),
    (["suite=smoke", "--set", "storage.singleNode=maybe"], "storage.singleNode"),
    (["suite=smoke", "--set", "rayJob.authMode=basic"], "rayJob.authMode"),
])
def test_bad_input_exits_2_naming_the_key(capsys, args, key):
    assert main(["k8s", "render", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {key}") and len(err.splitlines()) == 1, err


def test_token_auth_can_be_turned_off_for_an_older_operator(capsys, crd_validator):
    job = _render(capsys, "suite=smoke", "--set", "rayJob.authMode=disabled")
    crd_validator(job)
    assert job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "disabled"}
