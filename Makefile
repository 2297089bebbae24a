# Flotilla — the commands a developer and CI run. `make help` lists them.

SHELL := /bin/bash
CARGO ?= cargo
CLUSTER := e2e/cluster
# Tests that need the harness's binaries must run, not skip, under `make test`.
export FLOTILLA_REQUIRE_TOOLS := 1
# How many end-to-end tests run at once against the shared cluster.
E2E_THREADS ?= 4

.DEFAULT_GOAL := help
.PHONY: help test fmt-check clippy tools unit charts e2e lint deny demo demo-check demo-down bench clean-clusters images screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

test: fmt-check clippy tools unit charts e2e ## everything CI runs: format, lints, unit, chart and end-to-end tests
	@echo "make test: all checks passed"

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

tools: ## build the pinned control plane, helm, kustomize and crane into ~/.cache/flotilla
	$(CLUSTER) build

unit: tools ## unit, property and interoperability tests (no cluster)
	eval "$$($(CLUSTER) env)" && $(CARGO) test --workspace --exclude flotilla-e2e

charts: tools ## Helm charts: lint --strict, values schema, renders (`make e2e` dry-runs them on its cluster)
	charts/test offline

# In the one cluster: the charts' server-side dry run (which also checks their flags against the
# binaries just built), then the end-to-end tests, which run even when the charts fail; either
# failing fails the target.
e2e: tools browser/node_modules ## end-to-end tests (the dashboard's in headless Chromium too) and the charts' dry run, against a harness cluster started and stopped here
	$(CARGO) build --workspace --bins
	eval "$$($(CLUSTER) env)" && e2e/with-cluster bash -c 'charts/test dry-run; charts=$$?; "$$@" || exit; exit $$charts' e2e \
		$(CARGO) test --workspace --test e2e -- --test-threads=$(E2E_THREADS)

# The browser tests' packages (playwright-core, axe-core), as the lock file pins them.
browser/node_modules: browser/package.json browser/package-lock.json
	npm ci --prefix browser --no-audit --no-fund
	@touch $@

screenshots: tools browser/node_modules ## docs/screenshots: a seeded 1,000-cluster × 100-app hub (timed) and the 3-cluster dashboard test
	browser/screenshots

lint: fmt-check clippy deny ## format check, clippy, cargo-deny and helm lint --strict
	charts/test lint

deny: ## licences, bans and sources (advisories need an online database: `cargo deny check advisories` where one is reachable)
	@command -v cargo-deny >/dev/null || { echo "cargo-deny is missing: cargo install cargo-deny"; exit 1; }
	$(CARGO) deny check bans licenses sources

demo: ## the main job locally: a hub, three clusters with an agent each, the sample app everywhere
	@e2e/demo up

demo-check: ## run the demo, check every app Synced and Healthy, push a change, see it land, tear down
	@e2e/demo check

demo-down: ## stop the demo clusters and remove their files
	@e2e/demo down

bench: tools ## benchmarks (print figures; never fail on timing)
	e2e/bench-apply
	$(CARGO) bench -p flotilla-hub --bench publish

clean-clusters: ## stop every harness cluster and remove its files
	$(CLUSTER) down --all

# Images: ghcr.io/flotilla-dev/flotilla-{hub,agent,cli}:<workspace version> unless overridden.
IMAGE_PREFIX ?= ghcr.io/flotilla-dev/
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

images: ## container images of the hub, agent and cli (docker build; needs a Docker daemon)
	@if ! docker info >/dev/null 2>&1; then \
		echo "make images: no Docker daemon here (docker info fails); on a machine with one:"; \
		for i in hub agent cli; do echo "  docker build -f docker/$$i.Dockerfile -t $(IMAGE_PREFIX)flotilla-$$i:$(IMAGE_TAG) ."; done; \
		exit 1; \
	fi
	for i in hub agent cli; do \
		docker build -f docker/$$i.Dockerfile -t $(IMAGE_PREFIX)flotilla-$$i:$(IMAGE_TAG) . || exit; \
	done
