# Every target sets up what it needs: a .venv with the package and its extras, reused on later runs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint fmt clean wheelhouse image

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

# The container image (deploy/Containerfile) can take syncd's dependencies (and its build backend) from a
# wheelhouse made here, so the build neither compiles nor reaches PyPI: CPython 3.11 wheels for the base's
# architecture and a glibc no newer than 2.36 (Debian bookworm, python:3.11-slim).
WHEELHOUSE := build/wheelhouse
ARCH := $(shell uname -m)
WHEEL_PLATFORMS := $(foreach m,36 35 34 33 32 31 30 29 28 27 26 25 24 23 22 21 20 19 18 17,\
	--platform manylinux_2_$(m)_$(ARCH)) --platform manylinux2014_$(ARCH)
BUILD_REQUIRES = $(shell $(BIN)/python -c 'import shlex, tomllib; print(*map(shlex.quote, tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
ENGINE ?= podman
IMAGE_FLAGS ?=

wheelhouse: $(WHEELHOUSE)/.complete

# Made again when pyproject.toml changes, as the venv is.
$(WHEELHOUSE)/.complete: pyproject.toml $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip download --quiet --dest $(WHEELHOUSE) --only-binary=:all: --python-version 3.11 \
		--implementation cp --abi cp311 $(WHEEL_PLATFORMS) . $(BUILD_REQUIRES)
	@touch $@

# --no-cache: the layer cache cannot see a change in the (mounted, not copied) wheelhouse. Podman needs
# --format docker to keep the HEALTHCHECK; Docker has no such option. IMAGE_FLAGS adds build options
# (e.g. --build-arg PYTHON_IMAGE=...).
image: wheelhouse
	$(ENGINE) build --no-cache $(if $(findstring podman,$(ENGINE)),--format docker) $(IMAGE_FLAGS) \
		--build-arg WHEELHOUSE=$(WHEELHOUSE) -f deploy/Containerfile -t syncd .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
