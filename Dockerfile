# Multi-stage build: compile in the Rust image, run as an unprivileged user in a slim runtime.
#   docker build -t xmpp-ws-gateway .      (or podman build; README "Container image")
# CI builds this file unchanged (scripts/image-check.sh), with the two base images made locally.
#
# The whole build context goes in (minus what .dockerignore leaves out), not a hand-picked
# Cargo.toml + src: Cargo checks every target the manifest declares ([[bench]], [[bin]],
# [[example]], tests) when it loads it, so a target living outside src/ would break a build
# that copied only src/.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin xmpp-ws-gateway \
    && ./target/release/xmpp-ws-gateway --check-config config/gateway.toml

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin xmppgw
COPY --from=build /src/target/release/xmpp-ws-gateway /usr/local/bin/xmpp-ws-gateway
COPY config/gateway.toml /etc/xmpp-ws-gateway/gateway.toml
USER 10001
# Inside a container the listener must not be loopback-only.
ENV XMPPGW_LISTENER__ADDRESS=0.0.0.0:5290 \
    XMPPGW_ADMIN__ADDRESS=0.0.0.0:9290
EXPOSE 5290 9290
ENTRYPOINT ["/usr/local/bin/xmpp-ws-gateway"]
CMD ["--config", "/etc/xmpp-ws-gateway/gateway.toml"]
