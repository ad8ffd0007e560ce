"""Worker groups as the KubeRay autoscaler sees them: every hardware profile's jobs fit the group
the RayJob carries for it (read by Ray's own ``_get_ray_resources_from_group_spec`` from what
replicate.k8s.manifest writes), Ray never gets more CPUs than the pod may use, and groups that
could not run are refused, naming the key (by the chart at install, by Python at submit)."""

from __future__ import annotations

from typing import Any

import pytest

from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.k8s.manifest import worker_group
from replicate.k8s.values import load_values
from replicate.scheduling.resources import ray_options, required_resources

PROFILES = group_options("hardware")

def _quantity(value: Any) -> float:
    from ray.autoscaler._private.kuberay.utils import parse_quantity

    return float(parse_quantity(value))


def _hardware(profile: str) -> Any:
    return compose_config(["model=yolov3", f"hardware={profile}"]).hardware  # yolov3 also runs on TPU


def _offered_and_needed(profile: str) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """(profile, what the autoscaler thinks one pod of its group offers, what one job needs)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _get_ray_resources_from_group_spec

    group = worker_group(load_values(sets=[f"workerGroups.{profile}.enabled=true"]), "zoo", profile)
    need = required_resources(ray_options(_hardware(profile)))
    return [(profile, _get_ray_resources_from_group_spec(group, is_head=False), need)]


@pytest.mark.parametrize("profile", PROFILES)
def test_autoscaler_sees_the_accelerator_the_profiles_jobs_ask_for(profile):
    """Without accelerator_type:<TYPE> in rayStartParams a GPU/TPU job is infeasible forever:
    the group starts at 0 replicas and the autoscaler cannot know it would serve the job."""
    for renderer, offered, need in _offered_and_needed(profile):
        for key, amount in need.items():
            if key != "CPU":
                assert offered.get(key, 0) >= amount, (renderer, key, offered)


@pytest.mark.parametrize("profile", PROFILES)
def test_autoscaler_sees_the_cpus_the_profiles_jobs_ask_for(profile):
    for renderer, offered, need in _offered_and_needed(profile):
        assert offered["CPU"] >= need["CPU"], (renderer, offered, need)


@pytest.mark.parametrize("name", sorted(load_values()["workerGroups"]))
def test_ray_gets_no_more_cpus_than_the_container_limit(name):
    group = load_values()["workerGroups"][name]
    assert _quantity(group["rayStartParams"]["num-cpus"]) <= _quantity(group["resources"]["limits"]["cpu"])


def test_helm_refuses_min_replicas_above_max_at_install(chart):
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"workerGroups\.cpu\.minReplicas: 3 is more than maxReplicas 2"):
        chart.render({"workerGroups": {"cpu": {"minReplicas": 3}}})


def test_a_group_without_enabled_counts_as_enabled():
    """``group.get('enabled', True)``: a values file that omits the key keeps the group."""
    values = load_values(sets=["workerGroups.cpu.enabled=null"])
    assert "enabled" not in values["workerGroups"]["cpu"]
    assert worker_group(values, "zoo", "cpu")["groupName"] == "cpu"
