# syntax=docker/dockerfile:1
# tokenreview-gateway container image.
#
#   docker build -t tokenreview-gateway .                      # the runtime image (last stage)
#   docker build --target tools -t tokenreview-gateway:tools .  # the same binary plus a shell
#
# Stages: `builder` compiles a release binary; `tools` adds it to a distroless *debug* image (a
# busybox shell, root) for one-shot jobs such as the local stack's certificate step; `runtime`
# is the image to deploy: distroless cc (glibc, libgcc, CA certificates, no shell, no package
# manager), uid 65532, nothing written at runtime, so it runs with a read-only root filesystem.
# No HEALTHCHECK: Kubernetes probes /livez and /readyz (on server.opsListen) instead.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first, in their own layer, so a source change does not rebuild aws-lc and actix.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# The dummy build left a newer binary and library than the real sources; touch so cargo rebuilds.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/tokenreview-gateway /tokenreview-gateway

FROM gcr.io/distroless/cc-debian12:debug AS tools
COPY --from=builder /tokenreview-gateway /usr/local/bin/tokenreview-gateway
ENTRYPOINT ["/usr/local/bin/tokenreview-gateway"]
CMD ["--help"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /tokenreview-gateway /usr/local/bin/tokenreview-gateway
# Mount the configuration here (a ConfigMap in Kubernetes), or set the variable to another path.
# (DL3064 reads "TOKEN" in the name as a secret; the value is a file path.)
# hadolint ignore=DL3064
ENV TOKENREVIEW_GATEWAY_CONFIG=/etc/tokenreview-gateway/gateway.yaml
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# 8443: the webhook (server.listen); 9090: probes and metrics (server.opsListen).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/tokenreview-gateway"]
CMD ["serve"]
