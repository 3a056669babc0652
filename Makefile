# AlexNet Lab. `make install` then `make test`; `make help` lists the rest.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: help install test test-slow test-all lint format train report study bench bench-quick clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

install: $(PY) ## create .venv and install the project (editable) with its dev and export tools
	$(PY) -m pip install -e '.[dev,export]'

test: ## the test suite: offline, CPU only (slow tests excluded)
	WANDB_MODE=offline $(PY) -m pytest

test-slow: ## only the tests marked slow
	WANDB_MODE=offline $(PY) -m pytest -m slow

test-all: ## every test
	WANDB_MODE=offline $(PY) -m pytest -m 'slow or not slow'

lint: ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

train: ## the main job: small AlexNet on the built-in Fashion-MNIST slice, CPU
	$(PY) src/train.py

report: ## rebuild every study's tables and figures from experiments/*/runs (see experiments/README.md)
	$(PY) src/report.py

study: ## re-run every ablation study on CPU (about an hour), then make report
	experiments/run_all.sh
	$(PY) src/report.py

bench: ## input pipeline, prepare, training loop and model steps as ratios (a few minutes)
	$(PY) src/bench.py

bench-quick: ## every benchmark at toy sizes, well under a minute (the tests run it)
	$(PY) src/bench.py --quick

clean: ## remove run outputs and caches (not .venv, not data/)
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache
