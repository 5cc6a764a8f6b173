# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Every package CI installs, pinned with hashes; `make lock` refreshes it (README: "Dependencies").
LOCK := requirements.lock

.PHONY: run test lint lock bench bench-instructions package venv system-deps key migrate clean

venv: $(VENV)/.installed

$(VENV)/.installed: $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# --no-deps: the lock already names every package (uv resolved them all), so pip installs exactly it. Resolving
	@# again in hash mode refuses a dependency asked for with extras once a newer release is on the index
	@# (httpx[http2] from microsoft-kiota-http, when httpx 0.29 appeared); `pip check` still proves the set whole.
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r $(LOCK)
	@out=$$($(PY) -m pip check) || { echo "$$out"; exit 1; }
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# Re-resolve the lock from pyproject.toml, keeping current pins; `make lock LOCK_ARGS=--upgrade` moves them on.
# setuptools is locked too, since the editable install builds without isolation. requirements-runtime.lock is the
# same pins without the test tools, for the container image.
lock: venv
	@printf 'setuptools>=68\n' | $(VENV)/bin/uv pip compile pyproject.toml - --extra dev --generate-hashes \
		--python-version 3.11 --custom-compile-command 'make lock' --quiet $(LOCK_ARGS) -o $(LOCK)
	@$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--custom-compile-command 'make lock' --quiet -c $(LOCK) -o requirements-runtime.lock

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
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

# Issue 17 and 18 figures and targets in one run (about 20 minutes); quick: `make bench BENCH_TURNS=30 BENCH_REPEATS=1`.
bench: venv system-deps
	@$(PY) -m tests.bench

# Instructions the app executes per turn under callgrind, to compare code with code (README: "Performance");
# `make bench-instructions BENCH_BASE=<revision>` puts that revision beside this checkout. About fifteen minutes.
bench-instructions: venv system-deps
	@WITH_VALGRIND=1 bash scripts/system-deps.sh
	@$(PY) -m tests.bench_instructions

package: venv
	@$(PY) -m manifest.package

key: venv
	@$(PY) -c "from storage.crypto import new_key_text; print('ESAFETY_DATA_KEY=' + new_key_text())"
	@$(PY) -c "import secrets; print('ESAFETY_AUDIT_KEY=' + secrets.token_urlsafe(32))"

clean:
	rm -rf var/ .pytest_cache .ruff_cache .mypy_cache
