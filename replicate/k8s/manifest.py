"""The RayJob of a suite: an ephemeral KubeRay cluster whose driver runs ``replicate suite``.

One worker group per hardware profile the suite's entries name (the chart's ``workerGroups``,
keyed by profile name), a head that only drives, the shared volumes, and pod security
"restricted" on every container. This module is the RayJob's one author: the Helm chart only
schedules ``replicate k8s submit`` (its CronJob), which writes the RayJob from here.

Field reference: KubeRay v1.7.0 CRDs (ray-operator/config/crd/bases/ray.io_rayjobs.yaml).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Sequence

from replicate.errors import ConfigError

API_VERSION = "ray.io/v1"
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
APP_LABEL = "app.kubernetes.io/name"
SUITE_LABEL = "zoo-replicate/suite"
UID = 1000  # the image's non-root user (Dockerfile)
HOME = "/home/zoo"
# Keys the RayJob sets on the entrypoint itself: a user override would contradict the cluster
# (Hydra also refuses a group chosen twice). Chart values set them: store, storage, wandb.
RESERVED = ("suite", "scheduler", "results_dir", "store", "logger")
# Names are DNS labels (RFC 1123): at most 63 characters.
MAX_NAME = 63


@dataclass
class SuitePlan:
    """What the RayJob needs from the composed config: the suite and its hardware profiles."""

    suite: str
    hardware: list[str]
    overrides: list[str]


def suite_plan(overrides: Sequence[str], values: dict[str, Any] | None = None) -> SuitePlan:
    """Compose the config (bad suite/hardware/key -> ConfigError) and list the profiles it needs.

    Args:
        overrides: Hydra overrides from the command line; they win over the chart's.
        values: chart values: ``suite`` (used when no ``suite=`` is given) and ``suiteOverrides``.
    """
    from replicate.config.compose import compose_config
    from replicate.config.overrides import Overrides

    values = values or {}
    _refuse_credentials([*values.get("suiteOverrides", []), *overrides])
    given = Overrides.parse(overrides)
    parsed = Overrides.parse([*values.get("suiteOverrides", []),
                              *([f"suite={values['suite']}"] if not given.has("suite") and values.get("suite") else []),
                              *given])
    reserved = sorted(parsed.keys() & set(RESERVED[1:]))
    if reserved:
        raise ConfigError(reserved[0], "set by the RayJob from the chart values (store, storage, wandb); "
                                       "not an override here")
    root = compose_config(parsed)
    hardware = sorted({str(e.hardware) for e in root.suite.entries})
    return SuitePlan(str(root.suite.name), hardware, parsed.without("suite").as_list())


def _refuse_credentials(overrides: Sequence[str]) -> None:
    """An override is rendered into the RayJob's entrypoint, readable by anyone who can read the
    RayJob: a credential there is refused (before parsing: a parse error would echo it), naming
    the Secret the chart takes instead."""
    from replicate.redact import holds_credential, is_secret_name

    for item in overrides:
        key = str(item).split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        if is_secret_name(key.rsplit(".", 1)[-1]) or holds_credential(str(item)):
            where = ("wandb.apiKeySecret (the W&B API key)" if key.startswith("logger")
                     else "store.existingSecret (the store URL)")
            raise ConfigError(key, "holds a credential, which the RayJob would show to anyone who can read it: "
                                   f"put it in a Secret and name it in the chart values: {where}")


def default_name(suite: str, now: dt.datetime | None = None) -> str:
    """``zoo-<suite>-<UTC yyyymmdd-hhmm>``: one RayJob per nightly run, sortable by time."""
    now = now or dt.datetime.now(dt.timezone.utc)
    slug = re.sub(r"[^a-z0-9-]+", "-", suite.lower()).strip("-")
    return f"zoo-{slug}-{now:%Y%m%d-%H%M}"[:MAX_NAME]


def entrypoint(values: dict[str, Any], plan: SuitePlan) -> str:
    """``replicate suite suite=NAME scheduler=kuberay results_dir=... [store=postgres] ...``."""
    args = ["replicate", "suite", f"suite={plan.suite}", "scheduler=kuberay",
            f"results_dir={values['storage']['results']['mountPath']}"]
    if values["store"]["existingSecret"]["name"]:
        args.append("store=postgres")
    args += wandb_overrides(values["wandb"])
    args += plan.overrides
    return shlex.join(args)


def wandb_overrides(wandb: dict[str, Any]) -> list[str]:
    """The logger group (conf/logger): W&B with the chart's project/entity/mode, or none.

    Without an API key Secret the mode is offline: run files land on the results volume.
    """
    if not wandb["enabled"]:
        return ["logger=none"]
    mode = wandb["mode"] if wandb["apiKeySecret"]["name"] else "offline"
    return ["logger=wandb", f"logger.project={wandb['project']}", f"logger.mode={mode}",
            *([f"logger.entity={wandb['entity']}"] if wandb["entity"] else [])]


def security_context() -> dict[str, Any]:
    """Container security of Pod Security Standard "restricted", plus a read-only root."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _claim(values: dict[str, Any], role: str, release: str) -> str:
    spec = values["storage"][role]
    return spec["existingClaim"] or f"{release}-{role}"


