# coap-gateway container image (see docs/operations.md, "Running as a service").
#
#   docker build -t coap-gateway .
#   docker run -d --name coap-gateway -p 5683:5683/udp -p 127.0.0.1:8080:8080 \
#       -v coap-gateway-data:/var/lib/coap-gateway \
#       -e COAP_GATEWAY_PLATFORM_TOKEN=... coap-gateway

# --- build: the release binary, exactly the locked dependency versions -----------------------
FROM rust:1.95-slim-bookworm AS build
# CoAP over DTLS links the system OpenSSL (the `openssl` crate): its headers and pkg-config.
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Cargo.toml names the benches, so cargo wants their files even for `--bin`.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's member crates (crates/link-format): path dependencies of the gateway.
COPY crates ./crates
COPY benches ./benches
# No debug info in the image's binary (the repository's release profile keeps some for perf).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin coap-gateway

# --- runtime: glibc and libssl3 (DTLS; rustls with bundled roots needs no system CA store) ----
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/coap-gateway \
        --shell /usr/sbin/nologin coap-gateway \
    && install -d -o coap-gateway -g coap-gateway -m 0700 /var/lib/coap-gateway \
    && install -d -m 0755 /etc/coap-gateway
COPY --from=build /src/target/release/coap-gateway /usr/local/bin/coap-gateway
COPY contrib/config.docker.yaml /etc/coap-gateway/config.yaml
# Validate the baked-in config at build time: a broken image fails here, not at run time.
RUN /usr/local/bin/coap-gateway --config /etc/coap-gateway/config.yaml --check

USER coap-gateway
VOLUME ["/var/lib/coap-gateway"]
# CoAP (RD, pings, commands, observations), coaps when dtls.listen is set, and admin HTTP.
EXPOSE 5683/udp 5684/udp 8080/tcp
ENV RUST_LOG=info
# The gateway shuts down in order on SIGTERM; give it `docker stop -t 15`-ish time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/coap-gateway", "--config", "/etc/coap-gateway/config.yaml"]
