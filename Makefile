# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint unit bench fixtures clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(PY) -m cli.demo

test: setup lint unit

lint: setup
	$(VENV)/bin/ruff check receipts cli tests fixtures bench
	$(VENV)/bin/ruff format --check receipts cli tests fixtures bench
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -n 2 --dist loadgroup

bench: setup
	$(PY) bench/run.py

fixtures: setup
	$(PY) fixtures/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
