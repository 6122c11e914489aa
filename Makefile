# Common commands. `make test` is what CI runs (through .ci/run).

CACHE ?= $(HOME)/.cache/voice-agents
export CARGO_TARGET_DIR ?= $(CACHE)/target
# Python test peers live in a virtualenv keyed by the requirements' hash.
VENV ?= $(CACHE)/venv-tests-$(shell sha256sum tests/requirements.txt | cut -c1-12)
export VOICE_AGENTS_TEST_PYTHON ?= $(VENV)/bin/python

.PHONY: test test-deps lint unit e2e browser fmt build release run cluster-build cluster-up cluster-down cluster-smoke

## Everything CI checks: formatting, lints, unit and integration tests, and the suites that run
## against a real local Kubernetes control plane (built from Go modules on first use).
test: lint unit e2e browser

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit: test-deps
	cargo test --workspace

## Python packages the tests run as independent peers (an MCP server).
test-deps: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

## Cluster suites: the control-plane smoke test, then the Rust e2e tests on a shared cluster,
## which is stopped afterwards whatever the outcome.
e2e: cluster-smoke
	status=0; cargo test -p voice-e2e -- --ignored || status=$$?; tests/cluster/down || true; exit $$status

## The agent's page in headless Chromium with a fake microphone (tests/browser/run; needs
## chromium, espeak-ng and node, which .ci/run installs). Screenshots land in test-output/browser/.
browser:
	tests/browser/run

fmt:
	cargo fmt --all

build:
	cargo build --workspace

release:
	cargo build --release -p voice-agent

## Run the agent locally with the simulated model on :8080.
run:
	cargo run --release -p voice-agent

cluster-build:
	tests/cluster/build

## eval "$$(make -s cluster-up)" puts KUBECONFIG and the cluster's binaries in your shell.
cluster-up:
	@tests/cluster/up

cluster-down:
	tests/cluster/down

cluster-smoke:
	tests/cluster/smoke
