#!/usr/bin/env bash
# moat at scale, through dockerd, against runc on the same machine:
#   1. 100 `docker run -d ... sleep 600`, 10 at a time: time, all started,
#      distinct ID ranges;
#   2. `docker run --rm true` with none and with 200 moat containers running;
#   3. what stays resident per running container: moat processes (none are
#      expected: moat exits once the container runs) and the shim's memory.
# Run it through `make bench` (SCALE=0 skips it). It removes every container
# it started, by name, even when interrupted.
set -euo pipefail
DOCKER=${DOCKER:-/usr/bin/docker}
MOAT=${MOAT:-/usr/local/bin/moat}
IMAGE=${IMAGE:-moat-test/busybox:2}
RUNS=${SCALE_RUNS:-100}
PAR=${SCALE_PAR:-10}
MANY=${SCALE_MANY:-200}
K=${SCALE_K:-10}
tag=moatscale$$

cleanup() {
  "$DOCKER" ps -aq --filter "name=^$tag" | xargs -r -n 50 "$DOCKER" rm -f >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%.2f", (y ? x/y : 0)}'; }
row() { printf '| %-52s | %10s | %10s | %5s |\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }

# start_many RUNTIME N PREFIX: N detached sleepers, PAR at a time; prints ms.
start_many() {
  local rt=$1 n=$2 prefix=$3 t0
  t0=$(date +%s%N)
  seq "$n" | xargs -P "$PAR" -I{} "$DOCKER" run -d --name "$prefix-{}" --runtime "$rt" "$IMAGE" sleep 600 >/dev/null
  ms "$t0"
}

running() { "$DOCKER" ps -q --filter "name=^$1-" | wc -l; }

# shim_kb PREFIX: the summed RSS of the shims of PREFIX's containers, in kB.
shim_kb() {
  local total=0 pid ppid
  for id in $("$DOCKER" ps -q --no-trunc --filter "name=^$1-"); do
    pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$id")
    ppid=$(awk '{print $4}' "/proc/$pid/stat")
    total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$ppid/status")))
  done
  echo "$total"
}

# life_ms RUNTIME: median of K `docker run --rm true`.
life_ms() {
  local i t0
  for i in $(seq "$K"); do
    t0=$(date +%s%N); "$DOCKER" run --rm --runtime "$1" "$IMAGE" true >/dev/null; ms "$t0"
  done | median
}

echo
echo "at scale: $RUNS containers started $PAR at a time, then $MANY running; $(nproc) cores"
printf '| %-52s | %10s | %10s | %5s |\n' "measurement" "moat" "runc" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------------------" "------------" "------------" "-------"

t_runc=$(start_many runc "$RUNS" "$tag-runc")
t_moat=$(start_many moat "$RUNS" "$tag-moat")
n_runc=$(running "$tag-runc"); n_moat=$(running "$tag-moat")
ranges=$("$MOAT" ids | awk 'NR>1 {print $3}' | sort -u | wc -l)
row "start $RUNS (ms)" "$t_moat" "$t_runc"
echo "  running: moat $n_moat, runc $n_runc; distinct moat ID ranges held: $ranges"
[ "$n_moat" = "$RUNS" ] && [ "$n_runc" = "$RUNS" ] || { echo "not every container started" >&2; exit 1; }
[ "$ranges" -ge "$RUNS" ] || { echo "only $ranges ranges for $RUNS moat containers" >&2; exit 1; }

kb_moat=$(shim_kb "$tag-moat"); kb_runc=$(shim_kb "$tag-runc")
row "shim RSS per running container (kB)" "$((kb_moat / RUNS))" "$((kb_runc / RUNS))"
moat_procs=$(pgrep -x moat | wc -l || true)
echo "  moat processes resident while $RUNS moat containers run: $moat_procs"
cleanup

none=$(life_ms moat)
start_many moat "$MANY" "$tag-many" >/dev/null
[ "$(running "$tag-many")" = "$MANY" ] || { echo "not all $MANY started" >&2; exit 1; }
busy=$(life_ms moat)
printf '| %-52s | %10s | %10s | %5s |\n' "docker run --rm true, moat: $MANY running vs none (ms)" "$busy" "$none" "$(ratio "$busy" "$none")"
