"""The subcommands of the ``replicate`` CLI, one module each, and what they share.

Each module has ``add_parser(subparsers)`` (registering the subcommand of the module's name) and
``run(args) -> int``; the CLI (replicate/cli.py) imports them lazily and turns their typed errors
into exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from replicate.errors import ConfigError

# What a read command filters by, as a flag: ``suite=`` and ``model=`` pick config groups (a
# suite config, a model config) and must not be mistaken for a suite id or a history filter.
READ_FLAGS = {"suite": "--suite-id ID", "model": "--model NAME"}


def store_config(command: str, overrides: Sequence[str]) -> Any:
    """The config a read command opens its store with: ``results_dir`` and ``store`` only
    (``compose_store_config``); no job config is composed.

    Raises:
        ConfigError: ``suite=`` or ``model=`` given (the message names the flag meant), or any
            other key that is not where the store is.
    """
    from replicate.config.compose import compose_store_config
    from replicate.config.overrides import Overrides

    parsed = Overrides.parse(overrides)
    for key, flag in READ_FLAGS.items():
        if parsed.has(key):
            raise ConfigError(key, f"`replicate {command}` reads the store: filter with {flag} "
                                   f"({key}= picks a {key} config)")
    return compose_store_config(parsed, command)


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """The Hydra overrides and ``--json`` every job-running command takes."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=faster_rcnn seed=1")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_store_overrides(parser: argparse.ArgumentParser) -> None:
    """The overrides a read command takes: only where its store is."""
    parser.add_argument("overrides", nargs="*", help="where the store is, e.g. results_dir=... store=postgresql")


def echo_for(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines go to stderr with --json, so stdout stays parseable."""
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    return lambda line: print(line, file=stream, flush=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_outputs(result: Any) -> None:
    """Where a run's results landed besides the store: the HTML report and the W&B files."""
    if result.report:
        print(f"report: {result.report}")
    if result.logged:
        print(result.logged)


def int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(flag, f"{text!r}: give at least one non-negative integer")
    return values
