#!/usr/bin/env bash
# Installs what the container and arm64 checks need on a Debian host (run as root): podman/buildah to build and
# run images, mmdebstrap to build the local Debian base (no registry is needed), qemu-user-static to run an
# arm64 Python. Skips the install when everything is already there. Safe to run again.
set -euo pipefail
need=()
for tool in podman buildah skopeo mmdebstrap runc qemu-aarch64-static newuidmap; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends podman buildah skopeo umoci mmdebstrap runc uidmap qemu-user-static >/dev/null
fi
# crun (podman's default) fails on this kind of host (rlimits, hybrid cgroups); runc works with these limits.
conf=/etc/containers/containers.conf
if ! grep -qs 'runtime="runc"' "$conf"; then
  mkdir -p /etc/containers
  cat >> "$conf" <<'CONF'
[engine]
runtime="runc"

[containers]
default_ulimits=["nofile=1024:1024","nproc=1024:1024"]
CONF
fi
echo "host_setup: podman $(podman --version | awk '{print $3}'), buildah $(buildah --version | awk '{print $3}'), $(qemu-aarch64-static --version | head -1)"
