#!/usr/bin/env bash
# What the /proc and /sys views cost a reader: whole reads of /proc/meminfo,
# /proc/stat and /proc/cpuinfo in a moat container with the views on,
# against LXCFS's files bound into a runc container as LXCFS documents, and
# the kernel's own files in a runc container, alternating, in one run; and
# what the views add to a `docker run` of `true`.
#   N=10 READS=2000 scripts/bench-views.sh     (run it through `make bench`)
set -euo pipefail
N=${N:-10}
READS=${READS:-2000}
MOAT=${MOAT:-/usr/local/bin/moat}
DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${IMAGE:-moat-test/busybox:2}
here=$(dirname "$0")
work=$(mktemp -d /tmp/moat-bench-views.XXXXXX)
chmod 755 "$work"
rt=moat-bench-views
started=()
lxpid=
cleanup() {
  if [ ${#started[@]} -gt 0 ]; then "$DOCKER" rm -f "${started[@]}" >/dev/null 2>&1 || true; fi
  if [ -n "$lxpid" ]; then
    kill "$lxpid" 2>/dev/null || true
    wait "$lxpid" 2>/dev/null || true
  fi
  if mountpoint -q "$work/lxcfs" 2>/dev/null; then umount -l "$work/lxcfs"; fi
  "$here/docker-runtime.sh" remove "$rt" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", (y ? x/y : 0)}'; }
row() { printf '| %-16s | %11s | %11s | %11s | %9s | %8s |\n' "$@"; }
us() { echo "$(($1 / 1000)).$((($1 % 1000) / 100)) us"; }

gcc -O2 -static -o "$work/readloop" "$here/bench/readloop.c"
printf '[views]\nenabled = true\n' >"$work/config.toml"
"$here/docker-runtime.sh" add "$rt" "$MOAT" --config "$work/config.toml" >/dev/null

limits=(--memory 256m --cpus 1.5)
views=$("$DOCKER" run -d --runtime "$rt" "${limits[@]}" -v "$work:/b:ro" "$IMAGE" sleep 3600)
started+=("$views")
native=$("$DOCKER" run -d --runtime runc "${limits[@]}" -v "$work:/b:ro" "$IMAGE" sleep 3600)
started+=("$native")

# LXCFS 5.0 (Debian's), on a directory of this run's.
mkdir -p "$work/lxcfs"
lxcfs -f -p "$work/lxcfs.pid" "$work/lxcfs" >"$work/lxcfs.log" 2>&1 &
lxpid=$!
for _ in $(seq 100); do [ -r "$work/lxcfs/proc/meminfo" ] && break; sleep 0.05; done
lxbinds=()
for f in meminfo stat cpuinfo; do lxbinds+=(-v "$work/lxcfs/proc/$f:/proc/$f:rw"); done
lx=$("$DOCKER" run -d --runtime runc "${limits[@]}" -v "$work:/b:ro" "${lxbinds[@]}" "$IMAGE" sleep 3600)
started+=("$lx")

echo "/proc views: moat $("$MOAT" --version | head -1 | cut -d' ' -f3), $N runs of $READS reads each, $(nproc) cores, $(uname -r)"
row "whole read" "moat views" "LXCFS" "kernel" "moat/kernel" "moat/LXCFS"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------" "-------------" "-------------" "-------------" "-------------" "----------"
for f in /proc/meminfo /proc/stat /proc/cpuinfo; do
  : >"$work/a"; : >"$work/l"; : >"$work/b"
  for _ in $(seq "$N"); do
    "$DOCKER" exec "$views" /b/readloop "$f" "$READS" >>"$work/a"
    "$DOCKER" exec "$lx" /b/readloop "$f" "$READS" >>"$work/l"
    "$DOCKER" exec "$native" /b/readloop "$f" "$READS" >>"$work/b"
  done
  a=$(median <"$work/a"); l=$(median <"$work/l"); b=$(median <"$work/b")
  row "$f" "$(us "$a")" "$(us "$l")" "$(us "$b")" "$(ratio "$a" "$b")" "$(ratio "$a" "$l")"
done
# The figures each gives a container of 256 MiB, one CPU and a half.
for c in "$views" "$lx"; do
  "$DOCKER" exec "$c" sh -c 'grep -E "^(MemTotal|SwapTotal)" /proc/meminfo | tr -s " " | tr "\n" " "; echo "CPUs $(grep -c ^processor /proc/cpuinfo)"'
done | paste -d'|' - - | awk -F'|' '{print "moat: " $1 "\nLXCFS: " $2}'

# A create with the views on greets the helper and binds five files.
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
: >"$work/on"; : >"$work/off"
"$DOCKER" run --rm --runtime "$rt" "$IMAGE" true >/dev/null
for _ in $(seq "$N"); do
  t0=$(date +%s%N); "$DOCKER" run --rm --runtime "$rt" "$IMAGE" true >/dev/null; ms "$t0" >>"$work/on"
  t0=$(date +%s%N); "$DOCKER" run --rm --runtime moat "$IMAGE" true >/dev/null; ms "$t0" >>"$work/off"
done
on=$(median <"$work/on"); off=$(median <"$work/off")
echo
echo "docker run --rm of true: $on ms with the views, $off ms without: $(ratio "$on" "$off")x"
