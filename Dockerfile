# syntax=docker/dockerfile:1
# Build: the whole workspace compiles without protoc (protox parses proto/ in Rust).
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p egress-proxy \
 && strip target/release/egress-proxy

# Run: distroless-like slim image, non-root, no shell needed at runtime.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin egress
COPY --from=build /src/target/release/egress-proxy /usr/local/bin/egress-proxy
USER 10001:10001
# A container is reached from outside its own loopback, so the gRPC listener is on 0.0.0.0
# and callers must authenticate: the image expects a policy file (bearer tokens or mTLS) at
# /etc/egress-proxy/policy.toml. Without one it exits 2, naming that path. Run:
#   docker run -e LIVEKIT_URL=https://... -e LIVEKIT_API_KEY=... -e LIVEKIT_API_SECRET=...
#     -v "$PWD/policy.toml:/etc/egress-proxy/policy.toml:ro" -p 50051:50051 egress-proxy
# A sidecar on the pod's 127.0.0.1 mounts a policy with `mode = "none"` there instead.
# The admin listener (/healthz, /readyz, /metrics) stays on loopback unless
# EGRESS_PROXY_ADMIN_LISTEN says otherwise (Kubernetes probes: 0.0.0.0:9090).
ENV EGRESS_PROXY_LISTEN=0.0.0.0:50051 \
    EGRESS_PROXY_POLICY_FILE=/etc/egress-proxy/policy.toml
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/egress-proxy"]
