"""Keep credentials out of everything the product prints or writes: error lines, logs, the store's
rows, Ray task arguments, W&B, rendered Kubernetes objects.

One rule, :func:`redact_text`, for every credential-bearing string:

- the password of a URL's userinfo: ``scheme://user:PASSWORD@host``;
- a parameter that carries a secret, in a URL's query (``?password=...``, ``&sslpassword=...``)
  or a ``key=value`` connection string. libpq's connection parameters whose *value* is a secret
  are ``password`` and ``sslpassword`` (PostgreSQL docs, "Parameter Key Words"); ``passfile``,
  ``sslkey`` and ``sslcert`` hold paths to files with secrets, not secrets, and are kept (a path
  says which file to check). Any parameter named like an API key, token or secret is redacted
  too (:data:`SECRET_PARAMETER`);
- the values the product reads from Kubernetes Secrets through the environment
  (:data:`SECRET_ENV`: the store URL, the W&B key, libpq's PGPASSWORD): wherever their secret
  part appears verbatim (a driver may echo it in its own words).

A config composes infrastructure settings from the environment (``store.url`` from
``ZOO_STORE_URL``; a logger may carry an API key). Those sections say where results go, not what a
job computes, so their secret keys are dropped before the config leaves the driver
(:func:`recorded_config`). Experiment sections are left whole - a worker needs every key of them -
except that :func:`redact_text` runs over every string.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlsplit

# Config keys whose values must never be recorded (matched case-insensitively, anywhere in the key).
SECRET_KEY = re.compile(r"api[_-]?key|password|passwd|secret|token|credential", re.IGNORECASE)
REDACTED = "<redacted>"
# The password of a URL (a PostgreSQL store URL from the environment): scheme://user:PASSWORD@host.
URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
# A parameter whose value is a secret, by its name's last word: password, sslpassword, api_key,
# access_token, client_secret... (not num_tokens: the name must end with the word).
SECRET_PARAMETER = re.compile(r"(?:pass(?:word|wd)|pwd|secret|token|api[_-]?key|apikey|credentials?)",
                              re.IGNORECASE)
# ``name=value`` in a URL query or a connection string: the name ends in a secret word; the value
# runs to the next separator (``&``, ``;``, whitespace, a quote or a closing bracket).
SECRET_ASSIGNMENT = re.compile(r"(?<![\w-])([\w.-]*" + SECRET_PARAMETER.pattern + r"=)([^&;\s'\"\\)\]}]+)",
                               re.IGNORECASE)
SECRET_NAME = re.compile(r"[\w.-]*" + SECRET_PARAMETER.pattern, re.IGNORECASE)
# Environment variables the product reads that hold a credential: the chart fills the first two
# from Secrets (replicate/k8s/manifest.py env()); libpq reads PGPASSWORD itself.
SECRET_ENV = ("ZOO_STORE_URL", "WANDB_API_KEY", "PGPASSWORD")
# A literal shorter than this is not searched for in text: replacing every "ab" would garble a
# message and hide nothing (the URL forms above still catch a short password in place).
MIN_LITERAL = 4
# Sections of the root config that only the driver reads (the store, the logger, the scheduler).
INFRA_SECTIONS = ("store", "logger", "scheduler")


def environment_secrets(environ: Any = None) -> list[str]:
    """The secret parts of :data:`SECRET_ENV`'s values: of a URL, its password and secret query
    values (raw and percent-decoded); of anything else, the whole value."""
    environ = os.environ if environ is None else environ
    found: list[str] = []
    for name in SECRET_ENV:
        value = environ.get(name) or ""
        if not value:
            continue
        parts = _url_secrets(value) if "://" in value else [value]
        for part in parts:
            found += [part, unquote(part), quote(unquote(part), safe="")]
    return sorted({s for s in found if len(s) >= MIN_LITERAL}, key=len, reverse=True)


def _url_secrets(url: str) -> list[str]:
    try:
        split = urlsplit(url)
        password = split.password
    except ValueError:           # not parseable as a URL: the whole value is the secret
        return [url]
    query = [v for k, v in parse_qsl(split.query, keep_blank_values=True) if is_secret_name(k)]
    raw_query = [m.group(2) for m in SECRET_ASSIGNMENT.finditer(split.query)]
    return [p for p in (password, *query, *raw_query) if p]


def is_secret_name(name: str) -> bool:
    """Whether a parameter or variable named ``name`` carries a secret (its last word says so)."""
    return SECRET_NAME.fullmatch(str(name)) is not None


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` with secret-looking keys dropped, and every string redacted (:func:`redact_text`),
    recursively."""
    secrets = [s for s in secrets if s]
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return redact_text(value, secrets) if isinstance(value, str) else value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every credential replaced by :data:`REDACTED`: ``secrets``, the secret parts
    of :data:`SECRET_ENV`'s values, URL passwords and secret parameters.

    A URL keeps its scheme, user, host and other parameters, so a line still says which store it names.
    """
    for secret in [*(s for s in secrets if s), *environment_secrets()]:
        text = text.replace(secret, REDACTED)
    text = URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<3>", text)
    return SECRET_ASSIGNMENT.sub(rf"\g<1>{REDACTED}", text)


def holds_credential(text: str) -> bool:
    """Whether ``text`` carries a credential :func:`redact_text` would hide."""
    return redact_text(text) != text


def one_line(text: str) -> str:
    """``text`` redacted and on one line: control characters (a newline in a value) written as
    escapes, as ``repr`` writes them, so an error is always the single line the CLI promises."""
    text = redact_text(str(text))
    return "".join(repr(ch)[1:-1] if (ord(ch) < 32 or ord(ch) == 127) else ch for ch in text)


def redacting(echo: Callable[[str], None]) -> Callable[[str], None]:
    """``echo`` that redacts each line first (progress and error lines of a run)."""
    return lambda line: echo(redact_text(str(line)))


def _redacted_strings(value: Any) -> Any:
    """``value`` with every string redacted, every key kept."""
    if isinstance(value, dict):
        return {k: _redacted_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted_strings(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value


def recorded_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved root config as a job records it: infrastructure sections scrubbed (secret keys
    dropped, strings redacted), strings redacted everywhere else.

    Only infrastructure sections lose keys: an experiment key that merely looks secret (say
    ``num_tokens``) is something the worker needs, and no credential lives there.
    """
    return {key: scrub(value) if key in INFRA_SECTIONS else _redacted_strings(value) for key, value in config.items()}


def redacted_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides as a suite records them: ``+logger.api_key=...`` becomes
    ``+logger.api_key=<redacted>`` and credentials in values are redacted."""
    from replicate.config.overrides import Overrides

    return [f"{item.get_key_element()}={REDACTED}" if SECRET_KEY.search(Overrides.key(item))
            else redact_text(Overrides.text(item)) for item in Overrides.parse(overrides).parsed]
