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
ENV EGRESS_PROXY_LISTEN=0.0.0.0:50051
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/egress-proxy"]
