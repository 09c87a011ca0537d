# syntax=docker/dockerfile:1
#
# cronbyte's container image:
#   docker build -t cronbyte .
#   docker run --stop-timeout 20 -p 9464:9464 -v cronbyte-data:/var/lib/cronbyte \
#     -v "$PWD/cronbyte.toml:/etc/cronbyte/cronbyte.toml:ro" cronbyte
#
# --stop-timeout: cronbyte exits within 10 s of SIGTERM, which is exactly Docker's default
# grace period; 20 s keeps a slow shutdown from ending in SIGKILL.

# The builder and the runtime share one Debian release, so the binary finds the glibc it
# was linked against.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /build

# Dependencies are compiled against stand-in sources first, so this layer is reused until
# Cargo.toml or Cargo.lock change, instead of recompiling every crate on each edit of src/.
# cargo refuses a manifest whose declared targets are missing, so the [[bench]] gets a
# stand-in too; the image never builds benches, so that stand-in stays for the real build.
# (deploy/docker/check.py replays these steps and fails when a stand-in is missing.)
# .cargo/config.toml packs the binary's relocations (see the file), for both builds.
COPY .cargo ./.cargo
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/hot_paths.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/cronbyte* target/release/deps/cronbyte-* \
      target/release/deps/libcronbyte-* target/release/.fingerprint/cronbyte-*

# The stand-in's fingerprints are gone and the real sources are newer, so cargo cannot
# mistake the stand-in binary for an up-to-date build of the real one.
# config/ is compiled in too: `cronbyte default-config` prints the documented example.
COPY build.rs ./
COPY migrations ./migrations
COPY config ./config
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && install -D -m 0755 target/release/cronbyte /out/cronbyte

FROM debian:${DEBIAN_RELEASE}-slim

# reqwest speaks TLS through rustls, which needs the system's CA roots and nothing else.
# The version is left to the release: Debian replaces it in point and security updates,
# and a pinned one would stop the image from building the day that happens.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so Kubernetes' runAsNonRoot can verify it and a bind-mounted host
# directory can be chowned to it ahead of time.
RUN groupadd --system --gid 10001 cronbyte \
 && useradd --system --uid 10001 --gid cronbyte --no-create-home \
      --home-dir /var/lib/cronbyte --shell /usr/sbin/nologin cronbyte \
 && install -d -o cronbyte -g cronbyte -m 0700 /var/lib/cronbyte

COPY --from=builder /out/cronbyte /usr/local/bin/cronbyte
COPY deploy/docker/cronbyte.toml /etc/cronbyte/cronbyte.toml

LABEL org.opencontainers.image.title="cronbyte" \
      org.opencontainers.image.description="Runs Airbyte syncs on cron rules, keeps their history in SQLite and exports Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0"

# The default 127.0.0.1 would be unreachable from outside the container's network
# namespace, for Prometheus and for the platform's probes alike.
ENV CRONBYTE__SERVER__LISTEN=0.0.0.0:9464

# A config without [store].path puts the history here too, on the volume, rather than in
# the container's writable layer where it would vanish with the container.
WORKDIR /var/lib/cronbyte
# Declared after the directory is created and chowned, so a new named volume starts out
# owned by the image's user.
VOLUME ["/var/lib/cronbyte"]
USER 10001:10001

EXPOSE 9464
STOPSIGNAL SIGTERM
# The image has no curl or wget; cronbyte asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/cronbyte", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/cronbyte"]
CMD ["run", "--config", "/etc/cronbyte/cronbyte.toml"]
