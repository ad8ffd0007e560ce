"""The product needs nothing outside its repository: no code, config, chart or document points to
the reference folder next to the project (only tests read it, through tests/conftest.py, and
skip cleanly without it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What ships or documents the product; tests/ is left out (its one pointer is tests/conftest.py).
PRODUCT = ("replicate", "models", "examples", "conf", "charts", "docs", "benchmarks", "README.md", "Dockerfile",
           ".dockerignore", "pyproject.toml", "Makefile", ".ci")
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".cfg", ".tpl", ".json", ".txt", ".html", ""}
# A path into the folder beside the project, however it is spelt.
OUTSIDE = re.compile(r"\.\./shared|shared/(reference|design)|[\"']shared[\"']\s*/|\bdesign\.md")


def product_files() -> list[Path]:
    files = []
    for name in PRODUCT:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    return files


def test_no_product_file_points_outside_the_repository():
    files = product_files()
    assert any(p.parent.name == "cfg" for p in files)  # the packaged cfgs are scanned too
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("text", ["../shared/reference/darknet", 'ROOT / ".." / "shared" / "reference"',
                                  "see shared/design.md"])
def test_the_pattern_catches_each_spelling(text):
    assert OUTSIDE.search(text)


def test_the_architecture_document_is_in_the_repository():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for section in ("## The spine", "## Tiers", "## Verdicts", "## Failure classes", "## Environment fingerprint",
                    "## Store", "## Cluster"):
        assert section in doc
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
