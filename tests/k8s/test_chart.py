"""The Helm chart, rendered by Helm's Go engine, and the RayJob its CronJob's pod writes (one
author: replicate.k8s.manifest): lint clean (strict), every object valid against the Kubernetes
1.37 schemas or the KubeRay CRDs (unknown fields rejected), pod security "restricted" on every
container, no secret value anywhere."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.k8s.values import load_values, merge

FAKE_KEY = "fake-wandb-key-0f6d1c2e9b"      # must never appear in anything rendered
FAKE_URL = "postgresql+psycopg://zoo:fake-pw-77a1@db/zoo"

TPU_GROUP = {"workerGroups": {"tpu_v4_8": {"enabled": True}, "h100x1": {"enabled": False}}}
SCENARIOS = {
    "default": {},
    "tpu": TPU_GROUP,
    "postgres": {"store": {"existingSecret": {"name": "zoo-store", "key": "url"}}},
    "wandb": {"wandb": {"enabled": True, "entity": "lab", "apiKeySecret": {"name": "wandb", "key": "api-key"}}},
    "existing-claims": {"storage": {"datasets": {"existingClaim": "coco"}, "results": {"existingClaim": "res"}}},
    "single-node": {"storage": {"singleNode": True, **{
        volume: {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo"}
        for volume in ("datasets", "checkpoints", "results")}}},
}


@pytest.fixture(params=sorted(SCENARIOS), scope="module")
def scenario(request):
    return request.param, SCENARIOS[request.param]


def test_lint_is_clean_in_strict_mode(chart, scenario):
    _, values = scenario
    report = chart.lint(values)
    assert report["errors"] == [] and report["messages"] == [], report


def test_every_object_validates_against_its_schema(chart, crd_validator, scenario):
    name, values = scenario
    objects, notes = chart.render(values)
    for obj in objects:
        chart.k8s_validate(obj)
    crd_validator(chart.rayjob(values))
    # The RayJob has one author, the CronJob's `replicate k8s submit`: the chart renders none.
    kinds = sorted(o["kind"] for o in objects)
    assert "CronJob" in kinds and not any(k.startswith("Ray") for k in kinds), kinds
    assert "KubeRay" in notes


def test_no_container_runs_as_root_or_escalates_and_all_are_bounded(chart, scenario):
    objects, _ = chart.render(scenario[1])
    checked = 0
    for obj in [*objects, chart.rayjob(scenario[1])]:
        for pod_ctx, container in chart.containers(obj):
            ctx = container["securityContext"]
            where = f"{obj['kind']}/{container['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, where
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx.get("seccompProfile", pod_ctx.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
            res = container["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"]), where
            checked += 1
    assert checked >= 1


def test_writable_paths_are_volumes_and_datasets_are_read_only(chart):
    for pod in chart.pod_specs(chart.rayjob()):
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert {"/tmp", "/home/zoo"} <= set(mounts), container["name"]
            if "/data" in mounts:
                assert mounts["/data"]["readOnly"] is True
                claim = next(v for v in pod["volumes"] if v["name"] == "datasets")
                assert claim["persistentVolumeClaim"]["readOnly"] is True


def test_no_rendered_object_contains_a_secret_value(chart, crd_validator, monkeypatch, tmp_path, capsys):
    """Both paths: the chart itself, and the RayJob the CronJob's pod builds from its ConfigMap."""
    from replicate.cli import main

    # Secrets exist only in the environment (as they would in CI); values name the Secrets.
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ZOO_STORE_URL", FAKE_URL)
    values = merge(SCENARIOS["wandb"], SCENARIOS["postgres"])
    objects, notes = chart.render(values)
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    (tmp_path / "values.yaml").write_text(config_map["data"]["values.yaml"])
    # Exactly what the CronJob's pod runs, with `render` for `submit` and the ConfigMap's file here.
    cron = next(o for o in objects if o["kind"] == "CronJob")
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    args = [a.replace("/etc/zoo-replicate", str(tmp_path)) for a in args]
    assert args[:2] == ["k8s", "submit"]
    assert main(["k8s", "render", *args[2:]]) == 0
    rayjob_text = capsys.readouterr().out
    crd_validator(yaml.safe_load(rayjob_text))
    for text in (yaml.safe_dump_all(objects) + notes, rayjob_text):
        assert FAKE_KEY not in text and "fake-pw" not in text
    assert "secretKeyRef" in rayjob_text and "WANDB_API_KEY" in rayjob_text and "ZOO_STORE_URL" in rayjob_text
    ray = yaml.safe_load(rayjob_text)
    head_env = ray["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ZOO_STORE_URL", "valueFrom": {"secretKeyRef": {"name": "zoo-store", "key": "url"}}} in head_env


@pytest.mark.parametrize("values", [{"wandb": {"apiKey": FAKE_KEY}}, {"store": {"url": FAKE_URL}}],
                         ids=["wandb.apiKey", "store.url"])
def test_values_have_no_field_for_a_secret(chart, values):
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="additional properties|not allowed|additionalProperties"):
        chart.render(values)


def test_misspelt_value_fails_the_schema(chart):
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="backofLimit"):
        chart.render({"rayJob": {"backofLimit": 2}})
    with pytest.raises(helm.HelmError, match="numOfHost"):
        chart.render({"workerGroups": {"cpu": {"numOfHost": 2}}})


