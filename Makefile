# chanmusic: `make demo` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# laion-clap's own loader lives in its own venv: laion-clap 1.1.7 pins numpy<2 for the whole environment
LAION_VENV ?= .venv-laion
LAION_STAMP := $(LAION_VENV)/.installed
# the suite runs in TEST_JOBS processes (pytest-xdist), a test module per process: 2 cores here, ~6 min
TEST_JOBS ?= 2

.PHONY: install demo test test-fast test-laion wheel-smoke bench bench-gpu compare browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(TEST_STAMP)

$(LAION_STAMP): pyproject.toml
	@test -x $(LAION_VENV)/bin/python || $(PYTHON) -m venv $(LAION_VENV)
	$(LAION_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LAION_VENV)/bin/python -m pip install --quiet -e ".[laion,test]"
	@touch $(LAION_STAMP)

demo: install  # the runner's demo profile: demo data if absent, every stage once, the report (docs: README)
	$(PY) -m chanmusic.cli compare --profile demo --out demo_out

test: $(TEST_STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow"

test-laion: $(LAION_STAMP)  # `pip install .[laion]` still reads laion-clap .pt files (numpy<2 there)
	$(LAION_VENV)/bin/python -m pytest -q -m laion tests/test_audio.py tests/test_clap_convert.py

wheel-smoke: install  # the built wheel in a fresh venv outside the checkout: --help, --version, the demo's plan
	bash .ci/wheel-smoke.sh $(VENV)

bench: install
	$(PY) benchmarks/run.py

bench-gpu: install  # bf16 + torch.compile at the paper's sizes on CUDA; tiny and eager without CUDA
	$(PY) benchmarks/gpu_bench.py

compare: install
	$(PY) -m chanmusic.cli compare --config experiments/paper.yaml --quick

browser:  # Debian's Chromium for the report test (CI runs this too)
	bash .ci/setup-browser.sh

clean:
	rm -rf demo_out .pytest_cache lightning_logs build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
