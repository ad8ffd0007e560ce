"""Subcommands of the ``replicate`` CLI that live in their own module.

Each module has ``add_parser(subparsers)`` and ``run(args) -> int``; the CLI imports them lazily
and turns their typed errors into exit codes, like its other commands.
"""

from typing import Any, Sequence

# What a read command filters by, as a flag: ``suite=`` and ``model=`` pick config groups (a
# suite config, a model config) and must not be mistaken for a suite id or a history filter.
READ_FLAGS = {"suite": "--suite-id ID", "model": "--model NAME"}


def store_config(command: str, overrides: Sequence[str]) -> Any:
    """The config a read command opens its store with (results_dir, store=...).

    Raises:
        ConfigError: ``suite=`` or ``model=`` given: the message names the flag meant.
    """
    from replicate.config.compose import compose_config
    from replicate.config.overrides import Overrides
    from replicate.errors import ConfigError

    parsed = Overrides.parse(overrides)
    for key, flag in READ_FLAGS.items():
        if parsed.has(key):
            raise ConfigError(key, f"`replicate {command}` reads the store: filter with {flag} "
                                   f"({key}= picks a {key} config)")
    return compose_config(parsed.as_list())
