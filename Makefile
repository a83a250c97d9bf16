# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow
export PYTHONHASHSEED ?= 0

.PHONY: setup test lint format demo bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,dev,spark]'
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Two pytest workers on the two cores: most tests wait on process starts, servers and
# single-threaded pandas, so two in parallel finish sooner. Each test file stays on one
# worker (its module fixtures, e.g. a served model, start once), handed out in collection
# order, which tests/conftest.py starts with the longest files. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m forecast demo

# The measurements recorded in benchmarks/RESULTS.md (minutes; not part of `make test`).
bench: $(STAMP)
	$(PY) -m benchmarks.windowing
	$(PY) -m benchmarks.accuracy.shipped
	$(PY) -m benchmarks.accuracy
	$(PY) -m benchmarks.serving
	$(PY) -m benchmarks.spark

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
