# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run test lint bench package venv system-deps key migrate clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

migrate: venv
	@ESAFETY_DEV=1 $(PY) app.py migrate

run: venv
	@bash scripts/run-dev.sh

test: venv system-deps
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	@$(PY) -m ruff check .

bench: venv system-deps
	@$(PY) -m tests.bench
	@$(PY) -m tests.bench_digest

package: venv
	@$(PY) -m manifest.package

key: venv
	@$(PY) -c "from storage.crypto import new_key_text; print('ESAFETY_DATA_KEY=' + new_key_text())"
	@$(PY) -c "import secrets; print('ESAFETY_AUDIT_KEY=' + secrets.token_urlsafe(32))"

clean:
	rm -rf var/ .pytest_cache .ruff_cache
