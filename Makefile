# Gateway Bench. `make bench` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TARGET_REQS := $(sort $(wildcard targets/*/requirements.txt))
SCENARIO ?= scenarios/default.toml
TARGETS ?=
RUN ?=
LAUNCHER ?=

.PHONY: setup bench bench-quick bench-driver bench-idle test system-deps check lint report verify schema clean

$(STAMP): pyproject.toml constraints.txt $(TARGET_REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e '.[dev]' $(addprefix -r ,$(TARGET_REQS))
	@touch $(STAMP)

setup: $(STAMP)

## bench: benchmark every stack with the default suite and render the HTML report
bench: setup $(if $(filter docker,$(LAUNCHER)),docker-ready)
	$(BIN)/gwbench run $(SCENARIO) $(if $(TARGETS),--targets $(TARGETS)) $(if $(LAUNCHER),--launcher $(LAUNCHER))

## bench-quick: the short variant (about 2 minutes), for smoke tests
bench-quick: setup $(if $(filter docker,$(LAUNCHER)),docker-ready)
	$(BIN)/gwbench run scenarios/quick.toml $(if $(TARGETS),--targets $(TARGETS)) $(if $(LAUNCHER),--launcher $(LAUNCHER))

## bench-driver: our load driver against wrk (apt-get install -y wrk) on one fast target, alternating rounds
bench-driver: setup
	$(BIN)/python -m harness.tools.benchdriver $(BENCH_DRIVER_ARGS)

## bench-idle: 10,000 idle connections per stack (HTTP keep-alive, then WebSockets): connections held and memory per connection (gwbench run scenarios/connections.toml)
bench-idle: setup
	$(BIN)/gwbench run scenarios/connections.toml $(if $(TARGETS),--targets $(TARGETS)) $(if $(LAUNCHER),--launcher $(LAUNCHER))

.PHONY: bench-map bench-scaling

## bench-map: the crossover map: each main migration path's capacity ratio against what a request waits on (CPU only; 5, 50, 500 ms upstream; fan-out), 5 to 10 minutes of load; chart, table and page under reports/map-<time>/; BENCH_MAP_ARGS="--dry-run" prints the plan
bench-map: setup
	$(BIN)/python -m harness.tools.crossover $(BENCH_MAP_ARGS)

## bench-scaling: capacity at two CPU sizes (0.5 and 1 CPU when the stacks have one CPU, else 1 and 2) of flask-gunicorn-gthread and starlette-uvicorn, and the scaling efficiency, about 4 minutes of load; BENCH_SCALING_ARGS for options
bench-scaling: setup
	$(BIN)/python -m harness.tools.scaling $(BENCH_SCALING_ARGS)

## test: run the test suite against real servers on 127.0.0.1 (sets up what it uses first: packages, and the Docker image and wheels when an engine answers)
test: setup system-deps docker-if-engine
	$(BIN)/pytest

## docker-if-engine: when a Docker engine answers, build what the Docker tests use (docker-ready); with none they skip, saying so
docker-if-engine:
	@if docker info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory docker-ready; \
	else \
		echo "no Docker engine answers: the Docker tests will skip (to run them, start one: dockerd &, as root)"; \
	fi

## system-deps: the Debian packages the tests use (wrk, nginx-light, chromium, PostgreSQL's server, debootstrap), installed if missing (as root)
system-deps:
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		else \
			echo "the tests need these Debian packages: sudo apt-get install$$missing" >&2; exit 2; \
		fi; \
	fi

## check: lint, type-check and test
check: lint test

lint: setup
	$(BIN)/ruff check harness tests targets
	$(BIN)/mypy

## report: re-render a stored run, e.g. make report RUN=results/20261124T020000Z-default
report: setup
	@test -n "$(RUN)" || { echo "usage: make report RUN=<run directory or id>"; exit 2; }
	$(BIN)/gwbench report $(RUN)

## verify: check every stack against targets/CONTRACT.md
verify: setup
	$(BIN)/gwbench verify $(if $(TARGETS),--targets $(TARGETS))

## schema: write the results format's JSON Schemas (docs/schema/) from the models; `python -m harness.tools.schema --check` tells if they are stale
schema: setup
	$(BIN)/python -m harness.tools.schema

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Docker images (harness.launch.docker). No registry is needed: the base image is built with
# debootstrap, and packages are installed in the images from a wheelhouse built here.
DOCKER_BASE ?= gwbench/base:bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
WHEELHOUSE ?= build/wheelhouse
WHEELHOUSE_STAMPS := $(patsubst targets/%/requirements.txt,$(WHEELHOUSE)/%/.complete,$(TARGET_REQS))

.PHONY: docker-base wheelhouse docker-ready docker-if-engine

## docker-ready: what `make bench LAUNCHER=docker` needs: the base image (built if missing) and the wheelhouse
docker-ready: wheelhouse
	@docker image inspect $(DOCKER_BASE) >/dev/null 2>&1 || { \
		mkdir -p build; echo "building $(DOCKER_BASE) with debootstrap (a few minutes; log: build/docker-base.log)"; \
		$(MAKE) --no-print-directory docker-base >build/docker-base.log 2>&1 || { tail -20 build/docker-base.log >&2; exit 2; }; }

## docker-base: build the local base image (Debian bookworm, python3.11, venv) with debootstrap
docker-base:
	@command -v debootstrap >/dev/null || { echo "make docker-base: debootstrap is missing: apt-get install -y debootstrap" >&2; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "make docker-base: no Docker engine answers: start one (dockerd &, as root) or set DOCKER_HOST" >&2; exit 2; }
	@set -euo pipefail; rootfs=$$(mktemp -d /var/tmp/gwbench-rootfs.XXXXXX); \
	cleanup() { for m in dev/pts dev sys proc; do umount -l "$$rootfs/$$m" 2>/dev/null || true; done; \
		rm -rf --one-file-system "$$rootfs"; }; \
	trap cleanup EXIT; \
	debootstrap --variant=minbase --include=python3,python3-venv bookworm "$$rootfs" $(DEBIAN_MIRROR); \
	rm -rf "$$rootfs"/var/cache/apt/archives/*.deb "$$rootfs"/var/lib/apt/lists/*; \
	tar --numeric-owner -C "$$rootfs" -c . | docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - $(DOCKER_BASE); \
	echo "built $(DOCKER_BASE)"

## wheelhouse: the wheels each target's image installs (build/wheelhouse/<target>/), pinned by constraints.txt
wheelhouse: $(WHEELHOUSE_STAMPS)

$(WHEELHOUSE)/%/.complete: targets/%/requirements.txt constraints.txt | $(STAMP)
	rm -rf $(WHEELHOUSE)/$*
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check -c constraints.txt -r $< -w $(WHEELHOUSE)/$*
	@touch $@
