"""Submit a RayJob and watch it to completion with the ``kubernetes`` client.

Connection problems (no kubeconfig, unknown context, API server unreachable, forbidden) become
``ResourceUnavailable`` naming the kubeconfig and context, so the CLI prints one line, exit 2.

RayJob status semantics (KubeRay v1.7.0, ray-operator/apis/ray/v1/rayjob_types.go):
``jobDeploymentStatus`` Complete/Failed/ValidationFailed are terminal; ``jobStatus`` is the Ray
job's own status (SUCCEEDED when the entrypoint, here ``replicate suite``, exited 0).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from replicate.errors import ResourceUnavailable
from replicate.k8s.manifest import GROUP, PLURAL, VERSION

TERMINAL_DEPLOYMENT = ("Complete", "Failed", "ValidationFailed")
# (connect, read) seconds per API request: an unreachable server fails in seconds, not minutes.
REQUEST_TIMEOUT = (5, 30)
# A watch is re-opened after this many seconds (servers also end watches after ~5-10 min).
WATCH_WINDOW_S = 300


@dataclass
class Target:
    """Where to talk to: kubeconfig file and context (None: in-cluster or the defaults)."""

    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespace: Optional[str] = None
    server: Optional[str] = None  # the API server URL, once the configuration is loaded
    client: Any = field(default=None, repr=False)  # one ApiClient (connection pool) per target

    def describe(self) -> str:
        if self.kubeconfig is None and self.context is None and _in_cluster():
            where = "in-cluster service account"
        else:
            path = self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            where = f"kubeconfig {path}, context {self.context or _current_context(self.kubeconfig)}"
        return where + (f", server {self.server}" if self.server else "")


def _current_context(kubeconfig: Optional[str]) -> str:
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        return f"{active['name']} (current)"
    except Exception:  # noqa: BLE001 - only for a message; the load itself reports the real error
        return "(current)"


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


def api_client(target: Target) -> Any:
    """A configured ``ApiClient``: in-cluster (service account) or from the kubeconfig."""
    from kubernetes import client, config

    if target.client is not None:
        return target.client
    cfg = client.Configuration()
    try:
        if target.kubeconfig is None and target.context is None and _in_cluster():
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(config_file=target.kubeconfig, context=target.context,
                                    client_configuration=cfg)
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise ResourceUnavailable(f"Kubernetes cluster: cannot load {target.describe()}: {exc}") from None
    target.server = cfg.host
    cfg.retries = 1  # urllib3 retries 3x with backoff by default: an unreachable server would hang
    target.client = client.ApiClient(cfg)
    return target.client


def default_namespace(target: Target) -> str:
    """The kubeconfig context's namespace, the pod's own in-cluster, else ``default``."""
    from kubernetes import config

    if target.namespace:
        return target.namespace
    sa_ns = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if _in_cluster() and os.path.exists(sa_ns):
        with open(sa_ns) as f:
            return f.read().strip()
    try:
        _, active = config.list_kube_config_contexts(config_file=target.kubeconfig)
        if target.context:
            contexts, _ = config.list_kube_config_contexts(config_file=target.kubeconfig)
            active = next((c for c in contexts if c["name"] == target.context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, OSError, TypeError, ValueError):
        return "default"


def _call(target: Target, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one API call; map transport and API errors to one-line typed errors."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
    except ApiException as exc:
        reason = f"HTTP {exc.status} {exc.reason}"
        if exc.status == 404 and "rayjobs" in str(exc.body or "") and what.startswith("create"):
            reason += " (is the KubeRay operator with its RayJob CRD installed?)"
        raise ResourceUnavailable(f"Kubernetes API ({target.describe()}): {what}: {reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ResourceUnavailable(f"Kubernetes API unreachable ({target.describe()}): {what}: "
                                  f"{_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error, e.g. 'NewConnectionError: ... Connection refused'."""
    inner = getattr(exc, "reason", None) or exc
    text = str(inner).split(": ", 1)[-1].strip() or type(inner).__name__
    return f"{type(inner).__name__}: {text}"[:300]


def create_rayjob(target: Target, body: dict[str, Any]) -> dict[str, Any]:
    """Create the RayJob; returns the object the API server stored."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client(target))
    ns = body["metadata"]["namespace"]
    return _call(target, f"create rayjob {ns}/{body['metadata']['name']}",
                 api.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body)


def get_rayjob(target: Target, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    api = client.CustomObjectsApi(api_client(target))
    return _call(target, f"get rayjob {namespace}/{name}",
                 api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)


def list_rayjobs(target: Target, namespace: str, selector: str) -> list[dict[str, Any]]:
    """RayJobs matching a label selector, oldest first."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client(target))
    items = _call(target, f"list rayjobs in {namespace} ({selector})", api.list_namespaced_custom_object,
                  GROUP, VERSION, namespace, PLURAL, label_selector=selector)["items"]
    return sorted(items, key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]))


