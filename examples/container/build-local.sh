#!/usr/bin/env bash
# Builds and smoke-tests the Dockerfile's runtime stage with podman and no container registry:
#   1. a Debian bookworm root made with debootstrap (packages from the Debian mirror, cached in
#      target/container/rootfs), trimmed to what distroless/cc holds: glibc, libgcc, CA certificates, tzdata,
#      and a nonroot user 65532 (no shell, no package manager);
#   2. the binary built on the host (bookworm too, so the same glibc) stands in for the `build` stage
#      (podman build --build-context build=...), so the Dockerfile's runtime stage is built verbatim;
#   3. the image runs read-only, as 65532, all capabilities dropped, with no database reachable:
#      /-/healthy answers and the Kanary targets are fail-safe (up=1, error{reason="db_error"}=1).
# Needs root (debootstrap, podman), debootstrap and podman (apt-get install debootstrap podman).
#   examples/container/build-local.sh [BINARY]     (default target/release/sql-signal-exporter)
#   BUILD_ONLY=1 examples/container/build-local.sh  (build the image, skip step 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
work=$repo/target/container
bin=${1:-target/release/sql-signal-exporter}
base_tag=localhost/sql-signal-exporter-base:bookworm
tag=localhost/sql-signal-exporter:local
[ -x "$bin" ] || { echo "no binary at $bin: run cargo build --release --locked first" >&2; exit 2; }
mkdir -p "$work"

