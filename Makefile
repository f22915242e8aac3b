# chanmusic: `make demo` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench compare browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

demo: install  # the runner's demo profile: demo data if absent, every stage once, the report (docs: README)
	$(PY) -m chanmusic.cli compare --profile demo --out demo_out

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/run.py

compare: install
	$(PY) -m chanmusic.cli compare --config experiments/paper.yaml --quick

browser:  # Debian's Chromium for the report test (CI runs this too)
	bash .ci/setup-browser.sh

clean:
	rm -rf demo_out .pytest_cache lightning_logs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
