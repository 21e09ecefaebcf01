#!/usr/bin/env bash
# Makes a minimal root filesystem from Debian's busybox-static in $1.
set -euo pipefail
dir=${1:?usage: mkrootfs.sh DIR}
mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,root,home/user}
cp /bin/busybox "$dir/bin/busybox"
for applet in $("$dir/bin/busybox" --list); do
  [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' >"$dir/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' >"$dir/etc/group"
chown 1000:1000 "$dir/home/user"
chmod 1777 "$dir/tmp"
