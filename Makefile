# Two entry points: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# Second Keras backend the model tests run on (torch 2.13.0 is a local CPU wheel).
SECOND_BACKEND ?= torch

.PHONY: demo test test-fast test-backend clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) -e ".[test,torch]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import zspace, keras, torch, pytest" 
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/zspace demo --out demo-runs

test: $(VENV)/.installed
	$(PY) -m pytest -q
	KERAS_BACKEND=$(SECOND_BACKEND) $(PY) -m pytest -q -m backend

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo-runs .pytest_cache
