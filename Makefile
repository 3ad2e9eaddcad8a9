# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/progbench demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check progbench tests benchmarks
	$(BIN)/ruff format --check progbench tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format progbench tests benchmarks
	$(BIN)/ruff check --fix progbench tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache
