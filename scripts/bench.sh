#!/usr/bin/env bash
# Compares moat with runc on this machine, in one run, alternating the two so
# that both see the same load. Prints the median of each and the ratio.
#   N=20 scripts/bench.sh     (run it through `make bench`)
set -euo pipefail
N=${N:-20}
MOAT=${MOAT:-/usr/local/bin/moat}
RUNC=${RUNC:-$(command -v runc)}
DOCKER=${DOCKER:-/usr/bin/docker}
work=$(mktemp -d /tmp/moat-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# time_pair NAME-A CMD-A NAME-B CMD-B: alternate, N runs each.
time_pair() {
  local a=$1 acmd=$2 b=$3 bcmd=$4 i t0
  : >"$work/a"; : >"$work/b"
  i=0
  eval "$acmd" >/dev/null 2>&1; eval "$bcmd" >/dev/null 2>&1 # warm caches
  for i in $(seq "$N"); do
    t0=$(date +%s%N); eval "$acmd" >/dev/null; ms "$t0" >>"$work/a"
    t0=$(date +%s%N); eval "$bcmd" >/dev/null; ms "$t0" >>"$work/b"
  done
  local ma mb
  ma=$(median <"$work/a"); mb=$(median <"$work/b")
  printf '| %-44s | %8s ms | %8s ms | %5s |\n' "$a vs $b" "$ma" "$mb" \
    "$(awk -v x="$ma" -v y="$mb" 'BEGIN {printf "%.2f", (y ? x/y : 0)}')"
}

# The bundle: busybox `true`.
scripts/mkrootfs.sh "$work/bundle/rootfs"
(cd "$work/bundle" && "$MOAT" spec && jq '.process.terminal=false | .process.args=["true"]' config.json >c && mv c config.json)

# A 1 GB image: busybox plus 1 GiB in 64 files.
big=moat-bench/big:1g
if ! "$DOCKER" image inspect "$big" >/dev/null 2>&1; then
  cp -a "$work/bundle/rootfs" "$work/big"
  mkdir -p "$work/big/data"
  for i in $(seq 64); do head -c 16M /dev/urandom >"$work/big/data/f$i"; done
  tar -C "$work/big" -c . | "$DOCKER" import -c 'CMD ["/bin/sh"]' - "$big" >/dev/null
  rm -rf "$work/big"
fi

# runc built from the libcontainer moat is built on, run in a user namespace of
# its own: the same kernel work as a moat container, without moat's own steps.
# It tells moat's cost apart from what a newer libcontainer and a user namespace
# cost against the distribution's runc. SAME_LIB=0 skips it.
samelib=
if [ "${SAME_LIB:-1}" != 0 ]; then
  GO=${GO:-go}
  ver=$("$GO" list -m -f '{{.Version}}' github.com/opencontainers/runc)
  src=$("$GO" mod download -json "github.com/opencontainers/runc@$ver" | jq -r .Dir)
  (cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=1 "$GO" build -buildvcs=false -tags seccomp -o "$work/runc-$ver" .)
  samelib="$work/runc-$ver"
  mkdir -p "$work/userns"
  chmod 755 "$work" # the container's root, a host uid of its own, walks to the rootfs
  # A fixed range far above moat's pool; busybox `true` only reads the rootfs.
  jq --arg r "$work/bundle/rootfs" '.root.path=$r | .linux.namespaces += [{"type":"user"}]
      | .linux.uidMappings=[{"containerID":0,"hostID":3000000000,"size":65536}]
      | .linux.gidMappings=[{"containerID":0,"hostID":3000000000,"size":65536}]' \
    "$work/bundle/config.json" >"$work/userns/config.json"
fi

echo "moat $("$MOAT" --version | head -1 | cut -d' ' -f3), $("$RUNC" --version | head -1), $N runs each, $(nproc) cores, $(uname -r)"
printf '| %-44s | %11s | %11s | %5s |\n' "measurement (median)" "first" "second" "ratio"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------" "-------------" "-------------" "-------"
time_pair "bundle run true: moat" "$MOAT --root $work/moat run --bundle $work/bundle b\$i" \
          "runc" "$RUNC --root $work/runc run --bundle $work/bundle b\$i"
if [ -n "$samelib" ]; then
  time_pair "bundle run true: moat" "$MOAT --root $work/moat run --bundle $work/bundle c\$i" \
            "runc $ver, userns" "$samelib --root $work/runc run --bundle $work/userns c\$i"
fi
time_pair "docker run --rm busybox true: moat" "$DOCKER run --rm --runtime moat moat-test/busybox:2 true" \
          "runc" "$DOCKER run --rm --runtime runc moat-test/busybox:2 true"
time_pair "docker run --rm true under moat: 1 GB image" "$DOCKER run --rm --runtime moat $big true" \
          "busybox" "$DOCKER run --rm --runtime moat moat-test/busybox:2 true"

# At scale: many containers through dockerd (SCALE=0 skips it).
if [ "${SCALE:-1}" != 0 ]; then
  "$(dirname "$0")/bench-scale.sh"
fi

# What mount vetting costs (VET=0 skips it).
if [ "${VET:-1}" != 0 ]; then
  "$(dirname "$0")/bench-vet.sh"
fi

# What the /proc and /sys views cost (VIEWS=0 skips it).
if [ "${VIEWS:-1}" != 0 ]; then
  "$(dirname "$0")/bench-views.sh"
fi
