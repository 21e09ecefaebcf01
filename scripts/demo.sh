#!/usr/bin/env bash
# Runs a busybox bundle with moat and prints its uid_map: the container's
# root is mapped to an unprivileged host range.
set -euo pipefail
bundle=$(mktemp -d /tmp/moat-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
"$(dirname "$0")/mkrootfs.sh" "$bundle/rootfs"
cd "$bundle"
moat spec
# A non-interactive demo: no terminal, print the mapping.
jq '.process.terminal = false | .process.args = ["cat", "/proc/self/uid_map"]' config.json >c.json && mv c.json config.json
moat run "moat-demo-$$"
