#!/usr/bin/env bash
# Runs a command with containerd and dockerd up, moat registered as a docker
# runtime and the test images in docker's and podman's stores. Daemons that
# were not running are started here and stopped (by their PID) when the
# command ends, whatever its result.
set -euo pipefail
MOAT=${MOAT:-/usr/local/bin/moat}
DOCKER=${DOCKER:-/usr/bin/docker}
logdir=${MOAT_TEST_LOGS:-/tmp/moat-test-logs}
mkdir -p "$logdir"
started=()

stop_started() {
  local pid
  for pid in "${started[@]}"; do
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}
trap stop_started EXIT

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$what did not come up; see $logdir" >&2
  return 1
}

if ! ctr version >/dev/null 2>&1; then
  containerd >"$logdir/containerd.log" 2>&1 &
  started+=($!)
  wait_for containerd ctr version
fi

# Register moat with dockerd; a running dockerd is reloaded, one started
# below reads it.
DOCKER="$DOCKER" scripts/docker-runtime.sh add moat "$MOAT"
if ! "$DOCKER" info >/dev/null 2>&1; then
  dockerd --containerd=/run/containerd/containerd.sock >"$logdir/dockerd.log" 2>&1 &
  started+=($!)
  wait_for dockerd "$DOCKER" info
fi

# The test image: Debian's static busybox, since no registry is reachable.
if ! "$DOCKER" image inspect moat-test/busybox:2 >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  scripts/mkrootfs.sh "$rootfs"
  tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/sh"]' - moat-test/busybox:2 >/dev/null
  rm -rf "$rootfs"
fi
# The same image in podman's store (test/podman_test.go).
if command -v podman >/dev/null && ! podman image exists moat-test/busybox:2; then
  rootfs=$(mktemp -d)
  scripts/mkrootfs.sh "$rootfs"
  tar -C "$rootfs" -c . | podman import -q -c 'CMD ["/bin/sh"]' - moat-test/busybox:2 >/dev/null
  rm -rf "$rootfs"
fi
# bpftool's image for the privileged-confinement tests (test/privileged_test.go).
if ! "$DOCKER" image inspect moat-test/bpftool:1 >/dev/null 2>&1; then
  DOCKER="$DOCKER" scripts/mkbpftool-image.sh moat-test/bpftool:1
fi

# A failing command shows the end of the helper's log: what the helper and
# its keeper saw is otherwise lost with the machine.
rc=0
"$@" || rc=$?
if [ "$rc" -ne 0 ] && [ -f /var/log/moat/helper.log ]; then
  echo "--- last lines of /var/log/moat/helper.log" >&2
  tail -n 60 /var/log/moat/helper.log >&2
fi
exit "$rc"
