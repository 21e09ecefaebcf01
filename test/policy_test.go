package test

import (
	"strings"
	"testing"
)

// Sharing a host namespace fails create with one message naming every
// shared namespace, and leaves nothing behind.
func TestHostNamespacesRejected(t *testing.T) {
	before := takeSnapshot(t, "/run/docker/runtime-runc/moby")
	for _, c := range []struct {
		flag string
		want string
	}{
		{"--pid=host", "[pid]"},
		{"--network=host", "network"},
		{"--ipc=host", "[ipc]"},
		{"--uts=host", "[uts]"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			n := name(t)
			r := docker("run", "--rm", "--runtime", "moat", "--name", n, c.flag, image, "true")
			if r.code == 0 {
				t.Fatalf("%s accepted: %s", c.flag, r)
			}
			msg := "OCI runtime create failed: error in the container spec: invalid or unsupported container spec: moat containers can't share namespaces "
			if !strings.Contains(r.stderr, msg) || !strings.Contains(r.stderr, c.want) ||
				!strings.Contains(r.stderr, "with the host (because they use the linux user-namespace for isolation)") {
				t.Fatalf("%s: unexpected error: %s", c.flag, r)
			}
		})
	}
	if after := takeSnapshot(t, "/run/docker/runtime-runc/moby"); after.ranges != before.ranges || after.mounts != before.mounts {
		t.Fatalf("rejected creates left state behind:\nbefore %+v\nafter  %+v", before, after)
	}
}
