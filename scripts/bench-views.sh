#!/usr/bin/env bash
# What the /proc and /sys views cost a reader: whole reads of /proc/meminfo,
# /proc/stat and /proc/cpuinfo in a moat container with the views on,
# against the kernel's own files in a runc container, alternating, in one
# run; and what the views add to a `docker run` of `true`.
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
cleanup() {
  if [ ${#started[@]} -gt 0 ]; then "$DOCKER" rm -f "${started[@]}" >/dev/null 2>&1 || true; fi
  "$here/docker-runtime.sh" remove "$rt" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", (y ? x/y : 0)}'; }
row() { printf '| %-40s | %11s | %11s | %6s |\n' "$@"; }
us() { echo "$(($1 / 1000)).$((($1 % 1000) / 100)) us"; }

gcc -O2 -static -o "$work/readloop" "$here/bench/readloop.c"
printf '[views]\nenabled = true\n' >"$work/config.toml"
"$here/docker-runtime.sh" add "$rt" "$MOAT" --config "$work/config.toml" >/dev/null

limits=(--memory 256m --cpus 1.5)
views=$("$DOCKER" run -d --runtime "$rt" "${limits[@]}" -v "$work:/b:ro" "$IMAGE" sleep 3600)
started+=("$views")
native=$("$DOCKER" run -d --runtime runc "${limits[@]}" -v "$work:/b:ro" "$IMAGE" sleep 3600)
started+=("$native")

echo "/proc views: moat $("$MOAT" --version | head -1 | cut -d' ' -f3), $N runs of $READS reads each, $(nproc) cores, $(uname -r)"
row "whole read (median)" "moat views" "runc native" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------" "-------------" "-------------" "--------"
for f in /proc/meminfo /proc/stat /proc/cpuinfo; do
  : >"$work/a"; : >"$work/b"
  for _ in $(seq "$N"); do
    "$DOCKER" exec "$views" /b/readloop "$f" "$READS" >>"$work/a"
    "$DOCKER" exec "$native" /b/readloop "$f" "$READS" >>"$work/b"
  done
  a=$(median <"$work/a"); b=$(median <"$work/b")
  row "$f" "$(us "$a")" "$(us "$b")" "$(ratio "$a" "$b")"
done

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
