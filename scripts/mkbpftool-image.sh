#!/usr/bin/env bash
# Builds the test image $1 (default moat-test/bpftool:1): the busybox rootfs of
# mkrootfs.sh plus Debian's bpftool, the libraries it links and the dynamic
# loader, each at the path ldd names. No registry is reachable, so the image
# is imported from a tarball. Installs the bpftool package when it is missing.
set -euo pipefail
image=${1:-moat-test/bpftool:1}
DOCKER=${DOCKER:-/usr/bin/docker}
here=$(cd "$(dirname "$0")" && pwd)

find_bpftool() {
  local p
  for p in /usr/sbin/bpftool /sbin/bpftool /usr/bin/bpftool; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

if ! bin=$(find_bpftool); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bpftool >/dev/null
  bin=$(find_bpftool) || { echo "bpftool not found after installing the package" >&2; exit 1; }
fi
# Some distributions ship a shell wrapper that picks a per-kernel binary; we
# need the ELF program itself.
if [ "$(head -c 4 "$bin")" != $'\x7fELF' ]; then
  echo "$bin is not an ELF binary; cannot build $image from it" >&2
  exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
"$here/mkrootfs.sh" "$rootfs"

copy() { # host path -> same path in the rootfs, symlinks followed
  mkdir -p "$rootfs$(dirname "$1")"
  cp -L "$1" "$rootfs$1"
}
copy "$bin"
# ldd prints "libx.so => /path (addr)" for libraries and "/path (addr)" for
# the loader; linux-vdso has no file.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
[ -n "$libs" ] || { echo "ldd listed no libraries for $bin" >&2; exit 1; }
for lib in $libs; do
  copy "$lib"
done

# The copied binary must start in the rootfs alone.
chroot "$rootfs" "$bin" version >/dev/null

tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "built $image from $bin"