def test_misspelt_key_in_a_rayjob_fails_the_crd_schema(chart, crd_validator):
    ray = chart.rayjob()
    crd_validator(ray)
    group = ray["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["numOfHost"] = group.pop("numOfHosts")
    with pytest.raises(AssertionError, match="numOfHost"):
        crd_validator(ray)


def test_rbac_allows_only_rayjobs_in_the_namespace(chart):
    objects, _ = chart.render()
    kinds = {o["kind"] for o in objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]
    cron = next(o for o in objects if o["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["timeZone"] == "Etc/UTC" and cron["spec"]["suspend"] is False
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["k8s", "submit"] and "suite=nightly" in args


def test_tpu_group_carries_gke_selectors_tolerations_and_chips(chart):
    spec = chart.rayjob(TPU_GROUP)["spec"]
    group = next(g for g in spec["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "tpu-v4-8")
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v4-podslice",
                                   "cloud.google.com/gke-tpu-topology": "2x2x1"}
    assert pod["containers"][0]["resources"]["limits"]["google.com/tpu"] == 4
    assert {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert group["numOfHosts"] == 1


@pytest.mark.parametrize("profile", group_options("hardware"))
def test_every_hardware_profile_maps_to_a_worker_group(profile):
    """values.workerGroups[NAME] carries conf/hardware/NAME.yaml's accelerator, Ray resources, selector."""
    hw = compose_config(["model=yolov3", f"hardware={profile}"]).hardware  # yolov3 also runs on TPU
    group = load_values()["workerGroups"][profile]
    assert group["accelerator"] == hw.accelerator
    assert group["nodeSelector"] == dict(hw.node_selector)
    # CPUs and what a job asks for as the autoscaler sees it: tests/k8s/test_worker_groups.py.
    assert (group.get("acceleratorType") or None) == hw.ray.accelerator_type
    params = group["rayStartParams"]
    limits = group["resources"]["limits"]
    if hw.accelerator == "gpu":
        assert float(params["num-gpus"]) == hw.ray.num_gpus == limits["nvidia.com/gpu"]
    if hw.accelerator == "tpu":
        # Parsed as KubeRay parses it (common/pod.go getResourcesMap): trim quotes, then JSON.
        assert json.loads(params["resources"].strip("'\"` ")) == dict(hw.ray.resources)
        assert "google.com/tpu" in limits and "cloud.google.com/gke-tpu-topology" in group["nodeSelector"]
    if hw.accelerator == "cpu":
        assert not {"nvidia.com/gpu", "google.com/tpu"} & set(limits)


def test_only_the_head_gets_the_store_url_and_the_wandb_key(chart):
    """The driver (on the head) alone writes the store and logs to W&B; workers get neither."""
    cluster = chart.rayjob(merge(SCENARIOS["wandb"], SCENARIOS["postgres"]))["spec"]["rayClusterSpec"]
    head = {e["name"] for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"WANDB_API_KEY", "ZOO_STORE_URL"} <= head
    assert cluster["workerGroupSpecs"]
    for group in cluster["workerGroupSpecs"]:
        env = {e["name"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert not {"WANDB_API_KEY", "ZOO_STORE_URL"} & env, group["groupName"]


def test_wandb_project_and_entity_stay_one_argument_each(chart):
    """The entrypoint is a shell command line: a space or a quote must not split a value."""
    wandb = {"wandb": {"enabled": True, "project": "zoo nightly", "entity": "o'brien lab"},
             "suiteOverrides": ["seed=1"]}
    args = shlex.split(chart.rayjob(wandb)["spec"]["entrypoint"])
    assert "logger.project=zoo nightly" in args and "logger.entity=o'brien lab" in args, args
    assert args[-1] == "seed=1", args


def test_a_read_write_once_volume_needs_single_node_and_then_workers_join_the_heads_node(chart):
    """GKE's default class and most on-prem ones cannot give ReadWriteMany: such a lab picks its
    class and mode per volume. ReadWriteOnce attaches to one node, so it is refused by Helm's own
    schema check unless singleNode, which holds every worker to the head's node."""
    import helm_python as helm

    rwo = {"checkpoints": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo"}}
    with pytest.raises(helm.HelmError, match="accessModes"):
        chart.render({"storage": rwo})
    objects, _ = chart.render({"storage": {"singleNode": True, **rwo}})
    claims = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert claims["zoo-checkpoints"]["accessModes"] == ["ReadWriteOnce"]
    assert claims["zoo-checkpoints"]["storageClassName"] == "standard-rwo"
    assert claims["zoo-results"]["accessModes"] == ["ReadWriteMany"] and "storageClassName" not in claims["zoo-results"]
    # datasets are only read: ReadOnlyMany serves several nodes
    chart.render({"storage": {"datasets": {"accessModes": ["ReadOnlyMany"]}}})
    job = chart.rayjob({"storage": {"singleNode": True, **rwo}})
    cluster = job["spec"]["rayClusterSpec"]
    assert "affinity" not in cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster["workerGroupSpecs"]:
        (term,) = group["template"]["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    default = chart.rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert all("affinity" not in group["template"]["spec"] for group in default)
