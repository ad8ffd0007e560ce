"""What code a job's result depends on, as three hashes: the model's own code, the harness's code
and the installed packages.

The config hash says what a job was asked to compute; these say what computed it. A re-run of a
suite id skips a finished job only when its record holds the same three hashes (an edited model
file, a changed loss in the harness or another torch build runs it again), and "what changed since
the last PASS" lists them. Files are hashed, not git objects: the image has no ``.git``.

The model's code is the module of its registered Task class and every module it imports (and their
packages' ``__init__``), at any depth, from the installed zoos' packages (a lab's Task may build
on another zoo's families; replicate/zoo/installed.py) or the Task's own top-level package, plus
the data files of the family folders visited (Darknet cfgs).
Imports are read from the source (``ast``), function-level ones included, so nothing is imported
to hash it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

import replicate

HARNESS_ROOT = Path(replicate.__file__).resolve().parent

# The keys a job's environment record holds them under (history.what_changed compares them).
KEYS = ("model_code", "harness_code", "packages_hash")
_DIGITS = 16   # hex digits kept: the record stays readable, a collision stays out of reach


def files_hash(files: dict[str, Path]) -> str:
    """One hash over the files' labels (a module name, or a folder's module and a relative path:
    the same code hashes the same wherever it is installed) and bytes, in sorted order."""
    digest = hashlib.sha256()
    for label in sorted(files):
        digest.update(label.encode() + b"\0")
        digest.update(hashlib.sha256(files[label].read_bytes()).digest())
    return digest.hexdigest()[:_DIGITS]


def _module_file(name: str) -> Optional[Path]:
    """The source file of module ``name`` without importing it; None when there is none."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name ``path`` (module ``module``) imports, including ``from a import b`` as
    ``a.b`` (b may be a submodule), relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _zoo_packages(module: str) -> set[str]:
    """The packages whose modules count as model code: every installed zoo's, and the Task's own
    top-level package (a Task defined outside any zoo)."""
    from replicate.zoo.installed import installed_zoos

    return {module.split(".")[0], *(zoo.spec.package for zoo in installed_zoos())}


def model_code_files(module: str) -> dict[str, Path]:
    """The files of the model whose Task lives in ``module`` (see the module docstring), by label."""
    zoos = _zoo_packages(module)
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not any(name == z or name.startswith(z + ".") for z in zoos):
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_imported_names(path, name))
        todo.append(name.rpartition(".")[0])   # importing a module runs its package's __init__
    files = dict(seen)
    for name, path in seen.items():
        folder, package = path.parent, name if path.name == "__init__.py" else name.rpartition(".")[0]
        if package in zoos or not package:
            continue   # a zoo's own folder: its other files belong to other models
        files.update({f"{package}/{p.relative_to(folder).as_posix()}": p for p in folder.rglob("*")
                      if p.is_file() and p.suffix not in (".py", ".pyc")})
    return files


def harness_files() -> dict[str, Path]:
    """Every source file of the harness (``replicate/``), by label."""
    return {p.relative_to(HARNESS_ROOT).as_posix(): p for p in HARNESS_ROOT.rglob("*.py")}


@lru_cache(maxsize=None)
def _model_hash(module: str) -> str:
    return files_hash(model_code_files(module))


@lru_cache(maxsize=1)
def _harness_hash() -> str:
    return files_hash(harness_files())


@lru_cache(maxsize=1)
def packages_hash() -> str:
    """The installed distributions and their versions (every one: a transitive pin counts too)."""
    pins = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in importlib.metadata.distributions()})
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:_DIGITS]


def code_fingerprint(task_module: Optional[str]) -> dict[str, Optional[str]]:
    """The three hashes of a job whose Task lives in ``task_module`` (None: no implementation,
    so no model code)."""
    return {"model_code": _model_hash(task_module) if task_module else None,
            "harness_code": _harness_hash(), "packages_hash": packages_hash()}


def job_code(model: str, framework: str) -> dict[str, Optional[str]]:
    """The hashes of the code that computes a job of ``model`` in ``framework``."""
    from replicate.errors import ConfigError
    from replicate.zoo.registry import get_task_class

    try:
        module: Optional[str] = get_task_class(model, framework).__module__
    except ConfigError:   # a model config without an implementation (the job is an ERROR row)
        module = None
    return code_fingerprint(module)


def code_changed_since(row: Optional[Mapping[str, Any]], model: str, framework: str) -> Optional[str]:
    """What of the code that computes a job of ``model`` in ``framework`` differs from the code
    its stored ``row`` recorded (e.g. "model code, harness code"; every part for a row recorded
    before the hashes were), or None when nothing did: the skip of a finished job is keyed by it."""
    recorded = (row or {}).get("environment") or {}
    changed = [key for key, value in job_code(model, framework).items() if recorded.get(key) != value]
    return ", ".join(key.replace("_", " ") for key in changed) or None


def forget() -> None:
    """Drop the cached hashes (a long-lived process that watches files change)."""
    _model_hash.cache_clear()
    _harness_hash.cache_clear()
    packages_hash.cache_clear()
