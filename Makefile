# Shopfloor — two commands on a fresh machine:
#   make demo   runs the whole demo plant on the embedded SQLite store
#   make test   installs what the tests need and runs them (real InfluxDB/VictoriaMetrics when it can)
# Everything lands in .venv; nothing is installed system-wide except the test servers (root + apt only).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_CONFIG ?= $(shell test -f examples/qijiang-plant.yaml && echo examples/qijiang-plant.yaml || echo examples/minimal-plant.yaml)
PYTEST_ARGS ?=

.PHONY: demo test lint bench servers schema clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Shopfloor needs Python >= 3.11; found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shopfloor demo --config $(DEMO_CONFIG)

servers:
	@bash .ci/install-servers

test: $(STAMP) servers
	$(PY) -m pytest -rs $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_import_graph.py

bench: $(STAMP) servers
	$(PY) benchmarks/historian_write.py

schema: $(STAMP)
	$(VENV)/bin/shopfloor config schema -o docs/plant-config.schema.json

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
