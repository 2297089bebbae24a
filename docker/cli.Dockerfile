# syntax=docker/dockerfile:1
#
# flotilla (the command line over the hub's human API): one static (musl) binary on
# distroless, running as non-root 65532. For CI jobs and kubectl-run one-offs:
#
#   docker run --rm -e FLOTILLA_HUB=https://flotilla.example.com -e FLOTILLA_TOKEN \
#     ghcr.io/flotilla-dev/flotilla-cli:0.1.0 cluster list
#
# NOT BUILT HERE: the machine this was written on has no Docker daemon, so this file was
# checked by reading only. Build it from the repository root (or `make images`):
#
#   docker build -f docker/cli.Dockerfile -t ghcr.io/flotilla-dev/flotilla-cli:0.1.0 .

FROM rust:1-bookworm AS build
# Debian's package versions are not pinned: the archive drops old ones.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=flotilla-target-musl,sharing=locked \
    cargo build --release --locked -p flotilla-cli --bin flotilla \
        --target x86_64-unknown-linux-musl \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/flotilla /out/flotilla

# static-debian12 carries the CA certificates the CLI's HTTPS to the hub needs.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="flotilla" \
      org.opencontainers.image.description="The Flotilla command line, over the hub's human API" \
      org.opencontainers.image.source="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.url="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Flotilla" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/flotilla /usr/local/bin/flotilla
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flotilla"]
CMD ["--help"]
