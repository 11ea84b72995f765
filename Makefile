# The two commands of the README: `make run` and `make test`. Both build .venv when missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest venv clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/kairos-sync demo --workdir var

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf var/* .mypy_cache .ruff_cache .pytest_cache

.PHONY: bench bench-quick bench-exports
# National-scale benchmark (docs/performance.md); needs xmllint (libxml2-utils) and PostgreSQL.
# It ends with the exports step (training plans of 100 k and 1 M lines).
bench: $(STAMP)
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python tools/bench.py --quick

# The exports step alone, with its profile (docs/performance.md "KAIROS / France Travail
# exports at real size"); e.g. BENCH_ARGS="--export-lines 100000".
bench-exports: $(STAMP)
	$(BIN)/python tools/bench.py --skip lheo --profile-exports $(BENCH_ARGS)

.PHONY: airflow airflow-check
# Airflow trial (docs/deployment.md): `airflow standalone` on var/airflow with ./airflow.cfg,
# the sample sources generated under var/sources; prints the UI address and login.
airflow: $(STAMP)
	$(BIN)/python tools/airflow_trial.py run

# The scheduler really runs the nightly DAG, the asset-triggered report and a backfill
# (scratch home var/airflow-check; transcript in docs/deployment.md).
airflow-check: $(STAMP)
	$(BIN)/python tools/airflow_trial.py check

.PHONY: audit audit-offline
# Dependency audit (docs/security.md). audit-offline: pins and `pip check`, then every pin
# against the stored PyPA Advisory Database snapshot config/security/pypa-advisories.json
# (exit 4 when a pin is affected). audit: pins and `pip check`, then pip-audit (pinned, in its
# own venv so that it never enters the runtime stack) against the OSV database.
AUDIT_VENV := var/audit-venv
PIP_AUDIT_VERSION := 2.10.1

audit-offline: $(STAMP)
	$(BIN)/python tools/audit.py --snapshot config/security/pypa-advisories.json

audit: $(STAMP)
	@test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && \
	  $(AUDIT_VENV)/bin/python -m pip install -q pip-audit==$(PIP_AUDIT_VERSION); }
	$(BIN)/python tools/audit.py --pip-audit $(AUDIT_VENV)/bin/pip-audit
