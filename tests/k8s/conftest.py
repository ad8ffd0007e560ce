"""Fixtures of the Kubernetes tests: the chart rendered by Helm's own engine (helm-python-sdk),
native objects checked with kubernetes-validate, KubeRay objects checked against the real CRDs.

The KubeRay CRDs (v1.7.0) are test-only reference data: the reference folder's ``kuberay/``
(tests/conftest.py, ``reference``); the tests that validate against them skip when it is absent.
They leave unknown fields open; ``strict`` closes every object schema that lists ``properties``
(as kubeconform's converter does), unless it preserves unknown fields, so a misspelt key fails
validation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "zoo-replicate"
KUBE_VERSION = "1.37"  # kubernetes-validate 1.37.0's newest schema set
CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema where every object with ``properties`` rejects other keys."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


@pytest.fixture(scope="session")
def crd_validator(reference: Callable[[str], Path]) -> Callable[[dict[str, Any]], None]:
    """``validate(obj)`` against the served ray.io/v1 CRD schema of ``obj['kind']``, strict."""
    import jsonschema

    crds = reference("kuberay")  # skips cleanly when the reference data is absent
    validators = {}
    for kind, name in CRD_FILES.items():
        # The C loader: the three CRDs are 3 MB of YAML (pure-Python loading takes ~20 s).
        crd = yaml.load((crds / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        validators[kind] = jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))

    def validate(obj: dict[str, Any]) -> None:
        assert obj["apiVersion"] == "ray.io/v1", obj["apiVersion"]
        errors = sorted(validators[obj["kind"]].iter_errors(obj), key=lambda e: list(e.absolute_path))
        if errors:
            raise AssertionError(f"{obj['kind']} {obj['metadata'].get('name')}: "
                                 + "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))

    return validate


def k8s_validate(obj: dict[str, Any]) -> None:
    """Validate a native object against the Kubernetes 1.37 schemas, unknown fields rejected."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: {path}: {exc.message}") from None


def render_chart(values: dict[str, Any] | None = None, *, name: str = "zoo", namespace: str = "lab"
                 ) -> tuple[list[dict[str, Any]], str]:
    """Render the chart offline; returns its objects and the NOTES.txt text."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    notes = next((text for path, text in out.items() if path.endswith("NOTES.txt")), "")
    objects = [doc for path, text in sorted(out.items()) if not path.endswith(".txt")
               for doc in yaml.safe_load_all(text) if doc]
    return objects, notes


def lint_chart(values: dict[str, Any] | None = None) -> dict[str, Any]:
    import helm_python as helm

    return helm.lint(CHART, values or {}, strict=True, namespace="lab", kube_version="v1.37.0")


def rayjob(values: dict[str, Any] | None = None, hardware: list[str] | None = None) -> dict[str, Any]:
    """The RayJob its one author (replicate.k8s.manifest) writes from the chart's values merged with
    ``values``, for the suite's ``hardware`` profiles (default: every enabled worker group)."""
    from replicate.k8s.manifest import SuitePlan, build_rayjob
    from replicate.k8s.values import load_values, merge

    merged = merge(load_values(), values or {})
    enabled = hardware or sorted(n for n, g in merged["workerGroups"].items() if g.get("enabled", True))
    plan = SuitePlan(merged["suite"], enabled, list(merged["suiteOverrides"]))
    return build_rayjob(merged, plan, name="x", namespace="lab", release="zoo")


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec an object carries: the CronJob's, and the RayJob's head/worker/submitter."""
    kind = obj["kind"]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if kind != "RayJob":
        return []
    job = obj["spec"]
    cluster = job["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"], job["submitterPodTemplate"]["spec"]]
    return pods + [g["template"]["spec"] for g in cluster.get("workerGroupSpecs") or []]


def containers(obj: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod security context, container) for every container, the autoscaler sidecar included."""
    out = [(pod.get("securityContext") or {}, c) for pod in pod_specs(obj)
           for c in [*pod.get("initContainers", []), *pod["containers"]]]
    job = obj["spec"] if obj["kind"] == "RayJob" else None
    if job and job["rayClusterSpec"].get("autoscalerOptions"):
        head_pod = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        out.append((head_pod["securityContext"], {"name": "autoscaler", **job["rayClusterSpec"]["autoscalerOptions"]}))
    return out


@pytest.fixture(scope="session")
def chart() -> Any:
    """The chart's helpers as one object: render, lint, validate, containers of an object."""

    class Chart:
        path = CHART
        render = staticmethod(render_chart)
        lint = staticmethod(lint_chart)
        k8s_validate = staticmethod(k8s_validate)
        containers = staticmethod(containers)
        pod_specs = staticmethod(pod_specs)
        rayjob = staticmethod(rayjob)

    return Chart
