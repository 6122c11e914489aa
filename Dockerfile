# syntax=docker/dockerfile:1
#
# Images of both binaries, for linux/amd64 and linux/arm64 (Bedrock AgentCore Runtime runs
# arm64 only). The build stage runs on the builder's own platform and cross-compiles, so an
# arm64 image builds at native speed on an amd64 machine (no emulation):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/voiceagent-dev/voice-agent:0.1.0 --push .
#   docker buildx build --platform linux/amd64,linux/arm64 --target operator \
#     -t ghcr.io/voiceagent-dev/voice-operator:0.1.0 --push .
#
# Runtime base: distroless cc (glibc, libgcc, CA certificates, nothing else; no shell) as
# user 65532. Both binaries link glibc dynamically (aws-lc-sys, the TLS crypto of the AWS SDK
# and of the Kubernetes client, is C), so they are built on Debian 12 (bookworm) to match the
# glibc of the distroless Debian 12 image. See docs/operations.md.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-bookworm AS build
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# A C cross compiler and libc for the target when it differs from the build machine (aws-lc-sys
# compiles C); the native compiler otherwise. Versions come with the pinned Debian release.
# hadolint ignore=DL3008
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) gnu=x86_64; deb=amd64; pkgs=(gcc-x86-64-linux-gnu libc6-dev-amd64-cross) ;; \
      arm64) gnu=aarch64; deb=arm64; pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH' (amd64 or arm64)" >&2; exit 1 ;; \
    esac; \
    if [ "$(dpkg --print-architecture)" != "$deb" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "${pkgs[@]}"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$gnu-unknown-linux-gnu"; \
    echo "$gnu" > /tmp/gnu-arch

COPY . .

# Release builds of the two binaries of the workspace, exactly as locked by Cargo.lock, without
# debug info (the release profile keeps some for profiling; the image does not need it).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=voice-agents-target-${TARGETARCH},sharing=locked \
    set -eux; \
    gnu="$(cat /tmp/gnu-arch)"; \
    triple="$gnu-unknown-linux-gnu"; \
    env_triple="$(echo "$triple" | tr '[:lower:]-' '[:upper:]_')"; \
    export "CARGO_TARGET_${env_triple}_LINKER=$gnu-linux-gnu-gcc"; \
    export "CC_${triple//-/_}=$gnu-linux-gnu-gcc" "AR_${triple//-/_}=$gnu-linux-gnu-ar"; \
    export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo; \
    cargo build --release --locked --target "$triple" \
      -p voice-agent --bin voice-agent \
      -p voice-operator --bin voice-operator; \
    mkdir -p /out; \
    cp "target/$triple/release/voice-agent" "target/$triple/release/voice-operator" /out/

# The operator: `docker build --target operator`. Admin port (/metrics, /healthz, /readyz).
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/voice-operator /usr/local/bin/voice-operator
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/voice-operator"]

# The agent, the default target: one port, 8080, for /ws, /ping, /invocations, probes and
# metrics (the Bedrock AgentCore Runtime contract, and what the operator's pods expect).
FROM gcr.io/distroless/cc-debian12:nonroot AS agent
COPY --from=build /out/voice-agent /usr/local/bin/voice-agent
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/voice-agent"]
