# sql-signal-exporter container image.
#
#   podman build -t sql-signal-exporter .        (or docker build; needs registry access for the bases)
#   podman run --read-only -p 8000:8000 -e CONNECTION_STRING='postgresql://…' sql-signal-exporter
#
# Rules files live in /etc/sql-signal-exporter/rules/; the image carries rules/*.yaml there and serves
# kanary.yaml by default. Mount a directory over it (a Kubernetes ConfigMap volume, never subPath) and
# pass --rules for each file. The process runs as UID/GID 65532, writes nothing to its filesystem
# (read-only root works), and the image holds the CA certificates (sslrootcert=system, HTTPS).
#
# examples/container/build-local.sh builds the runtime stage of this file without any registry: a base
# made with debootstrap and the binary built on the host (it is what CI checks).

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
# glibc, libgcc, CA certificates, tzdata and a nonroot user (65532), nothing else: no shell, no package manager.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Symbols stripped: 14.9 MiB → 12.2 MiB (Cargo.toml's release profile: size-optimised, fat LTO; symbols
# are never mapped, so stripping changes the file, not the memory). The git revision is unknown here (no
# .git in the context).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/sql-signal-exporter /out/sql-signal-exporter

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/sql-signal-exporter /usr/local/bin/sql-signal-exporter
COPY rules/ /etc/sql-signal-exporter/rules/
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/sql-signal-exporter"]
CMD ["--rules=/etc/sql-signal-exporter/rules/kanary.yaml"]
