#!/usr/bin/env bash
# What mount vetting costs, against runc on this machine in the same run:
# a trapped mount/umount, an untrapped call, what the helper adds to a
# create, one container's calls while another loops on mount, and the
# helper's memory per container (SCALE=0 skips the last).
#   N=10 CALLS=300 scripts/bench-vet.sh     (run it through `make bench`)
set -euo pipefail
N=${N:-10}
CALLS=${CALLS:-300}
MANY=${MANY:-100}
MOAT=${MOAT:-/usr/local/bin/moat}
DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=${IMAGE:-moat-test/busybox:2}
work=$(mktemp -d /tmp/moat-bench-vet.XXXXXX)
chmod 755 "$work"
started=()
cleanup() {
  if [ ${#started[@]} -gt 0 ]; then "$DOCKER" rm -f "${started[@]}" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", (y ? x/y : 0)}'; }
row() { printf '| %-52s | %11s | %11s | %6s |\n' "$@"; }

# A static program that makes the calls in a loop: the shell's own forks
# would drown the cost of one call.
gcc -O2 -static -o "$work/callloop" "$(dirname "$0")/bench/callloop.c"

start() { # variable, runtime, options...
  local var=$1 rt=$2 id; shift 2
  id=$("$DOCKER" run -d --runtime "$rt" -v "$work:/b:ro" "$@" "$IMAGE" sleep 3600)
  started+=("$id")
  printf -v "$var" %s "$id"
}
# Debian's runc 1.1.5 cannot start --privileged containers on this kernel
# ("unable to apply caps"): its nearest is SYS_ADMIN with no seccomp filter.
start moat_cap moat --cap-add SYS_ADMIN
start moat_priv moat --privileged
start runc_cap runc --cap-add SYS_ADMIN
start runc_unconf runc --cap-add SYS_ADMIN --security-opt seccomp=unconfined

# pair NAME CONTAINER-A ARGS-A CONTAINER-B ARGS-B: alternate, N runs each,
# ns per call from callloop.
pair() {
  local name=$1 a=$2 aargs=$3 b=$4 bargs=$5
  : >"$work/a"; : >"$work/b"
  for _ in $(seq "$N"); do
    # shellcheck disable=SC2086
    "$DOCKER" exec "$a" /b/callloop $aargs >>"$work/a"
    # shellcheck disable=SC2086
    "$DOCKER" exec "$b" /b/callloop $bargs >>"$work/b"
  done
  local ma mb
  ma=$(median <"$work/a"); mb=$(median <"$work/b")
  row "$name" "$((ma / 1000)).$(((ma % 1000) / 100)) us" "$((mb / 1000)).$(((mb % 1000) / 100)) us" "$(ratio "$ma" "$mb")"
  echo "$ma $mb" >"$work/last"
}

echo "mount vetting: moat $("$MOAT" --version | head -1 | cut -d' ' -f3), $N runs each, $(nproc) cores, $(uname -r)"
row "measurement (median, per call)" "moat" "runc" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------------------" "-------------" "-------------" "--------"
pair "mount+umount tmpfs, both --cap-add SYS_ADMIN" "$moat_cap" "mount $CALLS /tmp" "$runc_cap" "mount $CALLS /tmp"
read -r m r <"$work/last"
added_cap=$(( (m - r) / 1000 ))
pair "mount+umount tmpfs, moat --privileged, runc unconfined" "$moat_priv" "mount $CALLS /tmp" "$runc_unconf" "mount $CALLS /tmp"
read -r m r <"$work/last"
added_priv=$(( (m - r) / 1000 ))
pair "getpid, both --cap-add SYS_ADMIN (docker's profile)" "$moat_cap" "getpid 200000" "$runc_cap" "getpid 200000"
pair "getpid, moat --privileged, runc unconfined" "$moat_priv" "getpid 200000" "$runc_unconf" "getpid 200000"
echo
echo "added per vetted call: ${added_cap} us (cap-add), ${added_priv} us (privileged)"

# Another container looping on mount: how much slower are this one's calls?
spinner=$("$DOCKER" run -d --runtime moat --cap-add SYS_ADMIN -v "$work:/b:ro" --entrypoint /b/callloop "$IMAGE" spin /tmp)
started+=("$spinner")
: >"$work/busy"
for _ in $(seq "$N"); do "$DOCKER" exec "$moat_cap" /b/callloop mount "$CALLS" /tmp >>"$work/busy"; done
"$DOCKER" rm -f "$spinner" >/dev/null
: >"$work/quiet"
for _ in $(seq "$N"); do "$DOCKER" exec "$moat_cap" /b/callloop mount "$CALLS" /tmp >>"$work/quiet"; done
busy=$(median <"$work/busy"); quiet=$(median <"$work/quiet")
echo "a vetted call while another container loops on mount: $((busy / 1000)) us against $((quiet / 1000)) us alone: $(ratio "$busy" "$quiet")x"

# What the helper adds to a create: greeting it and confirming the hand-over
# (logged by moat --debug), in a bundle run of `true` with the helper up.
scripts_dir=$(dirname "$0")
"$scripts_dir/mkrootfs.sh" "$work/bundle/rootfs"
(cd "$work/bundle" && "$MOAT" spec && jq '.process.terminal=false | .process.args=["true"]' config.json >c && mv c config.json)
: >"$work/greet"; : >"$work/confirm"
for i in $(seq "$((N * 2))"); do
  "$MOAT" --debug --root "$work/root" run --bundle "$work/bundle" "v$i" 2>"$work/log" >/dev/null
  for what in greet:"helper greeted" confirm:"vetting confirmed"; do
    grep -o "${what#*:} in [0-9.]*[µm]*s" "$work/log" | awk '{d = $NF
      if (d ~ /µs$/) print d + 0; else if (d ~ /ms$/) print d * 1000; else print d * 1000000}' >>"$work/${what%%:*}"
  done
done
echo "helper's part of a create: greeting $(median <"$work/greet") us, confirming the hand-over $(median <"$work/confirm") us (medians of $((N * 2)))"

# The helper's and keeper's memory with MANY more containers.
rss() { # pid -> KiB
  awk '/^VmRSS/ {print $2}' "/proc/$1/status"
}
if [ "${SCALE:-1}" != 0 ]; then
  hp=$("$MOAT" helper status | awk '/^pid/ {print $2}')
  kp=$("$MOAT" helper status | awk '/^keeper/ {print $2}')
  before=$(( $(rss "$hp") + $(rss "$kp") ))
  mkdir "$work/many"
  for i in $(seq "$MANY"); do
    "$DOCKER" run -d --runtime moat --cap-add SYS_ADMIN "$IMAGE" sleep 3600 >"$work/many/$i" &
    if (( i % 10 == 0 )); then wait; fi
  done
  wait
  mapfile -t many < <(cat "$work/many"/*)
  started+=("${many[@]}")
  hp2=$("$MOAT" helper status | awk '/^pid/ {print $2}')
  kp2=$("$MOAT" helper status | awk '/^keeper/ {print $2}')
  after=$(( $(rss "$hp2") + $(rss "$kp2") ))
  served=$("$MOAT" helper status | awk '/^containers/ {print NF - 1}')
  echo "helper + keeper resident: ${before} KiB with 4 containers, ${after} KiB with ${served}: $(( (after - before) / (served - 4) )) KiB per container"
fi
