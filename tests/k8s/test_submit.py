"""``replicate k8s submit|status`` against a small real HTTP server on 127.0.0.1 that speaks the
part of the Kubernetes API they use (create, get and watch of ray.io/v1 rayjobs). The
``kubernetes`` client, its kubeconfig loading and its watch are the real ones."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from replicate.cli import main

PREFIX = "/apis/ray.io/v1/namespaces/"


class FakeKube:
    """In-memory rayjobs; a watch streams ``statuses`` one by one (each a MODIFIED event)."""

    def __init__(self, validate: Callable[[dict], None], statuses: list[dict[str, Any]]):
        self.validate, self.statuses = validate, statuses
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.invalid: list[str] = []
        self.requests: list[str] = []
        self.version = 1
        self.kubeconfig = ""  # set by the fixture once the server has its port

    def bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def create(self, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        try:
            self.validate(obj)
        except AssertionError as exc:
            self.invalid.append(str(exc))
        stamp = f"2026-11-23T02:{len(self.objects):02d}:00Z"  # creation order = name of the minute
        obj["metadata"].update(namespace=ns, uid=f"uid-{len(self.objects)}", creationTimestamp=stamp)
        self.bump(obj)
        self.objects[(ns, obj["metadata"]["name"])] = obj
        return obj

    def matching(self, ns: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(item.split("=", 1) for item in selector.split(",") if item)
        return [o for (n, _), o in self.objects.items() if n == ns
                and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]


class Handler(BaseHTTPRequestHandler):
    """The rayjobs subset of the Kubernetes API: create, get, list (labelSelector), watch, delete."""

    @property
    def kube(self) -> FakeKube:
        return self.server.kube  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urlparse(self.path)
        self.kube.requests.append(f"{self.command} {self.path}")
        return url.path[len(PREFIX):].split("/"), parse_qs(url.query)

    def _not_found(self, name: str) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                         "reason": "NotFound", "message": f'rayjobs.ray.io "{name}" not found'})

    def do_POST(self) -> None:
        (ns, *_), _ = self._route()
        obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(201, self.kube.create(ns, obj))

    def do_DELETE(self) -> None:
        (ns, _, name), _ = self._route()
        obj = self.kube.objects.pop((ns, name), None)
        self._send(200, {"kind": "Status", "status": "Success"}) if obj else self._not_found(name)

    def do_GET(self) -> None:
        parts, query = self._route()
        if query.get("watch", ["false"])[0].lower() == "true":
            return self._watch(parts[0], query["fieldSelector"][0].split("=", 1)[1])
        if len(parts) == 2:
            items = self.kube.matching(parts[0], query.get("labelSelector", [""])[0])
            return self._send(200, {"apiVersion": "ray.io/v1", "kind": "RayJobList", "items": items,
                                    "metadata": {"resourceVersion": str(self.kube.version)}})
        obj = self.kube.objects.get((parts[0], parts[2]))
        return self._send(200, obj) if obj else self._not_found(parts[2])

    def _watch(self, ns: str, name: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        obj = self.kube.objects.get((ns, name))
        for status in self.kube.statuses if obj else []:
            obj["status"] = dict(status)
            self.kube.bump(obj)
            self.wfile.write((json.dumps({"type": "MODIFIED", "object": obj}) + "\n").encode())
            self.wfile.flush()
            time.sleep(0.02)


@pytest.fixture
def kube(crd_validator, tmp_path):
    """Start the fake API server; ``kube.kubeconfig`` points a context ``fake`` (namespace lab) at it."""
    fake = FakeKube(crd_validator, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.kube = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.kubeconfig = _kubeconfig(tmp_path / "kubeconfig", server.server_address[1])
    yield fake
    server.shutdown()
    server.server_close()


def _kubeconfig(path: Path, port: int) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "tester", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": "lab"}}]}))
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUNNING = [{"jobDeploymentStatus": "Initializing"}, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]


def test_submit_creates_a_valid_rayjob_and_exits_0_when_the_suite_passes(kube, capsys):
    kube.statuses = [*RUNNING, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
    code = main(["k8s", "submit", "suite=nightly", "--name=zoo-nightly-1", f"--kubeconfig={kube.kubeconfig}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert kube.invalid == [] and list(kube.objects) == [("lab", "zoo-nightly-1")]
    assert "created rayjob lab/zoo-nightly-1" in out
    assert "deployment=Running job=RUNNING" in out and "suite PASSED" in out
    assert any("watch=true" in r.lower() and "fieldSelector=metadata.name" in r for r in kube.requests)


@pytest.mark.parametrize("final, needle", [
    ({"jobDeploymentStatus": "Complete", "jobStatus": "FAILED"}, "job=FAILED"),
    ({"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded",
      "message": "The RayJob has passed the activeDeadlineSeconds."}, "reason=DeadlineExceeded"),
])
def test_submit_exits_1_when_the_suite_or_the_rayjob_fails(kube, capsys, final, needle):
    kube.statuses = [*RUNNING, final]
    assert main(["k8s", "submit", "suite=smoke", f"--kubeconfig={kube.kubeconfig}"]) == 1
    out = capsys.readouterr().out
    assert needle in out and "did not pass" in out


def test_submit_gives_up_after_its_timeout_with_exit_2(kube, capsys):
    kube.statuses = RUNNING
    assert main(["k8s", "submit", "suite=smoke", "--timeout=1.5", f"--kubeconfig={kube.kubeconfig}"]) == 2
    assert "not finished after" in capsys.readouterr().err


def test_status_reports_an_existing_rayjob_and_names_a_missing_one(kube, capsys):
    kube.statuses = [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
    assert main(["k8s", "submit", "suite=smoke", "--name=zoo-a", f"--kubeconfig={kube.kubeconfig}"]) == 0
    capsys.readouterr()
    assert main(["k8s", "status", "zoo-a", f"--kubeconfig={kube.kubeconfig}"]) == 0
    assert "rayjob zoo-a deployment=Complete job=SUCCEEDED" in capsys.readouterr().out
    assert main(["k8s", "status", "zoo-b", f"--kubeconfig={kube.kubeconfig}", "--context=fake"]) == 2
    err = capsys.readouterr().err
    assert "404" in err and "zoo-b" in err and "context fake" in err


@pytest.mark.parametrize("action", [["submit", "suite=smoke"], ["status", "zoo-a"]])
def test_unreachable_cluster_exits_2_naming_kubeconfig_and_context(tmp_path, capsys, action):
    config = _kubeconfig(tmp_path / "kubeconfig", _free_port())  # nothing listens there
    started = time.monotonic()
    assert main(["k8s", *action, f"--kubeconfig={config}", "--context=fake"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert config in err and "context fake" in err and "unreachable" in err
    assert time.monotonic() - started < 30


def test_missing_kubeconfig_or_context_exits_2(tmp_path, capsys, kube):
    assert main(["k8s", "submit", "suite=smoke", f"--kubeconfig={tmp_path / 'none'}"]) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err
    assert main(["k8s", "status", "x", f"--kubeconfig={kube.kubeconfig}", "--context=nope"]) == 2
    assert "context nope" in capsys.readouterr().err
    assert kube.objects == {}


def test_submit_deletes_finished_rayjobs_beyond_keep_and_status_lists_them(kube, capsys):
    kube.statuses = [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
    config = f"--kubeconfig={kube.kubeconfig}"
    for i in range(3):
        assert main(["k8s", "submit", "suite=smoke", f"--name=zoo-smoke-{i}", "--keep-finished=1", config]) == 0
    other = ["k8s", "submit", "suite=nightly", "--name=zoo-nightly-0", "--keep-finished=0", "--no-wait", config]
    assert main(other) == 0  # another suite's RayJobs are not touched by smoke's pruning
    out = capsys.readouterr().out
    # Before each create, finished RayJobs beyond the newest one are deleted: only smoke-0 went.
    assert "deleted finished rayjob lab/zoo-smoke-0" in out and "zoo-smoke-1 (keeping" not in out
    assert sorted(name for _, name in kube.objects) == ["zoo-nightly-0", "zoo-smoke-1", "zoo-smoke-2"]
    assert any(r.startswith("DELETE ") for r in kube.requests)
    assert main(["k8s", "status", config]) == 0  # newest (nightly, not started) is not failed
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["zoo-smoke-1", "zoo-smoke-2", "zoo-nightly-0"]