def prune_rayjobs(target: Target, namespace: str, selector: str, keep: int,
                  echo: Callable[[str], None] = print) -> list[str]:
    """Delete finished RayJobs matching ``selector`` but the newest ``keep``; returns their names.

    KubeRay deletes a finished RayJob's cluster (shutdownAfterJobFinishes) but not the RayJob
    object itself, so without this one object per night would pile up in the namespace.
    """
    from kubernetes import client

    finished = [o for o in list_rayjobs(target, namespace, selector) if is_terminal(o)]
    doomed = finished[:max(0, len(finished) - keep)]
    api = client.CustomObjectsApi(api_client(target))
    for obj in doomed:
        name = obj["metadata"]["name"]
        _call(target, f"delete rayjob {namespace}/{name}", api.delete_namespaced_custom_object,
              GROUP, VERSION, namespace, PLURAL, name)
        echo(f"deleted finished rayjob {namespace}/{name} (keeping the newest {keep})")
    return [o["metadata"]["name"] for o in doomed]


def is_terminal(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("jobDeploymentStatus") in TERMINAL_DEPLOYMENT


def exit_code(obj: dict[str, Any]) -> int:
    """0 when the suite's Ray job SUCCEEDED (every verdict PASS), else 1."""
    status = obj.get("status") or {}
    return 0 if status.get("jobDeploymentStatus") == "Complete" and status.get("jobStatus") == "SUCCEEDED" else 1


def describe(obj: dict[str, Any]) -> str:
    """One line: name, deployment status, Ray job status, and KubeRay's reason/message."""
    status = obj.get("status") or {}
    parts = [f"rayjob {obj['metadata']['name']}", f"deployment={status.get('jobDeploymentStatus') or 'New'}",
             f"job={status.get('jobStatus') or '-'}"]
    if status.get("reason"):
        parts.append(f"reason={status['reason']}")
    if status.get("message"):
        parts.append(f"message={status['message']}")
    return " ".join(parts)


def watch_rayjob(target: Target, namespace: str, name: str, *, timeout_s: float,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Follow the RayJob's status changes until it is terminal or ``timeout_s`` passes.

    Raises:
        ResourceUnavailable: the API became unreachable, or the RayJob vanished or timed out.
    """
    from kubernetes import client, watch

    api = client.CustomObjectsApi(api_client(target))
    deadline = time.monotonic() + timeout_s
    obj = get_rayjob(target, namespace, name)
    last = describe(obj)
    echo(last)
    while not is_terminal(obj):
        window = int(min(WATCH_WINDOW_S, max(1.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            raise ResourceUnavailable(f"rayjob {namespace}/{name}: not finished after {timeout_s:.0f} s ({last})")
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
            field_selector=f"metadata.name={name}", resource_version=obj["metadata"].get("resourceVersion"),
            timeout_seconds=window, _request_timeout=(REQUEST_TIMEOUT[0], window + 10))
        obj = _follow(target, stream, obj, echo, last)
        last = describe(obj)
    return obj


def _follow(target: Target, stream: Any, obj: dict[str, Any], echo: Callable[[str], None],
            last: str) -> dict[str, Any]:
    """Consume one watch window; returns the latest object (terminal or not)."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        for event in stream:
            if event["type"] == "DELETED":
                raise ResourceUnavailable(f"rayjob {obj['metadata']['name']} was deleted while watched")
            if event["type"] not in ("ADDED", "MODIFIED"):
                continue
            obj = event["object"]
            line = describe(obj)
            if line != last:
                echo(line)
                last = line
            if is_terminal(obj):
                break
    except ApiException as exc:
        if exc.status != 410:  # 410 Gone: resourceVersion too old; the caller re-reads
            raise ResourceUnavailable(f"Kubernetes API ({target.describe()}): watch: HTTP {exc.status}") from None
        return get_rayjob(target, obj["metadata"]["namespace"], obj["metadata"]["name"])
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ResourceUnavailable(f"Kubernetes API unreachable ({target.describe()}): watch: "
                                  f"{_reason(exc)}") from None
    return obj
