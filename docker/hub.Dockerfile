# syntax=docker/dockerfile:1
#
# flotilla-hub: the static (musl) hub binary plus the external programs it runs, on
# debian-slim, running as non-root 65532.
#
# NOT BUILT HERE: the machine this was written on has no Docker daemon, so this file was
# checked by reading only. Build it from the repository root (or `make images`):
#
#   docker build -f docker/hub.Dockerfile -t ghcr.io/flotilla-dev/flotilla-hub:0.1.0 .
#
# Why not distroless like the agent: the hub does Git itself (gix, pure Rust; no `git`
# here), but it runs three programs: `helm` and `kustomize` to render (pinned below to the
# versions e2e/cluster tests with) and `ssh` for Git over SSH, which gix starts through
# /bin/sh and which refuses to run for a uid without a passwd entry.

ARG HELM_VERSION=v3.21.4
ARG KUSTOMIZE_VERSION=v5.8.1

# helm and kustomize from their Go modules, static (CGO_ENABLED=0), built as e2e/cluster
# builds them: helm reports its version and assumes Kubernetes 1.35 unless the hub passes
# the cluster's (--kube-version, from what the agent reported).
FROM golang:1.26-bookworm AS tools
ARG HELM_VERSION
ARG KUSTOMIZE_VERSION
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go install -ldflags "-s -w \
        -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=35" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" \
    && go install -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}" \
    && /go/bin/helm version --short && /go/bin/kustomize version

FROM rust:1-bookworm AS build
# Debian's package versions are not pinned: the archive drops old ones.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
# ring and the bundled SQLite (sqlx) compile C: musl-gcc (from musl-tools) is the C
# compiler for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
# The caches speed up rebuilds; the binary is copied out of the cached target directory in
# the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=flotilla-target-musl,sharing=locked \
    cargo build --release --locked -p flotilla-hub --bin flotilla-hub \
        --target x86_64-unknown-linux-musl \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/flotilla-hub /out/flotilla-hub

FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG HELM_VERSION
ARG KUSTOMIZE_VERSION
# ca-certificates: HTTPS to Git servers and Helm repositories. openssh-client: Git over SSH.
# The nonroot user (65532, as in distroless) gives ssh the passwd entry it insists on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home \
        --shell /usr/sbin/nologin nonroot \
    && install -d -o 65532 -g 65532 -m 0700 /var/lib/flotilla
LABEL org.opencontainers.image.title="flotilla-hub" \
      org.opencontainers.image.description="The Flotilla hub: turns Git into signed per-cluster desired state for Flotilla agents (with helm ${HELM_VERSION} and kustomize ${KUSTOMIZE_VERSION})" \
      org.opencontainers.image.source="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.url="https://github.com/flotilla-dev/flotilla" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Flotilla" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
COPY --from=tools /go/bin/helm /go/bin/kustomize /usr/local/bin/
COPY --from=build /out/flotilla-hub /usr/local/bin/flotilla-hub
# The hub finds helm and kustomize on PATH (--helm-path, --kustomize-path by default).
ENV HOME=/home/nonroot
WORKDIR /home/nonroot
# The data directory lives in a subdirectory of the volume (`init` creates it with mode
# 0700; a volume's root belongs to root and may hold lost+found).
VOLUME ["/var/lib/flotilla"]
# 8080: human API and dashboard (plain HTTP). 8443: agent API (mutual TLS).
EXPOSE 8080 8443
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flotilla-hub"]
# Without arguments: serve a data directory made first with
#   flotilla-hub init --data-dir /var/lib/flotilla/data (the chart runs it as an init container).
CMD ["serve", "--data-dir=/var/lib/flotilla/data", "--listen=0.0.0.0:8080", "--agent-listen=0.0.0.0:8443"]
