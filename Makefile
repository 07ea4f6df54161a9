# Go-Stream. `make up` runs the platform locally; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | sha1sum | cut -c1-12)
# Debian packages the tests need beyond the base machine (Java and Maven are checked too).
APT_PACKAGES := chromium
# Settings `make up` passes through to the stack (see README, Configuration).
export EXCHANGE SIM_RATE CONSUMERS SYMBOLS OKX_WS_URL OKX_REST_URL OKX_CHANNEL KAFKA_TOPIC KAFKA_DLQ_TOPIC

.PHONY: help venv lock upgrade jars deps up down status logs test chaos clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Every package from uv.lock, hashes checked (the images install from the same lock).
$(STAMP): pyproject.toml uv.lock images/requirements.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	images/requirements.sh dev > $(VENV)/requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r $(VENV)/requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP) ## create .venv with the package and test tools (from uv.lock)

lock: ## update uv.lock after editing pyproject.toml's dependencies (keeps the other versions)
	images/requirements.sh --lock

upgrade: ## move every locked package to the newest version pyproject.toml allows
	images/requirements.sh --upgrade

jars: $(STAMP) ## fetch Kafka and QuestDB from Maven Central into .cache (once)
	$(PY) -m stack jars

# $(call apt-ensure,<packages>,<apt-get flags>): install the Debian packages not yet there.
define apt-ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root, or: sudo apt-get install -y $(2)$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2)$$missing >/dev/null; \
	fi
endef

deps: ## install missing system packages (Java, Maven, Chromium) with apt-get
	$(call apt-ensure,$(APT_PACKAGES) $(if $(shell command -v java),,openjdk-17-jre-headless) $(if $(shell command -v mvn),,maven),)

up: $(STAMP) ## start Kafka, QuestDB and the services in the background (EXCHANGE=sim: offline exchange)
	$(PY) -m stack up

down: ## stop the local stack, keeping its data
	@if [ -x $(PY) ]; then $(PY) -m stack down; else echo "nothing to stop"; fi

status: ## show what runs, readiness and restarts
	@$(PY) -m stack status

logs: ## tail the logs (C=<component>, F=1 to follow)
	@$(PY) -m stack logs $(C) $(if $(F),-f)

-include mk/*.mk

# $(TEST_BACKGROUND) right after the system packages: long builds started there overlap
# everything after them (mk/k8s.mk).
test: deps $(TEST_BACKGROUND) venv jars $(TEST_PREREQS) ## run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

CHAOS_DURATION ?= 600
CHAOS_RATE ?= 200
chaos: venv jars ## the long chaos run (CHAOS_DURATION=600 s, CHAOS_RATE=200/s): faults injected, exactly-once checked
	$(PY) -m tests.chaos --duration $(CHAOS_DURATION) --rate $(CHAOS_RATE)

clean: ## remove test output (keeps caches and stack data)
	rm -rf test-artifacts .pytest_cache
