#!/usr/bin/env bash
# moat at scale, through dockerd, against runc on the same machine:
#   1. 100 `docker run -d ... sleep 600`, 10 at a time, in four batches on
#      an otherwise empty host (runc, moat, moat, runc): time, all started,
#      distinct ID ranges;
#   2. with none and with 200 moat containers running, both runtimes
#      alternately: `docker run --rm true`, and `run` of a bundle shaped like
#      docker's (an overlay rootfs, bind-mounted files), which is the
#      runtime's own create, start and delete without dockerd;
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
RUNC=${RUNC:-$(command -v runc)}
tag=moatscale$$
work=$(mktemp -d /tmp/moat-scale.XXXXXX)

cleanup() {
  "$DOCKER" ps -aq --filter "name=^$tag" | xargs -r -n 50 "$DOCKER" rm -f >/dev/null 2>&1 || true
}
finish() {
  cleanup
  umount "$work/bundle/rootfs" 2>/dev/null || true
  rm -rf "$work"
}
trap finish EXIT INT TERM

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

# The bundle: busybox `true` on an overlay, as docker and containerd mount
# it, with files bound in as docker binds /etc/hosts and /etc/resolv.conf.
"$(dirname "$0")/mkrootfs.sh" "$work/lower"
mkdir -p "$work/upper" "$work/ovwork" "$work/bundle/rootfs"
mount -t overlay overlay -o "lowerdir=$work/lower,upperdir=$work/upper,workdir=$work/ovwork" "$work/bundle/rootfs"
echo "127.0.0.1 localhost" >"$work/hosts"
echo "nameserver 127.0.0.1" >"$work/resolv.conf"
(cd "$work/bundle" && "$MOAT" spec && jq --arg w "$work" '.process.terminal=false | .process.args=["true"]
    | .mounts += [{"destination":"/etc/hosts","type":"bind","source":($w+"/hosts"),"options":["rbind","ro"]},
                  {"destination":"/etc/resolv.conf","type":"bind","source":($w+"/resolv.conf"),"options":["rbind","ro"]}]' \
    config.json >c && mv c config.json)

# measure WHEN: K rounds, each of `docker run --rm true` and a bundle `run`
# under both runtimes; sets the medians docker_moat_WHEN, docker_runc_WHEN,
# bundle_moat_WHEN and bundle_runc_WHEN.
measure() {
  local when=$1 i t0 rt
  : >"$work/t"
  for i in $(seq "$K"); do
    for rt in moat runc; do
      t0=$(date +%s%N); "$DOCKER" run --rm --runtime "$rt" "$IMAGE" true >/dev/null; echo "docker_$rt $(ms "$t0")" >>"$work/t"
    done
    t0=$(date +%s%N); "$MOAT" --root "$work/moat" run --bundle "$work/bundle" "$when$i" >/dev/null; echo "bundle_moat $(ms "$t0")" >>"$work/t"
    t0=$(date +%s%N); "$RUNC" --root "$work/runc" run --bundle "$work/bundle" "$when$i" >/dev/null; echo "bundle_runc $(ms "$t0")" >>"$work/t"
  done
  for k in docker_moat docker_runc bundle_moat bundle_runc; do
    printf -v "${k}_$when" '%s' "$(awk -v k="$k" '$1 == k {print $2}' "$work/t" | median)"
  done
}

echo
echo "at scale: $RUNS containers started $PAR at a time, then $MANY running; $(nproc) cores"
printf '| %-52s | %10s | %10s | %5s |\n' "measurement" "moat" "runc" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------------------" "------------" "------------" "-------"

# batch RUNTIME ROUND: starts RUNS containers on a host with none of the
# benchmark's running, checks them, records what they keep resident, and
# removes them again; sets t_RUNTIME_ROUND (ms) and kb_RUNTIME (kB per shim).
batch() {
  local rt=$1 round=$2 prefix="$tag-$1-$2" t n
  t=$(start_many "$rt" "$RUNS" "$prefix")
  n=$(running "$prefix")
  [ "$n" = "$RUNS" ] || { echo "$rt: $n of $RUNS containers started" >&2; exit 1; }
  if [ "$rt" = moat ]; then
    ranges=$("$MOAT" ids | awk 'NR>1 {print $3}' | sort -u | wc -l)
    [ "$ranges" -ge "$RUNS" ] || { echo "only $ranges ranges for $RUNS moat containers" >&2; exit 1; }
    moat_procs=$(pgrep -x moat | wc -l || true)
  fi
  printf -v "t_${rt}_$round" '%s' "$t"
  printf -v "kb_$rt" '%s' "$(( $(shim_kb "$prefix") / RUNS ))"
  cleanup
}
# Each batch starts on a host without the other's containers, in the order
# runc, moat, moat, runc, so that neither runtime always goes first.
batch runc 1; batch moat 1; batch moat 2; batch runc 2
t_moat=$(( (t_moat_1 + t_moat_2) / 2 )); t_runc=$(( (t_runc_1 + t_runc_2) / 2 ))
row "start $RUNS, mean of 2 batches (ms)" "$t_moat" "$t_runc"
echo "  batches: moat $t_moat_1 and $t_moat_2 ms, runc $t_runc_1 and $t_runc_2 ms; every container started;"
echo "  distinct moat ID ranges held: $ranges"
row "shim RSS per running container (kB)" "$kb_moat" "$kb_runc"
echo "  moat processes resident while $RUNS moat containers run: $moat_procs"

measure none
start_many moat "$MANY" "$tag-many" >/dev/null
[ "$(running "$tag-many")" = "$MANY" ] || { echo "not all $MANY started" >&2; exit 1; }
measure busy
row "docker run --rm true, none running (ms)" "$docker_moat_none" "$docker_runc_none"
row "docker run --rm true, $MANY moat running (ms)" "$docker_moat_busy" "$docker_runc_busy"
row "bundle run, none running (ms)" "$bundle_moat_none" "$bundle_runc_none"
row "bundle run, $MANY moat running (ms)" "$bundle_moat_busy" "$bundle_runc_busy"
echo
echo "growth with $MANY moat containers running (ratio: $MANY running / none)"
printf '| %-52s | %10s | %10s | %5s |\n' "runtime and measurement" "$MANY running" "none" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------------------" "------------" "------------" "-------"
row "moat, docker run --rm true (ms)" "$docker_moat_busy" "$docker_moat_none"
row "runc, docker run --rm true (ms)" "$docker_runc_busy" "$docker_runc_none"
row "moat, bundle run (ms)" "$bundle_moat_busy" "$bundle_moat_none"
row "runc, bundle run (ms)" "$bundle_runc_busy" "$bundle_runc_none"
