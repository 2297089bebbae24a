# Flotilla — the commands a developer and CI run. `make help` lists them.

SHELL := /bin/bash
CARGO ?= cargo
CLUSTER := e2e/cluster
# Tests that need the harness's binaries must run, not skip, under `make test`.
export FLOTILLA_REQUIRE_TOOLS := 1
# How many end-to-end tests run at once against the shared cluster.
E2E_THREADS ?= 4

.DEFAULT_GOAL := help
.PHONY: help test fmt-check clippy tools unit e2e lint deny demo demo-down bench clean-clusters

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

test: fmt-check clippy tools unit e2e ## everything CI runs: format, lints, unit and end-to-end tests
	@echo "make test: all checks passed"

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

tools: ## build the pinned control plane, helm, kustomize and crane into ~/.cache/flotilla
	$(CLUSTER) build

unit: tools ## unit, property and interoperability tests (no cluster)
	eval "$$($(CLUSTER) env)" && $(CARGO) test --workspace --exclude flotilla-e2e

e2e: tools ## end-to-end tests against a harness cluster started and stopped here
	$(CARGO) build --workspace --bins
	eval "$$($(CLUSTER) env)" && e2e/with-cluster $(CARGO) test --workspace --test e2e -- --test-threads=$(E2E_THREADS)

lint: fmt-check clippy deny ## format check, clippy and cargo-deny
	@if ls charts/*/Chart.yaml >/dev/null 2>&1; then for c in charts/*/; do "$$($(CLUSTER) bin helm)" lint "$$c"; done; fi

deny: ## licences, bans and sources (advisories need an online database: `cargo deny check advisories` where one is reachable)
	@command -v cargo-deny >/dev/null || { echo "cargo-deny is missing: cargo install cargo-deny"; exit 1; }
	$(CARGO) deny check bans licenses sources

demo: ## the main job locally: three clusters, the sample app signed and applied to each
	@e2e/demo up

demo-down: ## stop the demo clusters and remove their files
	@e2e/demo down

bench: tools ## benchmarks (print figures; never fail on timing)
	e2e/bench-apply
	$(CARGO) bench -p flotilla-hub --bench publish

clean-clusters: ## stop every harness cluster and remove its files
	$(CLUSTER) down --all
