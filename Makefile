# forgetflow: `make demo` runs the main job on the embedded defaults; `make test` runs the test suite.
# Both create (or reuse) .venv and install everything the project needs, Debian packages included.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.forgetflow-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Telemetry off for every tool (the CLI sets the same defaults; prefect.toml and .dvc/config too).
export PREFECT_SERVER_ANALYTICS_ENABLED = false
export DO_NOT_TRACK = true
export MLFLOW_DISABLE_TELEMETRY = true
export DVC_NO_ANALYTICS = 1
export HF_HUB_OFFLINE = 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS = 90

.PHONY: demo test test-fast test-gpu venv system-deps postgres mlflow-ui clean-state help

help:
	@echo "make demo   - prepare Fashion-MNIST, train the original, file sample requests, run one deletion batch"
	@echo "make test   - run the whole test suite"
	@echo "make test-fast - the fast lane while developing: every test not marked slow"
	@echo "make test-gpu  - the CUDA tests (skipped where there is no CUDA device)"
	@echo "make mlflow-ui - open the MLflow UI on the local store (http://127.0.0.1:5000)"

$(STAMP): requirements.txt lock.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt -c lock.txt
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP)

# Debian packages: Fashion-MNIST for the demo and benchmarks, PostgreSQL for the server-path tests.
system-deps:
	@missing=""; \
	[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	command -v pg_ctlcluster >/dev/null 2>&1 || [ -x /usr/lib/postgresql/*/bin/initdb ] || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: venv system-deps
	$(VENV)/bin/forgetflow demo

test: venv system-deps
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

test-gpu: venv
	$(PY) -m pytest -q -rs -m gpu

mlflow-ui: venv
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --default-artifact-root mlflow/artifacts --host 127.0.0.1 --port 5000

clean-state:
	rm -rf state artifacts mlflow/mlflow.db mlflow/artifacts data data.dvc dvc.lock
