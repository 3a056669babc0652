# AlexNet Lab. `make install` then `make test`; `make help` lists the rest.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: help install test test-slow test-all lint format train report fashion-mnist study recipe-check bench bench-quick gpu-check docs docs-serve docs-check clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

install: $(PY) ## create .venv and install the project (editable) with its dev, docs, export, stream and dashboard tools
	$(PY) -m pip install -e '.[dev,docs,export,stream,dashboards]'

test: ## the test suite: offline, CPU only (slow tests excluded)
	WANDB_MODE=offline $(PY) -m pytest

test-slow: ## only the tests marked slow
	WANDB_MODE=offline $(PY) -m pytest -m slow

test-all: ## every test
	WANDB_MODE=offline $(PY) -m pytest -m 'slow or not slow'

lint: ## ruff lint and format check, and the import layers (import-linter contracts in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

train: ## the main job: small AlexNet on the built-in Fashion-MNIST slice, CPU
	$(PY) src/train.py

# The study's scale: cpu (the CPU protocol, ~4.5 h on 2 cores) or gpu (all of Fashion-MNIST at
# full width, and CIFAR-10 when its files are under data/). See experiments/README.md.
STUDY_SCALE ?= cpu
CIFAR10_FILES := $(wildcard data/cifar10/train data/downloads/cifar-10-batches-py)

report: ## rebuild the studies' tables, figures and claims table from their runs (STUDY_SCALE=cpu|gpu)
	$(PY) src/report.py --scale $(STUDY_SCALE)
	@if [ "$(STUDY_SCALE)" = gpu ]; then $(PY) src/report.py --scale gpu-cifar10; fi
	@if [ "$(STUDY_SCALE)" = cpu ]; then $(PY) src/report.py --scale cpu-24ep; fi

# The studies read Fashion-MNIST from its Debian package when it is installed (offline),
# else torchvision downloads it.
FASHION_MNIST := /usr/share/datasets/fashion-mnist

fashion-mnist: ## install Fashion-MNIST's Debian package (dataset-fashion-mnist) unless it is there
	@if [ -d $(FASHION_MNIST) ]; then echo "Fashion-MNIST: $(FASHION_MNIST)"; \
	elif command -v apt-get > /dev/null; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		{ $$sudo apt-get update -qq && $$sudo apt-get install -y -qq dataset-fashion-mnist; } \
		|| echo "Could not install dataset-fashion-mnist: torchvision will download Fashion-MNIST."; \
	else echo "No apt-get: torchvision will download Fashion-MNIST (needs internet)."; fi

study: fashion-mnist ## run every study, skipping recorded jobs, then make report (STUDY_SCALE=cpu|gpu)
	STUDY_SCALE=$(STUDY_SCALE) experiments/run_all.sh
	@if [ "$(STUDY_SCALE)" = gpu ] && [ -n "$(CIFAR10_FILES)" ]; then \
		STUDY_SCALE=gpu-cifar10 experiments/run_all.sh; fi
	$(MAKE) report STUDY_SCALE=$(STUDY_SCALE)

recipe-check: ## do the presets leave chance on real images? table of init x input scale (~20 min, CPU)
	$(PY) src/recipe_check.py

bench: ## input pipeline, prepare, training loop and model steps as ratios (a few minutes)
	$(PY) src/bench.py

bench-page: ## rewrite docs/performance.md's bench tables from the runs in docs/bench-records/
	$(PY) -m alexnet_lab.bench.records

bench-quick: ## every benchmark at toy sizes, well under a minute (the tests run it)
	$(PY) src/bench.py --quick

gpu-check: ## on a CUDA GPU: every GPU path run and measured, one table (< 5 min); else one line
	$(PY) src/gpu_check.py

# The manual as a site. MkDocs' plugins print a long notice about a future MkDocs 2 on
# every build; these two variables silence it (they change nothing else).
MKDOCS := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs

docs: ## build the docs site into site/ (--strict: a warning fails the build)
	$(MKDOCS) build --strict

docs-serve: ## serve the docs site with live reload on http://127.0.0.1:8000
	$(MKDOCS) serve

docs-check: docs ## open the built site in headless Chromium: console errors, images, links, search; screenshots
	$(PY) docs_build/check_site.py site --shots outputs/docs-check

clean: ## remove run outputs and caches (not .venv, not data/)
	rm -rf outputs multirun wandb site .pytest_cache .ruff_cache
