"""Keep credentials out of everything a job records: the store's rows, Ray task arguments, W&B.

A config composes infrastructure settings from the environment (``store.url`` from
``ZOO_STORE_URL`` holds a PostgreSQL password; a logger may carry an API key). Those sections say
where results go, not what a job computes, so their secrets are dropped or redacted before the
config leaves the driver. Experiment sections are left whole - a worker needs every key of them -
except that a URL password anywhere is redacted.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

# Config keys whose values must never be recorded (matched case-insensitively, anywhere in the key).
SECRET_KEY = re.compile(r"api[_-]?key|password|passwd|secret|token|credential", re.IGNORECASE)
REDACTED = "<redacted>"
# The password of a URL (a PostgreSQL store URL from the environment): scheme://user:PASSWORD@host.
URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
# Sections of the root config that only the driver reads (the store, the logger, the scheduler).
INFRA_SECTIONS = ("store", "logger", "scheduler")


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` with secret-looking keys dropped, and secret strings and URL passwords redacted,
    recursively."""
    secrets = [s for s in secrets if s]
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return redact_text(value, secrets) if isinstance(value, str) else value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and any URL password replaced by :data:`REDACTED`.

    The URL keeps its scheme, user and host, so a record still says which store it names.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<3>", text)


def _urls_redacted(value: Any) -> Any:
    """``value`` with URL passwords redacted in every string, every key kept."""
    if isinstance(value, dict):
        return {k: _urls_redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_urls_redacted(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value


def recorded_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved root config as a job records it: infrastructure sections scrubbed (secret keys
    dropped, URL passwords redacted), URL passwords redacted everywhere else.

    Only infrastructure sections lose keys: an experiment key that merely looks secret (say
    ``num_tokens``) is something the worker needs, and no credential lives there.
    """
    return {key: scrub(value) if key in INFRA_SECTIONS else _urls_redacted(value) for key, value in config.items()}


def redacted_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides as a suite records them: ``+logger.api_key=...`` becomes
    ``+logger.api_key=<redacted>`` and URL passwords are redacted."""
    from replicate.config.overrides import Overrides

    return [f"{item.get_key_element()}={REDACTED}" if SECRET_KEY.search(Overrides.key(item))
            else redact_text(Overrides.text(item)) for item in Overrides.parse(overrides).parsed]
