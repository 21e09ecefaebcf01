package runtime

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moatrt/moat/internal/fstest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func dev(path, typ string, major, minor int64) specs.LinuxDevice {
	return specs.LinuxDevice{Path: path, Type: typ, Major: major, Minor: minor}
}

func i64(v int64) *int64 { return &v }

// fakeHost is a host /dev as a map: what each path is.
func fakeHost(nodes map[string]devNum) deviceProbe {
	return func(path string) (devNum, error) {
		n, ok := nodes[path]
		if !ok {
			return devNum{}, &fs.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
		}
		return n, nil
	}
}

func TestConfineDevices(t *testing.T) {
	host := map[string]devNum{
		"/dev/null": {'c', 1, 3}, "/dev/zero": {'c', 1, 5}, "/dev/fuse": {'c', 10, 229},
		"/dev/kvm": {'c', 10, 232}, "/dev/sda": {'b', 8, 0}, "/dev/kmsg": {'c', 1, 11},
		"/dev/loop0": {'b', 7, 0}, "/dev/net/tun": {'c', 10, 200},
	}
	allowAll := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Access: "rwm"}}
	tests := []struct {
		name    string
		devices []specs.LinuxDevice
		rules   []specs.LinuxDeviceCgroup
		allowed []string
		direct  []string // given by libcontainer from the host's node
		staged  []string // made by moat
		err     string
	}{
		{
			name:    "base devices kept",
			devices: []specs.LinuxDevice{dev("/dev/null", "c", 1, 3), dev("/dev/zero", "c", 1, 5)},
			direct:  []string{"/dev/null", "/dev/zero"},
		},
		{
			name:    "privileged: every host device listed, base set kept, the rest dropped",
			devices: []specs.LinuxDevice{dev("/dev/null", "c", 1, 3), dev("/dev/sda", "b", 8, 0), dev("/dev/kmsg", "c", 1, 11), dev("/dev/fuse", "c", 10, 229), dev("/dev/kvm", "c", 10, 232)},
			rules:   allowAll,
			allowed: []string{"/dev/kvm"},
			direct:  []string{"/dev/null"},
			staged:  []string{"/dev/fuse"},
		},
		{
			name:    "privileged by a rule of type a with wildcards",
			devices: []specs.LinuxDevice{dev("/dev/sda", "b", 8, 0)},
			rules:   []specs.LinuxDeviceCgroup{{Allow: true, Type: "a", Major: i64(-1), Minor: i64(-1), Access: "rw"}},
		},
		{
			name:    "named device on the allowlist",
			devices: []specs.LinuxDevice{dev("/dev/null", "c", 1, 3), dev("/dev/kvm", "c", 10, 232)},
			allowed: []string{"/dev/kvm"},
			direct:  []string{"/dev/null"},
			staged:  []string{"/dev/kvm"},
		},
		{
			name:    "named device not on the allowlist",
			devices: []specs.LinuxDevice{dev("/dev/kvm", "c", 10, 232)},
			allowed: []string{"/dev/fuse"},
			err:     "can't give the container device /dev/kvm (c 10:232) because it's not on the device allowlist (devices.allowed in /etc/moat/config.toml)",
		},
		{
			name:    "a device-cgroup rule alone gives nothing",
			devices: []specs.LinuxDevice{dev("/dev/loop0", "b", 7, 0)},
			rules:   []specs.LinuxDeviceCgroup{{Allow: true, Type: "b", Major: i64(7), Access: "rwm"}},
			err:     "can't give the container device /dev/loop0 (b 7:0) because it's not on the device allowlist",
		},
		{
			name:    "allowlist entry missing on the host allows nothing",
			devices: []specs.LinuxDevice{dev("/dev/vhost-net", "c", 10, 238)},
			allowed: []string{"/dev/vhost-net"},
			err:     "not on the device allowlist",
		},
		{
			name:    "a disk at the path of a base device",
			devices: []specs.LinuxDevice{dev("/dev/null", "b", 8, 0)},
			err:     "can't give the container device /dev/null (b 8:0) because it's not on the device allowlist",
		},
		{
			name:    "base numbers at another device's path",
			devices: []specs.LinuxDevice{dev("/dev/sda", "c", 1, 3)},
			staged:  []string{"/dev/sda"},
		},
		{
			name:    "base numbers at a host file's path",
			devices: []specs.LinuxDevice{dev("/etc/shadow", "c", 1, 3)},
			staged:  []string{"/etc/shadow"},
		},
		{
			name:    "dot-dot out of /dev",
			devices: []specs.LinuxDevice{dev("/dev/../etc/shadow", "c", 1, 3)},
			staged:  []string{"/dev/../etc/shadow"},
		},
		{
			name:    "allowed device at a path the host lacks",
			devices: []specs.LinuxDevice{dev("/dev/xvda", "c", 10, 232)},
			allowed: []string{"/dev/kvm"},
			staged:  []string{"/dev/xvda"},
		},
		{
			name:    "unknown type",
			devices: []specs.LinuxDevice{dev("/dev/null", "x", 1, 3)},
			err:     `device /dev/null: unknown type "x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{
				Devices:   tt.devices,
				Resources: &specs.LinuxResources{Devices: tt.rules},
			}}
			probe := fakeHost(host)
			staged, err := confineDevices(spec, deviceRules{
				Allowed: tt.allowed, Config: "/etc/moat/config.toml", Probe: probe, Stat: probe,
			})
			if tt.err != "" {
				var de *DeviceError
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				if !errors.As(err, &de) && !strings.Contains(tt.err, "unknown type") {
					t.Errorf("error %T is not a *DeviceError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := devPaths(spec.Linux.Devices); !reflect.DeepEqual(got, tt.direct) {
				t.Errorf("given by libcontainer %v, want %v", got, tt.direct)
			}
			if got := devPaths(staged); !reflect.DeepEqual(got, tt.staged) {
				t.Errorf("made by moat %v, want %v", got, tt.staged)
			}
			checkRulesAllowExactly(t, spec.Linux.Resources.Devices, append(spec.Linux.Devices, staged...))
		})
	}
}

func devPaths(ds []specs.LinuxDevice) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Path)
	}
	return out
}

// checkRulesAllowExactly checks that the cgroup rules deny everything
// first and then allow the kept devices, each by its numbers, and nothing
// else.
func checkRulesAllowExactly(t *testing.T, rules []specs.LinuxDeviceCgroup, devs []specs.LinuxDevice) {
	t.Helper()
	if len(rules) == 0 || rules[0].Allow || (rules[0].Type != "" && rules[0].Type != "a") || rules[0].Access != "rwm" {
		t.Fatalf("first rule %+v, want deny all", rules)
	}
	if len(rules)-1 != len(devs) {
		t.Fatalf("%d allow rules for %d devices: %+v", len(rules)-1, len(devs), rules)
	}
	for i, r := range rules[1:] {
		d := devs[i]
		if !r.Allow || r.Type != d.Type || r.Major == nil || *r.Major != d.Major || r.Minor == nil || *r.Minor != d.Minor {
			t.Errorf("rule %d %+v does not allow exactly %s %d:%d", i+1, r, d.Type, d.Major, d.Minor)
		}
	}
}

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
		want devNum
		err  string
	}{
		{path: null, want: devNum{'c', 1, 3}},
		{path: "/dev/null", want: devNum{'c', 1, 3}},
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
