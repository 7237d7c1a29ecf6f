# Every target creates .venv (and node_modules where osls is needed) when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAGE ?= dev
REGION ?= us-east-1
PYTEST_ARGS ?=

.PHONY: install run test lint unit package bench deploy

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	@test ! -f bench/requirements.txt || $(BIN)/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python -m bench.intake
	@test ! -f bench/delivery.py || $(BIN)/python -m bench.delivery

run: install
	@test -x node_modules/.bin/osls || npm ci --no-audit --no-fund
	$(BIN)/python -m infra.local

package: install
	@echo "make package arrives with the deploy issue; see README.md" && exit 1

deploy: package
	@echo "make deploy arrives with the deploy issue; see README.md" && exit 1
