#!/usr/bin/env bash
# Registers (add) or unregisters (remove) an OCI runtime with dockerd:
#   docker-runtime.sh add NAME PATH [RUNTIME_ARGS...]
#   docker-runtime.sh remove NAME
# Merges into /etc/docker/daemon.json (made as {} if missing), leaving the
# rest of it alone. If dockerd runs, it rereads its runtimes on SIGHUP; the
# script returns once `docker info` shows the runtime as configured (or
# no longer shows it).
# This is the one place that edits daemon.json (scripts/testenv.sh and the
# integration tests call it).
set -euo pipefail
CONF=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
DOCKER=${DOCKER:-/usr/bin/docker}
PIDFILE=${DOCKER_PIDFILE:-/var/run/docker.pid}

usage() {
  echo "usage: $0 add NAME PATH [RUNTIME_ARGS...] | remove NAME" >&2
  exit 2
}

[ $# -ge 2 ] || usage
op=$1 name=$2
shift 2
case $op in
  add)
    [ $# -ge 1 ] || usage
    path=$1
    shift
    filter='.runtimes[$n] = {path: $p} + (if $a == [] then {} else {runtimeArgs: $a} end)'
    ;;
  remove)
    [ $# -eq 0 ] || usage
    path=
    filter='del(.runtimes[$n])'
    ;;
  *) usage ;;
esac

mkdir -p "$(dirname "$CONF")"
[ -s "$CONF" ] || echo '{}' >"$CONF"
# jq 1.6 would read runtime args such as --config as its own options.
args='[]'
for a in "$@"; do args=$(jq -c --arg a "$a" '. + [$a]' <<<"$args"); done
new=$(jq --arg n "$name" --arg p "$path" --argjson a "$args" "$filter" "$CONF")
if [ "$new" != "$(jq . "$CONF")" ]; then
  printf '%s\n' "$new" >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
fi

# dockerd reports each runtime as daemon.json has it (null: not there).
entry=$(jq -cS --arg n "$name" '.runtimes[$n]' <<<"$new")
in_effect() {
  [ "$("$DOCKER" info --format '{{json .Runtimes}}' 2>/dev/null |
    jq -cS --arg n "$name" '.[$n]' || echo null)" = "$entry" ]
}

# A dockerd that does not run reads the file when it starts.
"$DOCKER" info >/dev/null 2>&1 || exit 0
in_effect && exit 0
kill -HUP "$(cat "$PIDFILE")"
for _ in $(seq 150); do
  in_effect && exit 0
  sleep 0.2
done
echo "dockerd did not $op runtime $name (see its log)" >&2
exit 1
