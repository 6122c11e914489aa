# Common commands. `make test` is what CI runs (through .ci/run).

CACHE ?= $(HOME)/.cache/voice-agents
export CARGO_TARGET_DIR ?= $(CACHE)/target
# Python test peers live in a virtualenv keyed by the requirements' hash.
VENV ?= $(CACHE)/venv-tests-$(shell sha256sum tests/requirements.txt | cut -c1-12)
export VOICE_AGENTS_TEST_PYTHON ?= $(VENV)/bin/python
# Strands Agents 1.62 (a peer whose event schema and Bedrock client the tests check against) needs
# Python >= 3.12: python3.12 from PATH, else pyenv's.
PYTHON312 ?= $(or $(shell ls -d $(HOME)/.pyenv/versions/3.12*/bin/python 2>/dev/null | tail -1),$(shell command -v python3.12 2>/dev/null))
STRANDS_VENV ?= $(CACHE)/venv-strands-$(shell sha256sum tests/strands/requirements.txt | cut -c1-12)
export VOICE_AGENTS_STRANDS_PYTHON ?= $(STRANDS_VENV)/bin/python
# The benchmark's Python peer relay has its own virtualenv, keyed the same way.
BENCH_VENV ?= $(CACHE)/venv-bench-$(shell sha256sum bench/python/requirements.txt | cut -c1-12)
# The benchmark's Strands and Pipecat peers (Python 3.12): one virtualenv each, since their AWS
# SDK pins conflict. The Strands one includes tests/strands/requirements.txt, so both files key it.
BENCH_STRANDS_VENV ?= $(CACHE)/venv-bench-strands-$(shell cat bench/python/requirements-strands.txt tests/strands/requirements.txt | sha256sum | cut -c1-12)
BENCH_PIPECAT_VENV ?= $(CACHE)/venv-bench-pipecat-$(shell sha256sum bench/python/requirements-pipecat.txt | cut -c1-12)
# deploy/check's tools: cfn-lint with a current botocore, and checkov (which pins an old
# botocore) in a second virtualenv.
DEPLOY_VENV ?= $(CACHE)/venv-deploy-$(shell sha256sum deploy/check/requirements.txt | cut -c1-12)
CHECKOV_VENV ?= $(CACHE)/venv-checkov-$(shell sha256sum deploy/check/requirements-checkov.txt | cut -c1-12)

.PHONY: test test-deps lint unit e2e browser fuzz fmt build release run cluster-build cluster-up cluster-down cluster-smoke

## Everything CI checks: formatting, lints, unit and integration tests, and the suites that run
## against a real local Kubernetes control plane (built from Go modules on first use). Every
## part runs even when an earlier one fails (-k), so one run reports every failure.
##
## The cluster's Go builds (control plane, Traefik, the real node's binaries: about 23 minutes
## on a cold machine, nothing when cached) start at once in the background at the lowest CPU
## priority, so they use the CPU the Rust suites leave idle instead of adding to the run; e2e
## waits on their locks for what is left, and reports a failed build itself. Their output:
## $(CACHE)/logs/cluster-prebuild.log.
TEST_PARTS := lint unit bench-smoke deploy-check e2e browser fuzz
test:
	@mkdir -p $(CACHE)/logs
	@nice -n 19 sh -c 'tests/cluster/build && tests/cluster/build-traefik && tests/cluster/build-node' \
	  >$(CACHE)/logs/cluster-prebuild.log 2>&1 & \
	status=0; $(MAKE) -k $(TEST_PARTS) || status=$$?; wait; exit $$status

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit: test-deps
	cargo test --workspace --no-fail-fast

