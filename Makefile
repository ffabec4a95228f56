# The two commands a newcomer needs: `make run` (the platform) and `make test` (the whole test gate).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements/base.txt requirements/local.txt requirements/constraints.txt requirements/tools.txt | sha256sum | cut -c1-16)
export DJANGO_SETTINGS_MODULE ?= brokerage.settings.local
# One set of ports for the service scripts and for Django (override any of them in the environment).
export PG_PORT ?= 55432
export REDIS_PORT ?= 56379
export KAFKA_PORT ?= 19092
export KAFKA_CONTROLLER_PORT ?= 19093
export DATABASE_URL ?= postgres://brokerage:brokerage@127.0.0.1:$(PG_PORT)/brokerage
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)

.PHONY: help run test venv services services-stop lint typecheck migrations-check pytest bench chaos security clean

help:
	@echo "make run    - install, start PostgreSQL/Redis/Kafka, migrate, load demo data, start every process"
	@echo "make test   - install, start the services, then ruff, mypy, makemigrations --check and pytest"
	@echo "make bench  - the benchmark suite (figures to docs/PERFORMANCE.md and bench/results/)"
	@echo "make services / services-stop - start or stop PostgreSQL, Redis and Kafka"

$(STAMP): requirements/base.txt requirements/local.txt requirements/constraints.txt requirements/tools.txt scripts/pyinstall.sh
	PYTHON=$(PYTHON) scripts/pyinstall.sh $(VENV) -r requirements/local.txt -c requirements/constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# The mypyc build of the engine (docs/engine.md): a no-op while engine sources are unchanged.
venv: $(STAMP)
	$(PY) scripts/build_engine_native.py

services:
	scripts/services.sh all start

services-stop:
	scripts/services.sh all stop

run: venv services
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:$(REDIS_PORT)/0} scripts/run.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy .

migrations-check: venv
	DJANGO_SETTINGS_MODULE=brokerage.settings.test $(PY) manage.py makemigrations --check --dry-run

# Two pytest-xdist workers, a test module per unit (module fixtures such as the e2e stack start once). Each worker
# has its own database, Redis DBs, Channels prefix and Kafka topic prefix (brokerage/settings/test.py); most tests
# wait on processes and services, so on two cores the suite took 6.7 min against 11.1 serially. PYTEST_WORKERS=0
# runs it in one process.
PYTEST_WORKERS ?= 2
pytest: venv
	DJANGO_SETTINGS_MODULE=brokerage.settings.test \
	REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/9 CELERY_BROKER_URL=redis://127.0.0.1:$(REDIS_PORT)/10 \
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: venv services lint typecheck migrations-check deploy-checks pytest

# Dockerfile lint, offline CDK synth, cfn-lint and checkov (own venv .run/deploy-venv; no AWS credentials).
.PHONY: deploy-checks
deploy-checks:
	scripts/deploy_checks.sh

bench: venv services
	$(PY) -m bench

# Security battery (docs/security.md): static gates, the tests/security suite, schemathesis on a live daphne,
# Alpaca conformance report. Own tooling venv .run/security-venv; own database and Redis DBs.
security: venv services
	$(PY) -m security

# Order storm + faults + auditor on its OWN PostgreSQL/Redis/Kafka (ports 556xx/196xx, .run/chaos): it kills them.
# SEED, CHAOS_ARGS override (e.g. CHAOS_ARGS="--accounts 50 --ops 500 --duration 60").
chaos: venv
	$(PY) -m chaos --seed $${SEED:-$$RANDOM} $${CHAOS_ARGS:-}

# Scale-out checks (issue 8; deploy/ecs/README.md): 3-broker Kafka loses a broker, two engine processes hand
# partitions over, two gunicorns behind a proxy share a session. OWN services under .run/scale (ports 19701-19709,
# 55700, 56700), torn down at the end. Prints PASS/FAIL per assertion and "N passed, N failed".
.PHONY: scale-checks
scale-checks: venv
	$(PY) -m deploy.scale $${SCALE_ARGS:-}

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
