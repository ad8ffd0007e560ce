"""Worker groups as the KubeRay autoscaler sees them: every hardware profile's jobs fit the group
the chart renders for it (read by Ray's own ``_get_ray_resources_from_group_spec``, both from
replicate.k8s.manifest and from Helm's RayCronJob), Ray never gets more CPUs than the pod may use,
and groups the chart could not run are refused by both renderers, naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.k8s.manifest import worker_group
from replicate.k8s.values import load_values, merge
from replicate.scheduling.resources import ray_options, required_resources

PROFILES = group_options("hardware")

def _quantity(value: Any) -> float:
    from ray.autoscaler._private.kuberay.utils import parse_quantity

    return float(parse_quantity(value))


def _hardware(profile: str) -> Any:
    return compose_config(["model=yolov3", f"hardware={profile}"]).hardware  # yolov3 also runs on TPU


def _group_specs(chart: Any, profile: str) -> dict[str, dict[str, Any]]:
    """The worker group of ``profile`` as each renderer writes it (the group enabled)."""
    enable = {"workerGroups": {profile: {"enabled": True}}}
    python = worker_group(load_values(sets=[f"workerGroups.{profile}.enabled=true"]), "zoo", profile)
    objects, _ = chart.render(merge({"schedule": {"mode": "rayCronJob"}}, enable))
    cluster = next(o for o in objects if o["kind"] == "RayCronJob")["spec"]["jobTemplate"]["rayClusterSpec"]
    helm = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == profile.replace("_", "-"))
    return {"python": python, "helm": helm}


def _offered_and_needed(chart: Any, profile: str) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """(renderer, what the autoscaler thinks one pod offers, what one job of the profile needs)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _get_ray_resources_from_group_spec

    need = required_resources(ray_options(_hardware(profile)))
    return [(name, _get_ray_resources_from_group_spec(spec, is_head=False), need)
            for name, spec in _group_specs(chart, profile).items()]


@pytest.mark.parametrize("profile", PROFILES)
def test_autoscaler_sees_the_accelerator_the_profiles_jobs_ask_for(chart, profile):
    """Without accelerator_type:<TYPE> in rayStartParams a GPU/TPU job is infeasible forever:
    the group starts at 0 replicas and the autoscaler cannot know it would serve the job."""
    for renderer, offered, need in _offered_and_needed(chart, profile):
        for key, amount in need.items():
            if key != "CPU":
                assert offered.get(key, 0) >= amount, (renderer, key, offered)


@pytest.mark.parametrize("profile", PROFILES)
def test_autoscaler_sees_the_cpus_the_profiles_jobs_ask_for(chart, profile):
    for renderer, offered, need in _offered_and_needed(chart, profile):
        assert offered["CPU"] >= need["CPU"], (renderer, offered, need)


@pytest.mark.parametrize("name", sorted(load_values()["workerGroups"]))
def test_ray_gets_no_more_cpus_than_the_container_limit(name):
    group = load_values()["workerGroups"][name]
    assert _quantity(group["rayStartParams"]["num-cpus"]) <= _quantity(group["resources"]["limits"]["cpu"])


@pytest.mark.parametrize("mode", ["cronJob", "rayCronJob"])
def test_helm_refuses_min_replicas_above_max(chart, mode):
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"workerGroups\.cpu\.minReplicas: 3 is more than maxReplicas 2"):
        chart.render({"schedule": {"mode": mode}, "workerGroups": {"cpu": {"minReplicas": 3}}})


def test_helm_refuses_a_raycronjob_without_worker_groups(chart):
    import helm_python as helm

    off = {name: {"enabled": False} for name in load_values()["workerGroups"]}
    with pytest.raises(helm.HelmError, match="workerGroups: no group is enabled"):
        chart.render({"schedule": {"mode": "rayCronJob"}, "workerGroups": off})


def test_a_group_without_enabled_counts_as_enabled_in_both_renderers(chart):
    """Python's ``group.get('enabled', True)``; Helm must not read the missing key as false."""
    objects, _ = chart.render({"schedule": {"mode": "rayCronJob"}, "workerGroups": {"cpu": {"enabled": None}}})
    cluster = next(o for o in objects if o["kind"] == "RayCronJob")["spec"]["jobTemplate"]["rayClusterSpec"]
    assert "cpu" in {g["groupName"] for g in cluster["workerGroupSpecs"]}
    values = load_values(sets=["workerGroups.cpu.enabled=null"])
    assert "enabled" not in values["workerGroups"]["cpu"]
    assert worker_group(values, "zoo", "cpu")["groupName"] == "cpu"
