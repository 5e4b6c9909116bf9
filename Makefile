# Every target sets up what it needs: a .venv with the package and its extras, reused on later runs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint fmt clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (syncd needs Python >= 3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/syncd demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not bench" tests

bench: $(STAMP)
	$(BIN)/python -m pytest -m bench -s -p no:xdist tests/bench

lint: $(STAMP)
	$(BIN)/ruff check syncd tests
	$(BIN)/ruff format --check syncd tests
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format syncd tests
	$(BIN)/ruff check --fix syncd tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
