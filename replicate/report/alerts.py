"""Alerts: when a suite ends with a regression (a group that passed before and does not now), a
drift (a sustained shift beyond the measured seed noise) or jobs its budget left for another
night, one message tells the lab, with the model, the verdicts, the link to the report and what
changed since the last PASS.

Two channels, each optional: a webhook (Slack-compatible JSON: ``text`` plus one ``blocks``
section per alert; its URL only from the ``ZOO_ALERT_WEBHOOK_URL`` environment variable, which the
chart fills from a Secret, so it is never in a config, a value, a record or a log line) and a W&B
alert on the suite's leaderboard run when W&B is on. Sending can never fail a suite: a failure is
one line, without the URL.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from replicate.history import Drift, Regression, key_label

WEBHOOK_ENV = "ZOO_ALERT_WEBHOOK_URL"
# Where the lab serves the results volume over HTTP, if it does: the alert's link then points there.
REPORT_BASE_ENV = "ZOO_REPORT_BASE_URL"
TIMEOUT_S = 10.0
MAX_CHANGES = 12   # what changed, listed per alert; the report has the rest


@dataclass(frozen=True)
class Alert:
    """One thing the lab should hear about tonight."""

    kind: str            # regression | drift | budget
    group: str           # the model group, e.g. "yolov4 / full / torch / smoke / cpu"
    title: str
    lines: list[str] = field(default_factory=list)
    report: Optional[str] = None

    def text(self) -> str:
        return "\n".join([self.title, *self.lines, *([f"report: {self.report}"] if self.report else [])])


def report_link(report: Optional[str], environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """The report's address: under ``ZOO_REPORT_BASE_URL`` (the results folder served over HTTP)
    when set, else its path on the results volume."""
    if report is None:
        return None
    base = (os.environ if environ is None else environ).get(REPORT_BASE_ENV, "").rstrip("/")
    parts = Path(report).parts
    if base and "reports" in parts:
        return base + "/" + "/".join(parts[len(parts) - 1 - parts[::-1].index("reports"):])
    return report


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4g}"


def regression_alert(regression: Regression, report: Optional[str]) -> Alert:
    changes = [f"{c.section} {c.key}: {c.before} -> {c.after}" for c in regression.changes]
    if regression.unrecorded:
        changes.append("not recorded, so not compared: " + "; ".join(regression.unrecorded))
    elif not changes:
        changes = ["nothing recorded changed: suspect seed noise, hardware or an unpinned dependency"]
    shown = changes[:MAX_CHANGES]
    if len(changes) > MAX_CHANGES:
        shown.append(f"... and {len(changes) - MAX_CHANGES} more (in the report)")
    return Alert("regression", regression.label,
                 f"REGRESSION {regression.label}: PASS in {regression.last_pass_suite_id} "
                 f"({_num(regression.last_pass_mean)}), {regression.verdict} in {regression.suite_id} "
                 f"({_num(regression.mean)})",
                 ["what changed since the last PASS:", *(f"- {c}" for c in shown)], report)


def drift_alert(drift: Drift, suite_id: str, report: Optional[str]) -> Alert:
    label = key_label(drift.key)
    return Alert("drift", label, f"DRIFT {label} in {suite_id}: {drift.describe()}", [], report)


def budget_alert(deferred: Sequence[str], suite_id: str, report: Optional[str]) -> Alert:
    """The jobs the suite's budget left for another night, each with why."""
    return Alert("budget", "suite", f"BUDGET {suite_id}: {len(deferred)} job(s) left for another night",
                 [f"- {line}" for line in deferred], report)


def suite_alerts(regressions: Iterable[Regression], drifts: Iterable[Drift], suite_id: str,
                 report: Optional[str], deferred: Sequence[str] = ()) -> list[Alert]:
    """The alerts of a suite: each regression, then each drift, then what the budget left out."""
    return [*(regression_alert(r, report) for r in regressions), *(drift_alert(d, suite_id, report) for d in drifts),
            *([budget_alert(deferred, suite_id, report)] if deferred else [])]


def _slack_escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup (links, mentions): escaped as its docs say."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(suite_id: str, alerts: Sequence[Alert]) -> dict[str, Any]:
    """Slack-compatible JSON (incoming webhooks: ``text`` is the fallback, ``blocks`` the message);
    other chat tools that take Slack's format read ``text``."""
    summary = f"zoo-replicate suite {suite_id}: " + ", ".join(
        f"{sum(a.kind == kind for a in alerts)} {kind}(s)" for kind in ("regression", "drift", "budget")
        if any(a.kind == kind for a in alerts))
    return {"text": _slack_escape(summary + "\n" + "\n\n".join(a.text() for a in alerts)),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(summary)}},
                       *({"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(a.text())[:3000]}}
                         for a in alerts)],
            "zoo_replicate": {"suite_id": suite_id, "alerts": [a.__dict__ for a in alerts]}}


class AlertError(Exception):
    """The webhook did not take the message (said without its URL)."""


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = TIMEOUT_S) -> None:
    """POST ``payload`` as JSON to ``url``; AlertError (naming the host, never the URL's path,
    where a webhook's token lives) when it is refused or unreachable."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise AlertError(f"{WEBHOOK_ENV} is not an http(s) URL")
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:   # noqa: S310 - scheme checked above
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise AlertError(f"the webhook at {parsed.hostname} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertError(f"the webhook at {parsed.hostname} is unreachable ({type(reason).__name__})") from None


def send_alerts(suite_id: str, alerts: Sequence[Alert], echo: Callable[[str], None],
                environ: Optional[dict[str, str]] = None) -> bool:
    """Send ``alerts`` to the webhook named by the environment, if any; True when it took them."""
    url = (os.environ if environ is None else environ).get(WEBHOOK_ENV, "").strip()
    if not alerts or not url:
        return False
    try:
        post_webhook(url, webhook_payload(suite_id, alerts))
    except AlertError as exc:
        echo(f"alerts: not sent ({exc}); the report lists them")
        return False
    echo(f"alerts: {len(alerts)} sent to the webhook")
    return True

