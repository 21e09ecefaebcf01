package runtime

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestLoadSpecErrors(t *testing.T) {
	tests := []struct {
		name    string
		config  *string // nil: no config.json
		bundle  string  // overrides the made bundle
		wantErr string
	}{
		{name: "missing bundle", bundle: "/nonexistent/moat-bundle", wantErr: "bundle /nonexistent/moat-bundle does not exist"},
		{name: "no config", wantErr: "has no config.json"},
		{name: "syntax", config: ptr("{\n\"process\": {\n}}}"), wantErr: "line 3"},
		{name: "type", config: ptr(`{"process": {"args": "sh"}}`), wantErr: "line 1"},
		{name: "no root", config: ptr(`{"process":{"args":["sh"],"cwd":"/"},"linux":{}}`), wantErr: "root.path is required"},
		{name: "no linux", config: ptr(`{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"}}`), wantErr: "linux section is required"},
		{name: "no process", config: ptr(`{"root":{"path":"r"},"linux":{}}`), wantErr: "process is required"},
		{name: "relative cwd", config: ptr(`{"process":{"args":["sh"],"cwd":"tmp"},"root":{"path":"r"},"linux":{}}`), wantErr: "must be an absolute path"},
		{name: "ok", config: ptr(`{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != nil {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(*tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.bundle != "" {
				dir = tt.bundle
			}
			_, err := LoadSpec(dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to say %q", err, tt.wantErr)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestApplyUsernsOverridesCaller(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.UserNamespace, Path: "/proc/1/ns/user"},
			{Type: specs.CgroupNamespace, Path: "/proc/1/ns/cgroup"},
			{Type: specs.TimeNamespace, Path: "/proc/1/ns/time"},
		},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 4294967295}},
		Sysctl:      map[string]string{"net.ipv4.ping_group_range": "0 2147483647"},
	}}
	if err := applyUserns(spec, Mapping{UID: 165536, GID: 165536, Size: 65536}, ""); err != nil {
		t.Fatal(err)
	}
	count := map[specs.LinuxNamespaceType]int{}
	for _, ns := range spec.Linux.Namespaces {
		count[ns.Type]++
		if ns.Type != specs.PIDNamespace && ns.Path != "" {
			t.Errorf("%s namespace keeps the caller's path %q", ns.Type, ns.Path)
		}
	}
	for _, typ := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace} {
		if count[typ] != 1 {
			t.Errorf("want one private %s namespace, got %d: %+v", typ, count[typ], spec.Linux.Namespaces)
		}
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &now); err != nil {
		t.Fatal(err)
	}
	// The offset takes the container's boot clock back to (about) zero.
	if off := spec.Linux.TimeOffsets["boottime"]; off.Secs > 0 || now.Sec+off.Secs < 0 || now.Sec+off.Secs > 60 {
		t.Errorf("boottime offset %+v with host uptime %ds", off, now.Sec)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 165536, Size: 65536}}
	if !reflect.DeepEqual(spec.Linux.UIDMappings, want) || !reflect.DeepEqual(spec.Linux.GIDMappings, want) {
		t.Errorf("mappings %+v %+v, want %+v", spec.Linux.UIDMappings, spec.Linux.GIDMappings, want)
	}
	if got := spec.Linux.Sysctl["net.ipv4.ping_group_range"]; got != "0 65535" {
		t.Errorf("ping_group_range %q, want it clamped to the mapped groups", got)
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"abc": true, "a.b-c_d+e": true, "4f2c9e": true,
		"": false, ".": false, "..": false, "../x": false, "a/b": false, "a b": false,
	} {
		if err := checkID(id); (err == nil) != ok {
			t.Errorf("checkID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

// Joining another container's user namespace leaves the mapping to it.
func TestApplyUsernsJoin(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}},
	}}
	if err := applyUserns(spec, Mapping{UID: 165536, GID: 165536, Size: 65536}, "/proc/42/ns/user"); err != nil {
		t.Fatal(err)
	}
	if spec.Linux.UIDMappings != nil || spec.Linux.GIDMappings != nil {
		t.Errorf("mappings set for a joined user namespace: %+v %+v", spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	if p, _ := namespacePath(spec, specs.UserNamespace); p != "/proc/42/ns/user" {
		t.Errorf("user namespace path %q", p)
	}
}
