package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/internal/fstest"
	"github.com/moatrt/moat/policy"
)

// The host probe on the real kernel: devices by number, and no symlink
// anywhere on the way.
func TestProbeHostNode(t *testing.T) {
	fstest.RequiresRoot(t)
	dir := t.TempDir()
	null := filepath.Join(dir, "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(null, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "d", "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want policy.Device
		err  string
	}{
		{path: null, want: policy.Device{Type: 'c', Major: 1, Minor: 3}},
		{path: "/dev/null", want: policy.Device{Type: 'c', Major: 1, Minor: 3}},
		{path: filepath.Join(dir, "link"), err: "symlink"},
		{path: filepath.Join(dir, "d", "up", "null"), err: "symlink"},
		{path: filepath.Join(dir, "file"), err: "regular file"},
		{path: filepath.Join(dir, "nothing"), err: "no such file"},
	}
	for _, tt := range tests {
		got, err := probeHostNode(tt.path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v %v, want error %q", tt.path, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %v %v, want %v", tt.path, got, err, tt.want)
		}
	}
}
