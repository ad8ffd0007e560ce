"""The chart's values as the settings of ``replicate k8s``.

One source of truth for the Ray cluster a suite runs on: ``charts/zoo-replicate/values.yaml``
gives the defaults, the files a user passes to ``helm install -f`` can be passed to
``replicate k8s --values`` too, and the CronJob's pod reads the release's merged values from a
ConfigMap. Every merge is validated against the chart's ``values.schema.json`` (the same check
Helm runs), so a misspelt key fails here with its path, before anything reaches a cluster.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from replicate.errors import ConfigError, DataError


def chart_dir() -> Path:
    """The chart folder: $ZOO_CHART_DIR, else ``charts/zoo-replicate`` beside the package."""
    env = os.environ.get("ZOO_CHART_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "charts" / "zoo-replicate"
    if not (path / "values.yaml").is_file():
        raise ConfigError("ZOO_CHART_DIR", f"no values.yaml in {path}")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DataError(str(path), f"YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(str(path), "a values file is a YAML mapping")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of maps: nested maps merge, anything else is replaced; null deletes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set a.b=VALUE`` (VALUE parsed as YAML) into a nested mapping, like ``helm --set``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(item, "--set takes KEY=VALUE (e.g. rayJob.backoffLimit=1)")
        key, raw = item.split("=", 1)
        where = f"--set {key}"
        if not key or any(not part for part in key.split(".")) or any(ch in key for ch in "\n\r\t "):
            raise ConfigError(where, "the key is dotted names (e.g. rayJob.backoffLimit)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(where, f"{part} was set to a value by an earlier --set")
            node = child
        try:
            node[leaf] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or exc
            raise ConfigError(where, f"the value is not one YAML value ({reason})") from None
    return out


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """Check values against the chart's values.schema.json; the error names the key's path."""
    import json

    import jsonschema

    schema = json.loads((chart_dir() / "values.schema.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.path) or "values"
        # a rule whose bare message would not say why carries its reason in the schema's description
        why = first.schema.get("description") if isinstance(first.schema, dict) else None
        raise ConfigError(path, f"{first.message}{': ' + why if why else ''} (charts/zoo-replicate/values.schema.json)")
    return values


def load_values(files: Sequence[str] = (), sets: Sequence[str] = ()) -> dict[str, Any]:
    """The chart's defaults merged with ``files`` (in order) and ``--set`` items, validated.

    Raises:
        DataError: a values file is missing or not YAML.
        ConfigError: a key is unknown or has the wrong type (the path is named).
    """
    values = _read_yaml(chart_dir() / "values.yaml")
    for name in files:
        values = merge(values, _read_yaml(Path(name)))
    values = merge(values, parse_set(sets))
    return validate(values)