def volumes(values: dict[str, Any], release: str) -> list[dict[str, Any]]:
    """The shared claims and the writable scratch the read-only root filesystem needs."""
    storage = values["storage"]
    return [
        {"name": "datasets", "persistentVolumeClaim": {"claimName": _claim(values, "datasets", release),
                                                       "readOnly": True}},
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": _claim(values, "checkpoints", release)}},
        {"name": "results", "persistentVolumeClaim": {"claimName": _claim(values, "results", release)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": storage["tmpSizeLimit"]}},
        {"name": "home", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": storage["shmSizeLimit"]}},
    ]


def volume_mounts(values: dict[str, Any]) -> list[dict[str, Any]]:
    storage = values["storage"]
    return [
        {"name": "datasets", "mountPath": storage["datasets"]["mountPath"], "readOnly": True},
        {"name": "results", "mountPath": storage["results"]["mountPath"]},
        {"name": "checkpoints", "mountPath": storage["checkpoints"]["mountPath"]},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]


def env(values: dict[str, Any], head: bool) -> list[dict[str, Any]]:
    """Paths, and secrets only by reference (secretKeyRef): no secret value is ever rendered."""
    items: list[dict[str, Any]] = [
        {"name": "HOME", "value": HOME},
        {"name": "ZOO_DATA_ROOT", "value": values["storage"]["datasets"]["mountPath"]},
    ]
    store = values["store"]["existingSecret"]
    if head and store["name"]:  # only the driver (on the head) writes the store
        items.append({"name": "ZOO_STORE_URL",
                      "valueFrom": {"secretKeyRef": {"name": store["name"], "key": store["key"]}}})
    secret = values["wandb"]["apiKeySecret"]
    # Only the driver logs to W&B (replicate/loggers/wandb_logger.py); workers never see the key.
    # project/entity/mode go to the entrypoint as logger overrides.
    if head and values["wandb"]["enabled"] and secret["name"]:
        items.append({"name": "WANDB_API_KEY",
                      "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}}})
    alerts = values["alerts"]
    # Only the driver sends the suite's alerts (replicate/report/alerts.py); the URL holds a token.
    if head and alerts["webhookSecret"]["name"]:
        hook = alerts["webhookSecret"]
        items.append({"name": "ZOO_ALERT_WEBHOOK_URL",
                      "valueFrom": {"secretKeyRef": {"name": hook["name"], "key": hook["key"]}}})
    if head and alerts["reportBaseUrl"]:
        items.append({"name": "ZOO_REPORT_BASE_URL", "value": alerts["reportBaseUrl"]})
    return items


def _image(values: dict[str, Any]) -> str:
    return f"{values['image']['repository']}:{values['image']['tag']}"


def pod_template(values: dict[str, Any], release: str, *, head: bool, group: dict[str, Any],
                 api_token: bool = False) -> dict[str, Any]:
    """A Ray pod: container 0 is the Ray container (KubeRay injects ``ray start`` into it).

    ``api_token``: mount the service account token; only the head needs it, and only with the
    autoscaler sidecar (it scales the RayCluster through the Kubernetes API).
    """
    container = {"name": "ray-head" if head else "ray-worker", "image": _image(values),
                 "imagePullPolicy": values["image"]["pullPolicy"], "env": env(values, head),
                 "resources": group["resources"], "securityContext": security_context(),
                 "volumeMounts": volume_mounts(values)}
    spec: dict[str, Any] = {"securityContext": pod_security_context(), "containers": [container],
                            "volumes": volumes(values, release), "automountServiceAccountToken": api_token}
    if group.get("nodeSelector"):
        spec["nodeSelector"] = group["nodeSelector"]
    if group.get("tolerations"):
        spec["tolerations"] = group["tolerations"]
    if values.get("imagePullSecrets"):
        spec["imagePullSecrets"] = values["imagePullSecrets"]
    if values["storage"]["singleNode"] and not head:
        spec["affinity"] = on_the_heads_node(release)
    return {"metadata": {"labels": {APP_LABEL: "zoo-replicate", "app.kubernetes.io/instance": release}},
            "spec": spec}


def on_the_heads_node(release: str) -> dict[str, Any]:
    """storage.singleNode: a worker pod is scheduled only on the node of this release's Ray head,
    so ReadWriteOnce volumes (attached to one node) are enough; a worker that does not fit there
    stays Pending instead of failing to attach its volumes on another node."""
    head = {APP_LABEL: "zoo-replicate", "app.kubernetes.io/instance": release, "ray.io/node-type": "head"}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": head}, "topologyKey": "kubernetes.io/hostname"}]}}


def _group_values(values: dict[str, Any], name: str) -> dict[str, Any]:
    """values.workerGroups[name], refused (ConfigError naming the key) where the chart could not
    run it: absent, disabled, min > max."""
    group = values["workerGroups"].get(name)
    if group is None:
        raise ConfigError(f"workerGroups.{name}", f"the suite needs hardware profile '{name}' but the chart "
                          f"values define no worker group for it; defined: {', '.join(values['workerGroups'])}")
    if not group.get("enabled", True):
        raise ConfigError(f"workerGroups.{name}.enabled", f"the suite needs hardware profile '{name}' but "
                          f"its worker group is disabled; --set workerGroups.{name}.enabled=true")
    if group["minReplicas"] > group["maxReplicas"]:
        raise ConfigError(f"workerGroups.{name}.minReplicas", f"{group['minReplicas']} is more than "
                          f"maxReplicas {group['maxReplicas']}")
    return group


def ray_start_params(group: dict[str, Any], name: str) -> dict[str, str]:
    """The group's rayStartParams, with ``accelerator_type:<acceleratorType>: 1`` in ``resources``.

    Jobs of a profile with ``ray.accelerator_type`` ask for that custom resource
    (replicate/scheduling/resources.py). Ray detects it on a running node, but the KubeRay
    autoscaler knows what a group offers only from rayStartParams and container limits: without
    it a group at minReplicas 0 is never scaled up for such a job. ``resources`` is JSON in single
    quotes (KubeRay's form); keys sorted and no spaces, as the chart's toJson writes it.
    """
    params = dict(group["rayStartParams"])
    kind = group.get("acceleratorType")
    if not kind:
        return params
    try:
        custom = json.loads(params.get("resources", "{}").strip("'"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"workerGroups.{name}.rayStartParams.resources", f"not JSON: {exc}") from None
    custom[f"accelerator_type:{kind}"] = 1
    params["resources"] = "'" + json.dumps(custom, sort_keys=True, separators=(",", ":")) + "'"
    return params


def worker_group(values: dict[str, Any], release: str, name: str) -> dict[str, Any]:
    """The KubeRay worker group for hardware profile ``name`` (chart values.workerGroups[name])."""
    group = _group_values(values, name)
    return {"groupName": name.replace("_", "-"), "replicas": group["minReplicas"],
            "minReplicas": group["minReplicas"], "maxReplicas": group["maxReplicas"],
            "numOfHosts": group["numOfHosts"], "rayStartParams": ray_start_params(group, name),
            "template": pod_template(values, release, head=False, group=group)}


def submitter_template(values: dict[str, Any]) -> dict[str, Any]:
    """The K8sJobMode submitter pod (``ray job submit``): KubeRay fills in its command."""
    container = {"name": "ray-job-submitter", "image": _image(values),
                 "imagePullPolicy": values["image"]["pullPolicy"], "env": [{"name": "HOME", "value": HOME}],
                 "resources": values["submitter"]["resources"], "securityContext": security_context(),
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": HOME}]}
    return {"spec": {"restartPolicy": "Never", "securityContext": pod_security_context(),
                     "automountServiceAccountToken": False, "containers": [container],
                     "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                                 {"name": "home", "emptyDir": {"sizeLimit": "1Gi"}}]}}


def cluster_spec(values: dict[str, Any], release: str, hardware: Sequence[str]) -> dict[str, Any]:
    """The RayCluster spec: a driving head and one worker group per hardware profile."""
    groups = [worker_group(values, release, name) for name in hardware]
    autoscale = any(g["minReplicas"] < g["maxReplicas"] for g in groups)
    spec: dict[str, Any] = {
        "rayVersion": values["rayVersion"],
        "enableInTreeAutoscaling": autoscale,
        "headGroupSpec": {"rayStartParams": dict(values["head"]["rayStartParams"]),
                          "template": pod_template(values, release, head=True, group=values["head"],
                                                   api_token=autoscale)},
        "workerGroupSpecs": groups,
        # token auth: only holders of the cluster's token (KubeRay gives it to the Ray containers) connect
        "authOptions": {"mode": values["rayJob"]["authMode"]},
    }
    if autoscale:
        spec["autoscalerOptions"] = {
            "idleTimeoutSeconds": values["autoscaler"]["idleTimeoutSeconds"],
            "resources": values["autoscaler"]["resources"], "securityContext": security_context(),
            "env": [{"name": "HOME", "value": HOME}],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": HOME}]}
    return spec


def rayjob_spec(values: dict[str, Any], release: str, plan: SuitePlan) -> dict[str, Any]:
    """The RayJob ``spec``: entrypoint, lifecycle (deadlines, retries, cleanup), cluster."""
    job = values["rayJob"]
    return {"entrypoint": entrypoint(values, plan),
            "shutdownAfterJobFinishes": job["shutdownAfterJobFinishes"],
            "ttlSecondsAfterFinished": job["ttlSecondsAfterFinished"],
            "backoffLimit": job["backoffLimit"],
            "activeDeadlineSeconds": job["activeDeadlineSeconds"],
            "preRunningDeadlineSeconds": job["preRunningDeadlineSeconds"],
            "submitterPodTemplate": submitter_template(values),
            "rayClusterSpec": cluster_spec(values, release, plan.hardware)}


def build_rayjob(values: dict[str, Any], plan: SuitePlan, *, name: str, namespace: str,
                 release: str = "zoo-replicate") -> dict[str, Any]:
    """The complete RayJob object for ``plan``, ready for ``create_namespaced_custom_object``.

    Args:
        values: the chart values (``replicate.k8s.values.load_values``).
        plan: the suite and the hardware profiles it needs (``suite_plan``).
        name: the RayJob's name (a DNS label).
        namespace: where it is created.
        release: the Helm release whose volumes (PVC names) it mounts.
    """
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > MAX_NAME:
        raise ConfigError("--name", f"{name!r} is not a DNS label (lower-case letters, digits, '-'; <= 63)")
    labels = {APP_LABEL: "zoo-replicate", "app.kubernetes.io/instance": release,
              SUITE_LABEL: re.sub(r"[^A-Za-z0-9_.-]", "-", plan.suite)[:MAX_NAME]}
    return {"apiVersion": API_VERSION, "kind": "RayJob",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": rayjob_spec(values, release, plan)}
