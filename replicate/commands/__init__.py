"""Subcommands of the ``replicate`` CLI that live in their own module.

Each module has ``add_parser(subparsers)`` and ``run(args) -> int``; the CLI imports them lazily
and turns their typed errors into exit codes, like its other commands.
"""
