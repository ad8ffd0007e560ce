"""The one rule for a file or folder name made from data (a suite id, a job id, a model name read
from the store or a spool file): a single safe path component, checked where the path is made.

A stored suite id of ``..`` must not make ``reports/..`` (results_dir itself), nor ``a/b`` a
subfolder: characters outside letters, digits, ``.``, ``_`` and ``-`` become ``_``, and a name
that is then only dots (``.``, ``..``) or empty is refused, never turned into some other name that
could collide with a real one.
"""

from __future__ import annotations

import re

from replicate.errors import DataError

UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Well under every file system's 255-byte limit, room left for a prefix and a suffix.
MAX_COMPONENT = 200


def path_component(name: object, what: str) -> str:
    """``name`` as one path component: unsafe characters replaced by ``_``.

    Raises:
        DataError: ``name`` is empty, only dots, or longer than :data:`MAX_COMPONENT`; the
            message names ``what`` (e.g. "suite id") and the name, repr-escaped.
    """
    text = UNSAFE.sub("_", str(name))
    if not text.strip(".") or len(text) > MAX_COMPONENT:
        raise DataError(what, f"{str(name)[:MAX_COMPONENT + 1]!r} cannot name a file or folder (empty, only dots, "
                              f"or over {MAX_COMPONENT} characters)")
    return text
