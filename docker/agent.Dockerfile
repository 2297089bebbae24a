# syntax=docker/dockerfile:1
#
# flotilla-agent: one static (musl) binary on distroless, running as non-root 65532.
#
# NOT BUILT HERE: the machine this was written on has no Docker daemon, so this file was
# checked by reading only. Build it from the repository root (or `make images`):
#
#   docker build -f docker/agent.Dockerfile -t ghcr.io/flotilla-dev/flotilla-agent:0.1.0 .
#
# The agent needs no shell, no CA bundle of the OS (it trusts only the hub CA it is given
# and the cluster's service-account CA) and no other program.

FROM rust:1-bookworm AS build
# Debian's package versions are not pinned: the archive drops old ones.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
# ring compiles C: musl-gcc (from musl-tools) is the C compiler for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
# The caches speed up rebuilds; the binary is copied out of the cached target directory in
# the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=flotilla-target-musl,sharing=locked \
    cargo build --release --locked -p flotilla-agent --bin flotilla-agent \
        --target x86_64-unknown-linux-musl \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/flotilla-agent /out/flotilla-agent

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="flotilla-agent" \
      org.opencontainers.image.description="The Flotilla agent: pulls its cluster's signed desired state from a Flotilla hub and applies it with server-side apply" \
      org.opencontainers.image.source="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.url="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Flotilla" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/flotilla-agent /usr/local/bin/flotilla-agent
# The chart mounts the cache here (emptyDir or PVC); the rest of the filesystem is read-only.
VOLUME ["/var/cache/flotilla"]
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flotilla-agent"]
CMD ["--help"]