## Python packages the tests run as independent peers (an MCP server; Strands Agents).
test-deps: $(VENV)/.installed $(STRANDS_VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

$(STRANDS_VENV)/.installed: tests/strands/requirements.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 is needed for the Strands tests (set PYTHON312)" >&2; exit 1; }
	$(PYTHON312) -m venv $(STRANDS_VENV)
	$(STRANDS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/strands/requirements.txt
	touch $@

## The AWS deployment artifacts in deploy/ (ECS/Fargate template, AgentCore request and role),
## offline: cfn-lint, checkov, botocore's service models, `voice-agent config` with their
## environment, and the nesting of their timers. See deploy/check/check.py.
.PHONY: deploy-check deploy-deps
deploy-check: deploy-deps
	# The same package set as bench-smoke, so that this build reuses its artifacts.
	cargo build -p voice-agent -p fake-bedrock -p voice-bench
	$(DEPLOY_VENV)/bin/python deploy/check/check.py \
	  --agent $(CARGO_TARGET_DIR)/debug/voice-agent --checkov $(CHECKOV_VENV)/bin/checkov

deploy-deps: $(DEPLOY_VENV)/.installed $(CHECKOV_VENV)/.installed

$(DEPLOY_VENV)/.installed: deploy/check/requirements.txt
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/check/requirements.txt
	touch $@

$(CHECKOV_VENV)/.installed: deploy/check/requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/check/requirements-checkov.txt
	touch $@

## Cluster suites: the control-plane smoke test, then the Rust e2e tests on a shared cluster,
## which is stopped afterwards whatever the outcome.
e2e: cluster-smoke
	# Traefik, the real proxy of tests/proxy_traefik.rs (cached like the control plane).
	tests/cluster/build-traefik
	# The real node's binaries (kubelet, kube-proxy, the pod sandbox; cached like the control plane).
	tests/cluster/build-node
	status=0; cargo test -p voice-e2e --no-fail-fast -- --ignored || status=$$?; \
	  tests/cluster/down || true; VOICE_AGENTS_CLUSTER_REAL_NODE=1 tests/cluster/down || true; exit $$status

## The agent's page in headless Chromium with a fake microphone (tests/browser/run; needs
## chromium, espeak-ng and node, which .ci/run installs). Screenshots land in test-output/browser/.
browser:
	tests/browser/run

## Each fuzz target for FUZZ_SECONDS, from the committed seeds (cargo-fuzz, nightly Rust).
## FUZZ_BUILD=--dev (the default here) is an unoptimised build with overflow checks and debug
## assertions (about 1,400 execs/s): cold, it built in 5 min 22 s here, where the optimised
## build made the fuzz part of a cold CI run take about 17 minutes, too much for 30 s of
## fuzzing. FUZZ_BUILD=--release for long runs.
FUZZ_SECONDS ?= 30
FUZZ_BUILD ?= --dev
FUZZ_TARGETS := client_frame nova_output
CARGO_FUZZ := $(CACHE)/tools/cargo-fuzz-0.13.2/bin/cargo-fuzz

fuzz: $(CARGO_FUZZ)
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  PATH=$(dir $(CARGO_FUZZ)):$$PATH CARGO_TARGET_DIR=$(CACHE)/target-fuzz \
	    cargo +nightly fuzz run $(FUZZ_BUILD) $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

$(CARGO_FUZZ):
	cargo install cargo-fuzz --version 0.13.2 --locked --root $(CACHE)/tools/cargo-fuzz-0.13.2

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
	tests/cluster/build-traefik

## eval "$$(make -s cluster-up)" puts KUBECONFIG and the cluster's binaries in your shell.
cluster-up:
	@tests/cluster/up

cluster-down:
	tests/cluster/down

cluster-smoke:
	tests/cluster/smoke

.PHONY: crd chart-lint chart-test image image-push

## Regenerates the VoiceAgent CRD from the Rust types into crds/ and into the chart (a test
## fails when either copy drifts from the code).
crd:
	cargo run -q -p voice-operator -- crd > crds/voiceagents.voiceagent.dev.yaml
	cp crds/voiceagents.voiceagent.dev.yaml charts/voice-operator/files/crds/

## helm lint of the chart with the local cluster's helm (built on first use).
chart-lint:
	PATH="$$(tests/cluster/build --print-bin-dir):$$PATH" helm lint --strict charts/voice-operator

## The chart and image suites alone (render, schema, install/upgrade/uninstall on the local
## control plane, dashboard and alerts, Dockerfile); `make e2e` runs them with everything else.
chart-test:
	status=0; cargo test -p voice-e2e --test 'chart_*' -- --include-ignored || status=$$?; tests/cluster/down || true; exit $$status

## Multi-arch images (needs Docker with buildx; not run by the tests, see docs/operations.md).
## `make image-push REGISTRY=registry.example.com/team` builds and pushes both to your registry.
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/voice-operator/Chart.yaml)
REGISTRY ?= ghcr.io/voiceagent-dev
PLATFORMS ?= linux/amd64,linux/arm64
image:
	docker buildx build --platform $(PLATFORMS) -t $(REGISTRY)/voice-agent:$(IMAGE_TAG) .
	docker buildx build --platform $(PLATFORMS) --target operator -t $(REGISTRY)/voice-operator:$(IMAGE_TAG) .

image-push:
	docker buildx build --platform $(PLATFORMS) -t $(REGISTRY)/voice-agent:$(IMAGE_TAG) --push .
	docker buildx build --platform $(PLATFORMS) --target operator -t $(REGISTRY)/voice-operator:$(IMAGE_TAG) --push .

.PHONY: bench bench-smoke bench-deps

## The benchmarks behind BENCHMARKS.md (about 40 minutes on 2 cores; wants an otherwise idle
## machine): release builds, then every section, then the report. Not part of `make test`.
bench: bench-deps
	# Separately, so the agent is the same binary `make release` builds (building packages
	# together unifies their dependencies' features).
	cargo build --release -p voice-agent
	cargo build --release -p voice-operator
	cargo build --release -p fake-bedrock
	cargo build --release -p voice-bench
	mkdir -p test-output/bench
	$(CARGO_TARGET_DIR)/release/voice-bench all \
	  --agent-bin $(CARGO_TARGET_DIR)/release/voice-agent \
	  --operator-bin $(CARGO_TARGET_DIR)/release/voice-operator \
	  --python $(BENCH_VENV)/bin/python \
	  --strands-python $(BENCH_STRANDS_VENV)/bin/python \
	  --pipecat-python $(BENCH_PIPECAT_VENV)/bin/python \
	  --json test-output/bench/results.json --out BENCHMARKS.md

## The benchmark tooling end to end in about a minute (debug builds, a few sessions per
## relay, no capacity search): proves it runs, asserts almost nothing about speed.
bench-smoke: bench-deps
	cargo build -p voice-agent -p fake-bedrock -p voice-bench
	mkdir -p test-output/bench
	$(CARGO_TARGET_DIR)/debug/voice-bench all --smoke \
	  --agent-bin $(CARGO_TARGET_DIR)/debug/voice-agent \
	  --python $(BENCH_VENV)/bin/python \
	  --strands-python $(BENCH_STRANDS_VENV)/bin/python \
	  --pipecat-python $(BENCH_PIPECAT_VENV)/bin/python \
	  --command-line "make bench-smoke" \
	  --json test-output/bench/smoke.json --out test-output/bench/smoke.md

bench-deps: $(BENCH_VENV)/.installed $(BENCH_STRANDS_VENV)/.installed $(BENCH_PIPECAT_VENV)/.installed

$(BENCH_VENV)/.installed: bench/python/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/python/requirements.txt
	touch $@

$(BENCH_STRANDS_VENV)/.installed: bench/python/requirements-strands.txt tests/strands/requirements.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 is needed for the benchmark's Strands peer (set PYTHON312)" >&2; exit 1; }
	$(PYTHON312) -m venv $(BENCH_STRANDS_VENV)
	$(BENCH_STRANDS_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/python/requirements-strands.txt
	touch $@

$(BENCH_PIPECAT_VENV)/.installed: bench/python/requirements-pipecat.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 is needed for the benchmark's Pipecat peer (set PYTHON312)" >&2; exit 1; }
	$(PYTHON312) -m venv $(BENCH_PIPECAT_VENV)
	$(BENCH_PIPECAT_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/python/requirements-pipecat.txt
	touch $@
