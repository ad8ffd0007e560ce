"""Reading a JSON file someone else wrote (a detections file, a spool record) within bounds.

``json.load`` has no limit of its own: a 100000-deep ``[[[...]]]`` ends in a RecursionError
traceback, and a file of any size is read whole. Here each is a :class:`DataError` naming the
file: over ``max_bytes`` (checked before reading), nested deeper than ``max_depth`` (or than the
parser can go), not UTF-8, not JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from replicate.errors import DataError

# Deep enough for any record the product writes (a config is < 15 levels), far below the
# interpreter's recursion limit.
MAX_DEPTH = 64


def read_json(path: str | Path, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed content of ``path``.

    Raises:
        DataError: the file is missing, a folder, unreadable, over ``max_bytes``, not UTF-8 JSON,
            or nested deeper than ``max_depth``; the message names the file.
    """
    name = str(path)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            if size > max_bytes:
                raise DataError(name, f"{size} bytes, over the {max_bytes}-byte limit for this file")
            handle.seek(0)
            data = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(name, "file not found") from None
    except IsADirectoryError:
        raise DataError(name, "is a directory, expected a JSON file") from None
    except RecursionError:
        raise DataError(name, f"JSON nested deeper than {max_depth} levels (past the parser's "
                              f"~{sys.getrecursionlimit()})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(name, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(name, f"cannot read ({exc.strerror})") from None
    if depth(data) > max_depth:
        raise DataError(name, f"JSON nested deeper than {max_depth} levels")
    return data


def depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
