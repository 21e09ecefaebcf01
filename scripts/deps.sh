#!/usr/bin/env bash
# Installs the Debian packages moat needs: "build" for compiling, "test" for
# the integration tests and benchmarks. Installs only what is missing.
set -euo pipefail
build_pkgs=(gcc make pkg-config libseccomp-dev git jq busybox-static)
# podman's default network is a CNI bridge: name the plugins, or apt may
# pick netavark for podman's network stack.
test_pkgs=(docker.io containerd runc busybox-static jq iproute2 procps bpftool podman containernetworking-plugins lxcfs)
case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "Go 1.21 or newer is needed (Debian 12 golang-go is 1.19): install it at /usr/local/go" >&2
  exit 1
fi
