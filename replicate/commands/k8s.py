"""``replicate k8s render|submit|status``: a suite as a KubeRay RayJob.

- ``render [suite=NAME] [overrides]``: print the RayJob manifest (YAML); no cluster needed.
- ``submit [suite=NAME] [overrides]``: delete finished RayJobs of the suite beyond
  ``rayJob.keepFinished``, create the new one, watch it to completion, exit with the suite's
  status (0: every verdict PASS; 1: not; 2: bad input or cluster unreachable).
- ``status [NAME]``: one line per RayJob; exit 0 succeeded or still running, 1 failed.

Cluster settings (image, head, worker groups, volumes, store/W&B Secrets, deadlines) are the Helm
chart's values: ``charts/zoo-replicate/values.yaml`` plus ``--values FILE`` / ``--set KEY=VALUE``.
Hydra overrides select the suite and are passed on to ``replicate suite`` in the cluster.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``k8s`` and its three actions on the CLI's subparsers."""
    parser = subparsers.add_parser("k8s", help="a suite as a KubeRay RayJob: replicate k8s render|submit|status")
    actions = parser.add_subparsers(dest="k8s_action", required=True, metavar="ACTION")
    render = actions.add_parser("render", help="print the RayJob manifest of a suite (no cluster needed)")
    submit = actions.add_parser("submit", help="create the RayJob, watch it, exit with the suite's status")
    for p in (render, submit):
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. suite=nightly")
        p.add_argument("--values", "-f", action="append", default=[], metavar="FILE",
                       help="chart values file(s) merged over charts/zoo-replicate/values.yaml")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one chart value")
        p.add_argument("--name", default=None, help="RayJob name (default zoo-SUITE-YYYYMMDD-HHMM, UTC)")
        p.add_argument("--release", default="zoo-replicate", help="Helm release whose volumes to mount")
    status = actions.add_parser("status", help="the status of a RayJob")
    status.add_argument("name", nargs="?", default=None,
                        help="the RayJob's name (default: every zoo-replicate RayJob, oldest first)")
    status.add_argument("--json", action="store_true", help="print {name: status} as JSON")
    for p in (render, submit, status):
        p.add_argument("--namespace", "-n", default=None, help="default: the context's (or the pod's) namespace")
    for p in (submit, status):
        p.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, ~/.kube/config, or in-cluster")
        p.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    submit.add_argument("--no-wait", action="store_true", help="create the RayJob and exit 0")
    submit.add_argument("--keep-finished", type=int, default=None, metavar="N",
                        help="finished RayJobs of this release and suite to keep (default: rayJob.keepFinished)")
    submit.add_argument("--timeout", type=float, default=None,
                        help="seconds to watch (default: the RayJob's deadlines plus 10 minutes)")
    return parser


def _rayjob(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    from replicate.k8s.manifest import build_rayjob, default_name, suite_plan
    from replicate.k8s.values import load_values

    values = load_values(args.values, args.set)
    if getattr(args, "keep_finished", 0) is None:
        args.keep_finished = values["rayJob"]["keepFinished"]
    plan = suite_plan(args.overrides, values)
    return build_rayjob(values, plan, name=args.name or default_name(plan.suite), namespace=namespace,
                        release=args.release)


def _render(args: argparse.Namespace) -> int:
    """The manifest, headed by the suite's plan as YAML comments (what runs, what each job is
    judged against, its cost): ``kubectl apply`` ignores them, the lab reads them."""
    import yaml

    from replicate.plan_estimate import plan_of_suite

    manifest = _rayjob(args, args.namespace or "default")
    suite = manifest["metadata"]["labels"]["zoo-replicate/suite"]
    _, _, lines = plan_of_suite([f"suite={suite}", *[o for o in args.overrides if not o.startswith("suite=")]])
    print("".join(f"# {line}\n" for line in lines), end="")
    print(yaml.safe_dump(manifest, sort_keys=False, width=1000), end="")
    return 0


def _target(args: argparse.Namespace) -> Any:
    from replicate.k8s.cluster import Target

    return Target(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)


def _submit(args: argparse.Namespace) -> int:
    from replicate.k8s import cluster

    target = _target(args)
    body = _rayjob(args, "default")  # bad input fails before any cluster call
    namespace = body["metadata"]["namespace"] = cluster.default_namespace(target)
    cluster.prune_rayjobs(target, namespace, _selector(body["metadata"]["labels"]),
                          args.keep_finished, echo=lambda s: print(s, flush=True))
    created = cluster.create_rayjob(target, body)
    ns, name = created["metadata"].get("namespace", body["metadata"]["namespace"]), created["metadata"]["name"]
    print(f"created rayjob {ns}/{name}: {body['spec']['entrypoint']}", flush=True)
    if args.no_wait:
        return 0
    spec = body["spec"]
    # The RayJob cannot outlive its own deadlines; 10 minutes covers ttl and API latency.
    timeout = args.timeout or spec["activeDeadlineSeconds"] + spec["preRunningDeadlineSeconds"] + 600
    final = cluster.watch_rayjob(target, ns, name, timeout_s=timeout, echo=lambda s: print(s, flush=True))
    code = cluster.exit_code(final)
    print(f"suite {'PASSED' if code == 0 else 'did not pass'}: {cluster.describe(final)}", flush=True)
    return code


def _selector(labels: dict[str, str]) -> str:
    """This release's RayJobs of this suite."""
    from replicate.k8s.manifest import SUITE_LABEL

    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance", SUITE_LABEL)
    return ",".join(f"{k}={labels[k]}" for k in keys if k in labels)


def _status(args: argparse.Namespace) -> int:
    """One RayJob by name, or (no name) every zoo-replicate RayJob in the namespace."""
    from replicate.k8s import cluster

    target = _target(args)
    namespace = cluster.default_namespace(target)
    if args.name:
        objs = [cluster.get_rayjob(target, namespace, args.name)]
    else:
        objs = cluster.list_rayjobs(target, namespace, "app.kubernetes.io/name=zoo-replicate")
    if args.json:
        print(json.dumps({o["metadata"]["name"]: o.get("status") or {} for o in objs}, indent=2))
    else:
        for obj in objs:
            print(cluster.describe(obj))
    if not objs:
        print(f"no zoo-replicate rayjobs in namespace {namespace}")
    # The newest RayJob decides: 0 succeeded or still running, 1 failed.
    return cluster.exit_code(objs[-1]) if objs and cluster.is_terminal(objs[-1]) else 0


def run(args: argparse.Namespace) -> int:
    """Dispatch the action; typed errors propagate to the CLI (exit 2, one line)."""
    return {"render": _render, "submit": _submit, "status": _status}[args.k8s_action](args)
