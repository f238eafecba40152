# Two entry points: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The other Keras backends the model tests (-m backend) run on (torch 2.13.0 is a local CPU wheel).
OTHER_BACKENDS ?= torch jax

.PHONY: demo test test-fast clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) -e ".[test,torch,jax]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import zspace, keras, torch, jax, pytest"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/zspace demo --out demo-runs

test: $(VENV)/.installed
	$(PY) -m pytest -q
	for backend in $(OTHER_BACKENDS); do KERAS_BACKEND=$$backend $(PY) -m pytest -q -m backend || exit 1; done

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo-runs .pytest_cache
