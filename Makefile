# Common commands. `make test` is what CI runs (through .ci/run).

CACHE ?= $(HOME)/.cache/voice-agents
export CARGO_TARGET_DIR ?= $(CACHE)/target

.PHONY: test lint fmt build release run unit

## Everything CI checks: formatting, lints, unit and integration tests.
test: lint unit

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

fmt:
	cargo fmt --all

build:
	cargo build --workspace

release:
	cargo build --release -p voice-agent

## Run the agent locally with the simulated model on :8080.
run:
	cargo run --release -p voice-agent
