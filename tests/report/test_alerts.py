"""Alerts at a suite's end: each regression (with what changed since its last PASS) and drift in one
message to a webhook (a real local HTTP server here, Slack's JSON) and as W&B alerts on the
leaderboard run (offline files); a webhook that refuses or is down costs one line, and its URL,
which holds a token, appears nowhere."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from replicate.config.compose import compose_config
from replicate.harness import SuiteResult, SuiteRun
from replicate.loggers import make_logger
from replicate.report.alerts import WEBHOOK_ENV, send_alerts, suite_alerts
from replicate.report.pages import findings

NIGHT1, NIGHT2 = "smoke-20261121", "smoke-20261122"   # tests/report/conftest.py
TOKEN = "T0123/B0456/s3cr3tW3bh00kT0k3n"


class Webhook:
    """A local HTTP server that records each POST and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.paths: list[str] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.paths.append(self.path)
                hook.received.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def test_the_suite_end_sends_one_message_with_each_regression_and_raises_it_on_wandb(
        results_root, tmp_path, monkeypatch, webhook):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(results_root / "zoo.db", results / "zoo.db")   # night 2 has two regressions
    monkeypatch.setenv(WEBHOOK_ENV, webhook.url)
    monkeypatch.setenv("ZOO_REPORT_BASE_URL", "https://zoo.lab.example/results")
    root = compose_config(["suite=smoke", f"results_dir={results}", "logger=wandb", "logger.mode=offline"])
    lines: list[str] = []
    result = SuiteResult(NIGHT2)
    with SuiteRun(root, NIGHT2, lines.append, make_logger(root, lines.append)) as run:
        run.finish(result)

    assert len(webhook.received) == 1 and webhook.paths == [f"/services/{TOKEN}"]
    message = webhook.received[0]
    assert message["text"].startswith(f"zoo-replicate suite {NIGHT2}: 2 regression(s)")
    assert len(message["blocks"]) == 3   # the summary, then one per regression
    by_group = {a["group"].split("/")[0]: a for a in message["zoo_replicate"]["alerts"]}
    assert set(by_group) == {"faster_rcnn", "yolov4"}
    assert by_group["faster_rcnn"]["title"].startswith("REGRESSION faster_rcnn") and f"PASS in {NIGHT1}" in \
        by_group["faster_rcnn"]["title"] and f"BELOW in {NIGHT2}" in by_group["faster_rcnn"]["title"]
    assert "- environment torch: 2.14.1 -> 2.15.0" in by_group["faster_rcnn"]["lines"]
    assert "- config model.tiers.smoke.recipe.lr: 0.004 -> 0.002" in by_group["yolov4"]["lines"]
    assert by_group["yolov4"]["report"] == f"https://zoo.lab.example/results/reports/{NIGHT2}/index.html"
    assert result.alerts == [a["title"] for a in message["zoo_replicate"]["alerts"]]
    assert "alerts: 2 sent to the webhook" in lines

    (run_file,) = (results / "wandb").glob("offline-run-*/run-*.wandb")   # the leaderboard run
    recorded = run_file.read_bytes()
    assert all(title.encode() in recorded for title in result.alerts)
    # The webhook's token is nowhere: not in a line, the store, the report or W&B's files.
    assert not any(TOKEN in line for line in lines)
    for path in results.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_night_without_regressions_sends_nothing(store, webhook):
    regressions, drifts = findings(store, NIGHT1)
    alerts = suite_alerts(regressions, drifts, NIGHT1, None)
    assert alerts == [] and not send_alerts(NIGHT1, alerts, print, {WEBHOOK_ENV: webhook.url})
    assert webhook.received == []


@pytest.mark.parametrize("status", [500, 403])
def test_a_webhook_that_refuses_costs_one_line_without_its_url(store, webhook, status):
    webhook.status = status
    alerts = suite_alerts(*findings(store, NIGHT2), NIGHT2, None)
    lines: list[str] = []
    assert not send_alerts(NIGHT2, alerts, lines.append, {WEBHOOK_ENV: webhook.url})
    assert lines == [f"alerts: not sent (the webhook at 127.0.0.1 answered HTTP {status}); the report lists them"]


@pytest.mark.parametrize("url, said", [
    ("http://127.0.0.1:9/services/" + TOKEN, "the webhook at 127.0.0.1 is unreachable"),
    ("ftp://hooks.example/" + TOKEN, f"{WEBHOOK_ENV} is not an http(s) URL"),
    ("not a url " + TOKEN, f"{WEBHOOK_ENV} is not an http(s) URL")])
def test_a_webhook_that_is_down_or_malformed_costs_one_line_without_its_url(store, url, said):
    alerts = suite_alerts(*findings(store, NIGHT2), NIGHT2, None)
    lines: list[str] = []
    assert not send_alerts(NIGHT2, alerts, lines.append, {WEBHOOK_ENV: url})
    assert len(lines) == 1 and said in lines[0] and TOKEN not in lines[0]


def test_slack_markup_in_a_message_is_escaped(store):
    from replicate.report.alerts import Alert, webhook_payload

    payload = webhook_payload("s", [Alert("regression", "m", "REGRESSION <!channel> & <http://x|y>", ["- a > b"])])
    assert "<!channel>" not in json.dumps(payload["blocks"]) and "&lt;!channel&gt; &amp;" in payload["text"]


def test_the_chart_passes_the_webhook_from_a_secret_to_the_head_only(tmp_path):
    from replicate.k8s.manifest import env
    from replicate.k8s.values import load_values

    values = load_values([], ["alerts.webhookSecret.name=zoo-alerts", "alerts.reportBaseUrl=https://zoo.lab/results"])
    head = {item["name"]: item for item in env(values, head=True)}
    assert head["ZOO_ALERT_WEBHOOK_URL"]["valueFrom"] == {"secretKeyRef": {"name": "zoo-alerts", "key": "url"}}
    assert head["ZOO_REPORT_BASE_URL"]["value"] == "https://zoo.lab/results"
    assert "ZOO_ALERT_WEBHOOK_URL" not in {item["name"] for item in env(values, head=False)}


def test_jobs_the_budget_leaves_out_are_said_and_sent(results_dir, shapes_root, tiny, monkeypatch, webhook):
    """A night whose budget cannot pay for its job (no history: its cost is its deadline's worth)
    runs nothing, says why, and the lab hears of it."""
    from replicate.harness import run_suite

    monkeypatch.setenv(WEBHOOK_ENV, webhook.url)
    lines: list[str] = []
    result = run_suite(["suite=smoke", "suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]}]",
                        "suite.budget=0.01", "suite_id=poor", "scheduler=inline", f"results_dir={results_dir}",
                        f"datasets.shapes.root={shapes_root}", *tiny], echo=lines.append)
    assert result.jobs == [] and len(result.deferred) == 1 and not result.all_pass
    assert "left for another night: due: never run, but its cost 0.2 is more than the budget left (0.01)" \
        in result.deferred[0]
    assert any("left for another night" in line for line in lines)
    (message,) = webhook.received
    (alert,) = message["zoo_replicate"]["alerts"]
    assert alert["kind"] == "budget" and alert["title"] == "BUDGET poor: 1 job(s) left for another night"
