# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/progbench demo --out demo-output

# Three xdist workers on CI's 2 cores (tests wait on subprocesses, SLURM and disk about half the
# time); xdist_group keeps the SLURM tests, and each module whose fixtures build trees, on one.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup

# The quick set (about 90 s of tests on 2 cores): everything not marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check progbench tests benchmarks
	$(BIN)/ruff format --check progbench tests benchmarks

# mypy (settings in pyproject.toml); fails when any file has more errors than
# scripts/mypy-baseline.json allows. `python scripts/typecheck.py --update` shrinks the baseline.
typecheck: $(STAMP)
	$(BIN)/python scripts/typecheck.py

format: $(STAMP)
	$(BIN)/ruff format progbench tests benchmarks
	$(BIN)/ruff check --fix progbench tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache
