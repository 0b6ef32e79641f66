# `make demo`: install into .venv and run the embedded GRPO demo.  `make test`: install and run the tests.
# torch is pinned in the same pip command as everything else, so a CPU machine keeps the CPU wheel.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PACKAGES := -e packages/core -e packages/backend-cuda -e packages/backend-rocm -e packages/sft
STAMP := $(VENV)/.tandem-installed
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test

$(STAMP): pyproject.toml packages/*/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q $(TORCH) $(PACKAGES) --group dev
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m core.main

test: install
	$(PY) -m pytest -q
