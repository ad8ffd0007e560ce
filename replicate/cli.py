"""The `replicate` command: a thin layer over plain functions; Hydra overrides follow the subcommand.

Exit codes: 0 success (suite: every verdict PASS), 1 a verdict is not PASS (MEASURED, a job with
nothing to compare with, included) or the harness failed, 2 bad input (config key, file,
resource) with a one-line message naming it, 130 interrupted, 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from types import ModuleType
from typing import Any, Sequence

from replicate.errors import Terminated, UserInputError, ZooError

# The subcommands, one module each under replicate/commands/, in the order `--help` lists them.
COMMANDS = ("run", "suite", "check", "models", "history", "report", "cost", "calibrate", "selftest", "darknet",
            "evaluate", "k8s")


def _command_modules() -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"replicate.commands.{name}") for name in COMMANDS}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2 (a UserInputError), as every other bad input;
    argparse's own prints the usage first. ``--help`` still prints the usage."""

    def error(self, message: str) -> Any:
        raise UserInputError(f"{self.prog}: {message}")


def _parser(modules: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="replicate", description="Replicate-and-evaluate a model zoo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in modules.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    modules = _command_modules()
    parser = _parser(modules)
    try:
        # Overrides may come before or after flags (argparse stops collecting positionals at a flag).
        args, extra = parser.parse_known_args(argv)
        unknown = [e for e in extra if e.startswith("-") or not hasattr(args, "overrides")]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if extra:
        args.overrides = [*args.overrides, *extra]
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(modules[args.command].run(args))
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # A library may catch the Terminated our handler raised and raise a plain KeyboardInterrupt
        # of its own (Ray's wait does): the flag still says which signal it was.
        if isinstance(exc, Terminated) or _TERMINATED.is_set():
            print("terminated (SIGTERM): finished jobs are in the store and running ones checkpointed; re-run the "
                  "same suite id to resume", file=sys.stderr)
            return 143
        print("interrupted: finished jobs are in the store; re-run the same suite id to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


_TERMINATED = threading.Event()


def _terminate(signum: int, frame: Any) -> None:
    _TERMINATED.set()
    raise Terminated()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