# 1. The base.
if [ ! -e "$work/rootfs/.complete" ]; then
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" http://deb.debian.org/debian \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  touch "$work/rootfs/.complete"
fi
rootfs=$work/rootfs
base=$work/base
rm -rf "$base" && mkdir -p "$base"/etc "$base"/tmp "$base"/proc "$base"/dev "$base"/sys
# The merged-/usr symlinks (lib -> usr/lib, lib64 -> usr/lib64, ...).
for l in bin sbin lib lib64; do [ -L "$rootfs/$l" ] && cp -a "$rootfs/$l" "$base/"; done
# Every file of the packages, at its real path behind those symlinks.
dpkg-query --admindir="$rootfs/var/lib/dpkg" -L libc6 libgcc-s1 ca-certificates |
  while read -r p; do
    case $p in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/usr/share/locale/*) continue ;; esac
    [ -e "$rootfs$p" ] || [ -L "$rootfs$p" ] || continue
    [ -d "$rootfs$p" ] && [ ! -L "$rootfs$p" ] && continue
    real=$(cd "$rootfs$(dirname "$p")" && pwd -P)
    case $real in "$rootfs"*) ;; *) echo "path escapes the root: $p" >&2; exit 1 ;; esac
    mkdir -p "$base${real#"$rootfs"}" && cp -a "$rootfs$p" "$base${real#"$rootfs"}/"
  done
cp -a "$rootfs/etc/ssl" "$base/etc/"          # ca-certificates.crt is made by the package's postinst
mkdir -p "$base/usr/share" && cp -a "$rootfs/usr/share/zoneinfo" "$base/usr/share/"   # tzdata, in one go
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$base/etc/group"
chmod 1777 "$base/tmp"
tar -C "$base" --numeric-owner -cf - . | podman import --quiet - "$base_tag" >/dev/null

# 2. The runtime stage of the Dockerfile, the host binary as the build stage's /out.
rm -rf "$work/prebuilt" && install -D -m 0755 "$bin" "$work/prebuilt/out/sql-signal-exporter"
strip "$work/prebuilt/out/sql-signal-exporter" 2>/dev/null || true
podman build --quiet --build-context build="$work/prebuilt" --build-arg RUNTIME_IMAGE="$base_tag" \
  -t "$tag" -f Dockerfile . >/dev/null
echo "image $tag: $(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MiB", $1/1048576}')," \
     "user $(podman image inspect --format '{{.Config.User}}' "$tag")"

# 3. Run it as a pod would: read-only root, non-root, no database reachable. `podman run` needs an
# OCI runtime that works on this host (crun refuses hybrid cgroup v1/v2 hosts, e.g. some CI sandboxes),
# so the image's own filesystem (podman image mount) is run with the image's ENTRYPOINT, CMD and USER
# under chroot in a private mount namespace, read-only; `podman run --read-only --cap-drop ALL` too
# when the runtime works here.
[ -n "${BUILD_ONLY:-}" ] && exit 0
fail() { echo "FAIL: $*" >&2; [ -f "$work/run.log" ] && tail -20 "$work/run.log" >&2; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Checks a running exporter on $1: probes, and the 24 Kanary targets fail-safe (no database).
check_running() {
  local port=$1 metrics up db_error
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/-/healthy" >/dev/null || fail "/-/healthy"
  curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null || fail "/-/ready within 10 s"
  metrics=$(curl -fsS "http://127.0.0.1:$port/metrics") || fail "/metrics"
  up=$(grep -cE '^kanary_up\{.*\} 1$' <<<"$metrics" || true)
  db_error=$(grep -cE '^kanary_error\{.*reason="db_error".*\} 1$' <<<"$metrics" || true)
  [ "$up" = 24 ] && [ "$db_error" = 24 ] || fail "expected 24 fail-safe targets, got kanary_up=1: $up, db_error=1: $db_error"
}
dsn='postgresql://nobody@127.0.0.1:1/none?sslmode=disable'
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
entry=$(podman image inspect --format '{{range .Config.Entrypoint}}{{.}} {{end}}{{range .Config.Cmd}}{{.}} {{end}}' "$tag")
[ "$user" = 65532:65532 ] || fail "image USER is $user"
mnt=$(podman image mount "$tag")
trap 'podman image unmount "$tag" >/dev/null 2>&1 || true' EXIT
grep -q 'BEGIN CERTIFICATE' "$mnt/etc/ssl/certs/ca-certificates.crt" || fail "no CA certificates in the image"
port=$(free_port)
# shellcheck disable=SC2086 # $entry is the image's argv, space-separated
unshare --mount --propagation private --fork --kill-child bash -c '
  set -e
  root=$(mktemp -d)
  mount --bind "$1" "$root" && mount -o remount,bind,ro "$root" && mount -t proc proc "$root/proc"
  shift
  exec /usr/bin/env -i CONNECTION_STRING="$1" /usr/sbin/chroot --userspec="$2" "$root" "${@:3}"
' _ "$mnt" "$dsn" "$user" $entry --web.listen-address="127.0.0.1:$port" > "$work/run.log" 2>&1 &
pid=$!
# unshare --fork ignores SIGTERM while it waits: stop the exporter itself, then unshare returns.
stop_chroot() { pkill -TERM -P "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap 'stop_chroot; podman image unmount "$tag" >/dev/null 2>&1 || true' EXIT
check_running "$port"
uid=$(awk '/^Uid:/ {print $2}' "/proc/$(pgrep -P "$pid" -f sql-signal-exporter | head -1)/status" 2>/dev/null || true)
[ "$uid" = 65532 ] || fail "the exporter runs as uid '$uid'"
echo "ok (image filesystem, chroot): read-only root, uid $uid, ENTRYPOINT+CMD '$entry', /-/healthy and /-/ready 200, 24 Kanary targets fail-safe"

if podman run --rm "$tag" --version >/dev/null 2>"$work/podman-run.err"; then
  name=sql-signal-exporter-smoke-$$
  port=$(free_port)
  podman run -d --name "$name" --network host --read-only --cap-drop ALL --security-opt no-new-privileges \
    -e CONNECTION_STRING="$dsn" "$tag" --rules=/etc/sql-signal-exporter/rules/kanary.yaml \
    --web.listen-address="127.0.0.1:$port" >/dev/null
  trap 'podman rm -f "$name" >/dev/null 2>&1; stop_chroot; podman image unmount "$tag" >/dev/null 2>&1 || true' EXIT
  check_running "$port"
  echo "ok (podman run --read-only --cap-drop ALL): the same"
else
  echo "podman run is not possible on this host, checked under chroot only: $(tail -1 "$work/podman-run.err")"
fi
