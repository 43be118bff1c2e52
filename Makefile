# kcg: the two commands are `make run` (set up everything, run the default config) and
# `make test` (set up everything, run the tests).  `make setup` alone installs; see README.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KCG := $(VENV)/bin/kcg
CONFIG ?= configs/default.yaml
PYTEST_ARGS ?=
# Debian packages: the kernel build's host tools (flex bison bc libelf-dev libssl-dev, dwarves
# for pahole/BTF, cpio kmod rsync), graphviz for the callgraph drawings, chromium for the
# HTML report's tests, python3-venv for the virtualenv.
APT_PACKAGES := build-essential flex bison bc libelf-dev libssl-dev dwarves graphviz chromium \
                python3-venv cpio kmod rsync
# The source packages the configs and tests unpack (apt must know them: `apt-get update` once).
SOURCE_PACKAGES := linux-source-6.1 linux-source-6.12
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup system-packages run test test-slow lint

help:
	@echo "make run        set up everything, then kcg run --config $(CONFIG)"
	@echo "make test       set up everything, then the tests (not the slow ones)"
	@echo "make test-slow  the tests that need the full default build (20-30 min on 2 cores)"
	@echo "make setup      system packages (when missing), $(VENV), the kcg package"
	@echo "make lint       ruff"

setup: system-packages $(VENV)/.kcg-installed

# apt-get update only when something must be installed, or when apt does not know the kernel
# source package (a fresh machine's empty package lists).
system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -qx 'install ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
	    || { echo "setup: apt-get install failed" >&2; exit 1; }; \
	elif ! apt-cache show $(SOURCE_PACKAGES) >/dev/null 2>&1; then \
	  echo "setup: apt does not know $(SOURCE_PACKAGES) yet: apt-get update"; \
	  $(SUDO) apt-get update -q \
	    || echo "setup: apt-get update failed; the source stage can only use a cached .deb" >&2; \
	fi

# The virtualenv and the package (editable), redone when pyproject.toml changes.
$(VENV)/.kcg-installed: pyproject.toml | system-packages
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

run: setup
	$(KCG) run --config $(CONFIG)

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

test-slow: setup
	@$(PY) -m pytest -m slow $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: no tests ran" >&2; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check pipeline tests
