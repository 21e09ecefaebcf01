package policy

import (
	"os"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestStagedBind(t *testing.T) {
	tests := []struct {
		name      string
		m         specs.Mount
		bind, rec bool
		options   []string
	}{
		{"type bind", specs.Mount{Type: "bind", Options: []string{"ro"}}, true, false, []string{"ro"}},
		{"rbind option, idmapped by the caller", specs.Mount{Type: "none", Options: []string{"rbind", "idmap", "ro"},
			UIDMappings: []specs.LinuxIDMapping{{HostID: 0, Size: 1}}}, true, true, []string{"rbind", "ro"}},
		{"ridmap dropped", specs.Mount{Options: []string{"bind", "ridmap"}}, true, false, []string{"bind"}},
		{"tmpfs", specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			given := append([]string(nil), m.Options...)
			if IsBind(&m) != tt.bind || IsRecursive(&m) != tt.rec {
				t.Fatalf("bind %t recursive %t, want %t %t", IsBind(&m), IsRecursive(&m), tt.bind, tt.rec)
			}
			if !tt.bind {
				return
			}
			StagedBind(&m, "/run/moat-mounts/x/c@binds/0")
			if m.Source != "/run/moat-mounts/x/c@binds/0" || m.UIDMappings != nil || m.GIDMappings != nil || !reflect.DeepEqual(m.Options, tt.options) {
				t.Fatalf("rewritten to %+v", m)
			}
			if !reflect.DeepEqual(tt.m.Options, given) {
				t.Fatalf("the caller's options changed to %v", tt.m.Options)
			}
		})
	}
}

func TestStagedSysfs(t *testing.T) {
	m := specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"rw"}}
	StagedSysfs(&m, "/staged")
	want := specs.Mount{Destination: "/sys", Type: "bind", Source: "/staged", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v, want %+v", m, want)
	}
}

func TestDeviceNodes(t *testing.T) {
	m := Mapping{UID: 100000, GID: 200000, Size: 65536}
	id := func(v uint32) *uint32 { return &v }
	mode := func(v os.FileMode) *os.FileMode { return &v }
	tests := []struct {
		name string
		dev  specs.LinuxDevice
		want DeviceNode
		err  string
	}{
		{"defaults", specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
			DeviceNode{Device: Device{'c', 10, 229}, Perm: 0o666, UID: 100000, GID: 200000}, ""},
		{"owner and mode", specs.LinuxDevice{Path: "/dev/xvdb", Type: "b", Major: 7, Minor: 3, UID: id(6), GID: id(7), FileMode: mode(0o4660)},
			DeviceNode{Device: Device{'b', 7, 3}, Perm: 0o660, UID: 100006, GID: 200007}, ""},
		{"fifo", specs.LinuxDevice{Path: "/dev/p", Type: "p"}, DeviceNode{Device: Device{Type: 'p'}, Perm: 0o666, UID: 100000, GID: 200000}, ""},
		{"owner outside the range", specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, UID: id(65536)},
			DeviceNode{}, "device /dev/fuse: owner 65536:0 is outside the container's IDs (0 to 65535)"},
		{"unknown type", specs.LinuxDevice{Path: "/dev/x", Type: "s"}, DeviceNode{}, `unknown type "s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DeviceNodes([]specs.LinuxDevice{tt.dev}, m)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0] != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
