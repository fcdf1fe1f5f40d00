# DeepAttraction: `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install demo test test-fast test-e2e golden clean

# One pinned install, the same one the container image runs (see Dockerfile).
# tfx and ml-pipelines-sdk 1.16 declare python<3.11; everything they need has cp311 wheels.
$(STAMP): requirements.txt setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PIP_IGNORE_REQUIRES_PYTHON=1 $(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/deepattraction demo --workdir build/demo

test: install
	$(BIN)/python -m pytest -q -ra

test-fast: install
	$(BIN)/python -m pytest -q -ra -m "not e2e"

test-e2e: install
	$(BIN)/python -m pytest -q -ra -m e2e

# Regenerates the golden KFP spec after an intended pipeline change; review the diff.
golden: install
	$(BIN)/python -m deepattraction.pipeline.kubeflow_v2_runner --write-golden

clean:
	rm -rf build $(VENV) *.egg-info
