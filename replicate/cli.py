"""The `replicate` command: a thin layer over plain functions; Hydra overrides follow the subcommand.

Exit codes: 0 success (suite: every verdict PASS), 1 a verdict is not PASS (MEASURED, a job with
nothing to compare with, included) or the harness failed, 2 bad input (config key, file,
resource) with a one-line message naming it, 130 interrupted, 143 terminated (SIGTERM), 141 the
reader of stdout went away (``replicate history --json | head -1``; as a program SIGPIPE ends).

Every error is one redacted line (replicate/redact.py ``one_line``): an exception no command
expected is ``error: internal: TYPE: message (please report; details in FILE)``, exit 1, its
traceback in FILE (``results_dir/logs/`` when the command was given one, else the temp folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from replicate.errors import ConfigError, Terminated, UserInputError, ZooError
from replicate.redact import one_line, redact_text

# What a process killed by SIGPIPE exits with (128 + 13), which a shell's pipefail reports.
BROKEN_PIPE = 141

# The subcommands, one module each under replicate/commands/, in the order `--help` lists them;
# an installed zoo may add its own after them (its ZooSpec.commands, e.g. `darknet`).
COMMANDS = ("run", "suite", "check", "models", "history", "report", "cost", "reference", "calibrate", "selftest",
            "evaluate", "k8s")


def _command_modules() -> dict[str, ModuleType]:
    from replicate.zoo.installed import installed_zoos

    modules = {name: importlib.import_module(f"replicate.commands.{name}") for name in COMMANDS}
    for zoo in installed_zoos():
        for path in zoo.spec.commands:
            name = path.rsplit(".", 1)[-1]
            if name in modules:
                raise ConfigError(f"zoo {zoo.name}", f"command {name!r} ({path}) is already a command")
            modules[name] = importlib.import_module(path)
    return modules


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
    try:
        code = _main(argv)
        sys.stdout.flush()   # a reader gone away fails here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The recipe of Python's docs (signal module, "Note on SIGPIPE"): stdout to devnull, so
        # the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    try:
        modules = _command_modules()
        parser = _parser(modules)
        # Overrides may come before or after flags (argparse stops collecting positionals at a flag).
        args, extra = parser.parse_known_args(argv)
        unknown = [e for e in extra if e.startswith("-") or not hasattr(args, "overrides")]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except UserInputError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    if extra:
        args.overrides = [*args.overrides, *extra]
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(modules[args.command].run(args))
    except ZooError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # A library may catch the Terminated our handler raised and raise a plain KeyboardInterrupt
        # of its own (Ray's wait does): the flag still says which signal it was.
        if isinstance(exc, Terminated) or _TERMINATED.is_set():
            print("terminated (SIGTERM): finished jobs are in the store, running ones stopped at a checkpointed "
                  "step; re-run the same suite id to resume", file=sys.stderr)
            return 143
        print("interrupted: finished jobs are in the store; re-run the same suite id to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:   # the last resort: a bug, said in one line, its traceback kept
        log = _internal_log(exc, getattr(args, "overrides", []))
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: internal: {type(exc).__name__}: {one_line(first)} (please report; details in {log})",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _internal_log(exc: BaseException, overrides: Sequence[str]) -> Path:
    """Write ``exc``'s traceback, redacted, to ``results_dir/logs/`` (when results_dir is a
    folder), else to ``zoo-replicate/`` in the temp folder; the file's path."""
    name = f"internal-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}.log"
    text = redact_text("".join(traceback.format_exception(exc)))
    results = _results_dir(overrides)
    for folder in ([results / "logs"] if results else []) + [Path(tempfile.gettempdir()) / "zoo-replicate"]:
        try:
            folder.mkdir(exist_ok=True)   # never its parents: results_dir exists, so does the temp folder
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return Path(os.devnull)


def _results_dir(overrides: Sequence[str]) -> Path | None:
    """The results_dir the command was given (the config's default ``results`` otherwise), when
    it is a folder: the config itself may be what failed."""
    given = [item.split("=", 1)[1] for item in overrides if item.startswith("results_dir=")]
    path = Path(given[-1] if given else "results").expanduser()
    return path if str(path) not in ("", ".") and path.is_dir() else None


_TERMINATED = threading.Event()


def _terminate(signum: int, frame: Any) -> None:
    _TERMINATED.set()
    raise Terminated()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
