# sre.runbooks — everything a fresh Debian 12 machine needs, from `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
COLLECTION_LINK := .collections/ansible_collections/sre/runbooks
SANITY_ROOT := .build/ansible_collections/sre/runbooks
PYTEST_ARGS ?=

.PHONY: help deps venv install demo test sanity lint unit integration molecule bench build lab-base lab-up lab-down lab-status clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## Debian packages (apt-get, only the missing ones)
	@scripts/install-debian-packages.sh requirements/debian.txt

$(VENV)/.installed: requirements/*.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements/dev.txt
	@touch $@

venv: $(VENV)/.installed ## Python virtualenv with the pinned toolchain

install: deps venv ## Everything, and the collection where ansible finds it
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../.. $(COLLECTION_LINK)
	@$(BIN)/ansible-galaxy collection list sre.runbooks >/dev/null 2>&1 || { echo "collection not found by ansible"; exit 1; }

demo: install ## Lab up, error burst, HighErrorRate runbook, report
	@scripts/demo.sh

test: install sanity lint unit integration molecule ## Everything CI runs

sanity: install ## ansible-test sanity, no ignore file
	@rm -rf .build && mkdir -p $(SANITY_ROOT)
	@git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ $(SANITY_ROOT)/
	@# ansible-test lists files with git; a repo of its own keeps it from seeing this one's .gitignore.
	@cd $(SANITY_ROOT) && git init -q && git add -A
	@pip_version=$$($(BIN)/python -c "import re,ansible_test,pathlib; print(re.search(r\"pip='([0-9.]+)'\", (pathlib.Path(ansible_test.__file__).parent/'_internal/python_requirements.py').read_text()).group(1))"); \
	  cache=$$HOME/.ansible/test/cache/get_pip_$${pip_version//./_}.py; \
	  test -s $$cache || { mkdir -p $$(dirname $$cache) && cp scripts/ansible-test-get-pip.py $$cache; }
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --python 3.11 --requirements --color no $(SANITY_ARGS)

lint: install ## ansible-lint, production profile
	$(BIN)/ansible-lint --profile production

unit: install ## pytest unit tests
	$(BIN)/pytest tests/unit -q -n 2 $(PYTEST_ARGS)

# Tests that boot systemd-nspawn hosts or a whole lab run one at a time (machine names, a lab's ports); they mostly
# wait on the fleet, so the others run beside them, two at a time, each with its own servers on free ports.
FLEET_TESTS := test_lab.py test_lab_faults.py test_lab_hosts.py test_heart_disease_lab.py test_rotate_secrets_lab.py test_scale_service.py \
	test_rotate_systemd.py test_service_status.py test_host_resources.py

integration: install ## pytest integration tests against real services
	@$(BIN)/pytest $(addprefix tests/integration/,$(FLEET_TESTS)) -q -p no:cacheprovider $(PYTEST_ARGS) > .integration-fleet.log 2>&1 & fleet=$$!; \
	  $(BIN)/pytest tests/integration -q -n 2 $(addprefix --ignore=tests/integration/,$(FLEET_TESTS)) $(PYTEST_ARGS); others=$$?; \
	  wait $$fleet; fleet_rc=$$?; echo "== fleet tests ($(FLEET_TESTS))"; cat .integration-fleet.log; \
	  exit $$(( others || fleet_rc ))

# Each scenario boots its own lab on its own ports (MOLECULE_LAB_PORT_OFFSET, 40 apart: a lab's ports span
# 2201-2207, 18001-18102 and 19090-19094) and mostly waits on it, so two run side by side (scripts/run-molecule.sh,
# a pool: the next starts when one ends), the longest first.
MOLECULE_SCENARIOS := alerts_security:380 heart_disease:420 alerts:300 faults:520 alerts_data:340 high_error_rate:460
MOLECULE_JOBS := 2

molecule: install ## molecule scenarios (delegated driver, the lab as platform), two at a time
	scripts/run-molecule.sh $(MOLECULE_JOBS) $(MOLECULE_SCENARIOS)

bench: install ## benchmarks (print numbers and ratios)
	$(BIN)/python benchmarks/log_query.py
	$(BIN)/python benchmarks/scale.py

build: install ## collection tarball
	$(BIN)/ansible-galaxy collection build --force

lab-base: install ## build (once, cached) the Debian rootfs the systemd lab hosts boot from
	$(BIN)/python lab/hosts.py build

lab-up: install ## start the local lab
	lab/lab up

lab-down: ## stop the local lab
	lab/lab down

lab-status: ## show the lab
	lab/lab status

clean: ## remove build products (not the venv)
	rm -rf .build .pytest_cache sre-runbooks-*.tar.gz
