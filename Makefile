# The README's two commands: `make run` (smoke suite) and `make test` (the test suite);
# `make selftest` measures the benchmark's power (minutes to an hour).
# Each creates .venv with Python 3.11 and the pinned dependencies on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint test-slow selftest bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml models/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,tensorflow]' -e ./models   # the harness and the lab's zoo (models/)
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/replicate suite suite=smoke $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# Lint and types (ruff: pyflakes, pycodestyle, import order; mypy over the product; settings in
# pyproject.toml). .ci/run runs it.
lint: $(STAMP)
	$(VENV)/bin/ruff check replicate models tests benchmarks examples
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

# The benchmark's power: every defect of the catalogue injected, plus a clean control per model
# (replicate/selftest.py); rows in results/zoo.db and the report's power page.
selftest: $(STAMP)
	$(VENV)/bin/replicate selftest $(ARGS)

# Performance: every benchmark's figures against their targets (benchmarks/, python -m benchmarks);
# exit 1 when one misses. ARGS="--quick" checks that they run; ARGS="--markdown" prints the README table.
bench: $(STAMP)
	$(PY) -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) results
