# hardway.cloud: the README's two commands are `make lab` and `make test`;
# the other targets are their building blocks.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export HARDWAY_CACHE ?= /var/cache/hardway-cloud
export PIP_CACHE_DIR ?= $(HARDWAY_CACHE)/pip
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.tmp/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONPATH := $(CURDIR)/lab:$(CURDIR)
export ANSIBLE_ROLES_PATH := $(CURDIR)/tests/roles
export PATH := $(CURDIR)/.venv/bin:$(PATH)

PY := .venv/bin/python
LAB ?= cloud
LAB_SPEC ?= lab/topologies/cloud.yml

.PHONY: help setup lab lab-down test lint sanity units integration e2e molecule build bench clean

help:
	@echo "make lab        build the all-in-one lab cloud (sets everything up first)"
	@echo "make test       set up and run every test tier"
	@echo "make lab-down   remove the lab"
	@echo "building blocks: setup lint sanity units integration e2e molecule build bench"

setup:
	@scripts/setup.sh

LAB_INVENTORY = $(HARDWAY_CACHE)/labs/$(LAB)/inventory.yml

lab: setup
	$(PY) -m labhosts up --spec $(LAB_SPEC) --lab $(LAB)
	$(PY) -m labhosts image tenant >/dev/null
	ansible-playbook -i $(LAB_INVENTORY) -i inventories/lab playbooks/site.yml
	$(PY) -m labhosts summary $(LAB)
	$(PY) -m labhosts check $(LAB)

lab-down: setup
	$(PY) -m labhosts down $(LAB)

test: setup lint sanity units build integration e2e molecule
	@echo "make test: every tier passed"

lint: setup
	ansible-lint --profile production

sanity: setup
	scripts/sanity.sh

units: setup
	pytest -q tests/unit

build: setup
	scripts/build.sh

integration: setup
	pytest -q tests/integration

e2e: setup
	pytest -q tests/e2e

molecule: setup
	scripts/molecule.sh

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf .tmp .pytest_cache hardway-cloud-*.tar.gz
