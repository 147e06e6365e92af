# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test lint unit bench fixtures clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,cluster]'
	touch $(STAMP)

# snarkjs, the Groth16 prover the zk rung drives, pinned in package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: setup
	$(PY) -m cli.demo

test: setup lint unit

lint: setup
	$(VENV)/bin/ruff check receipts cli circuits tests fixtures bench
	$(VENV)/bin/ruff format --check receipts cli circuits tests fixtures bench
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -n 2 --dist loadgroup

bench: setup
	$(PY) bench/run.py

fixtures: setup
	$(PY) fixtures/generate.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache build *.egg-info
