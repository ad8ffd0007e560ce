"""Ray resource requests from a hardware profile, and the fail-fast check against a cluster."""

from __future__ import annotations

from typing import Any

from replicate.errors import ResourceUnavailable


def ray_options(hardware: Any) -> dict[str, Any]:
    """Ray task options: CPUs; GPUs with their accelerator type; TPU chips as the TPU resource."""
    ray = hardware.ray
    options: dict[str, Any] = {"num_cpus": float(ray.num_cpus), "num_gpus": float(ray.num_gpus)}
    if ray.accelerator_type and hardware.accelerator == "gpu":
        options["accelerator_type"] = ray.accelerator_type
    resources = {k: float(v) for k, v in ray.resources.items()}
    if ray.accelerator_type and hardware.accelerator == "tpu":
        # Ray's TPU nodes advertise accelerator_type:TPU-V4 etc. as a custom resource.
        resources[f"accelerator_type:{ray.accelerator_type}"] = 0.001
    if resources:
        options["resources"] = resources
    return options


def task_options(cfg: Any) -> dict[str, Any]:
    """The Ray options of one job: its profile's, holding at least as many CPUs as the job runs
    threads (two 2-thread jobs side by side on 2 cores spin in OpenMP's waits: several times
    slower than one after the other)."""
    options = ray_options(cfg.hardware)
    options["num_cpus"] = max(options["num_cpus"], float(job_threads(cfg)))
    return options


def job_threads(cfg: Any) -> int:
    """Intra-op threads of a job: ``num_threads`` if set on the command line, else the tier's fixed
    count (smoke: results independent of the machine), else the CPUs its profile asks for."""
    return int(cfg.num_threads or cfg.tier.get("num_threads") or max(1, int(cfg.hardware.ray.num_cpus)))


def required_resources(options: dict[str, Any]) -> dict[str, float]:
    """The cluster resources (Ray's names) one job of these options needs on one node."""
    need = {"CPU": options.get("num_cpus", 0.0), "GPU": options.get("num_gpus", 0.0)}
    if "accelerator_type" in options:
        need[f"accelerator_type:{options['accelerator_type']}"] = 0.001
    need.update(options.get("resources", {}))
    return {k: v for k, v in need.items() if v > 0}


def check_fits(hardware_name: str, options: dict[str, Any], nodes: list[dict[str, float]]) -> None:
    """Fail fast when no node of the cluster could ever run the job (it would wait forever).

    Args:
        hardware_name: the profile's name, for the message.
        options: ray_options() of the profile.
        nodes: total resources of each alive node.
    """
    need = required_resources(options)
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    missing = sorted({k for k, v in need.items() if not any(node.get(k, 0.0) >= v for node in nodes)})
    have = ", ".join(sorted({k for node in nodes for k in node if not k.startswith("node:")
                             and not k.startswith("object_store") and k != "memory"})) or "nothing"
    what = ", ".join(f"{k}={need[k]:g}" for k in missing) or "these resources together on one node"
    raise ResourceUnavailable(
        f"hardware={hardware_name}: the cluster has no node with {what} (it offers: {have}); "
        f"use a profile it can run (e.g. hardware=cpu) or scheduler.address=<a cluster with it>")
