package policy

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":              "net/ipv4/ip_forward",
		"net/ipv4/ip_forward":              "net/ipv4/ip_forward",
		"net.ipv4.conf.eth0/100.rp_filter": "net/ipv4/conf/eth0.100/rp_filter",
		"net/ipv4/conf/eth0.100/rp_filter": "net/ipv4/conf/eth0.100/rp_filter",
		"kernel.shmmax":                    "kernel/shmmax",
		"net":                              "net",
	} {
		if got := SysctlPath(key); got != want {
			t.Errorf("SysctlPath(%q) = %q, want %q", key, got, want)
		}
	}
}

// ping_group_range in the container's gids: clamped to them for the
// container's own network namespace, moved to host gids for one the host
// owns.
func TestPingGroupRange(t *testing.T) {
	m := Mapping{UID: 100000, GID: 200000, Size: 65536}
	for value, want := range map[string][2]string{
		"0 0":           {"0 0", "200000 200000"},
		"0\t2147483647": {"0 65535", "200000 265535"},
		"1000 1000":     {"1000 1000", "201000 201000"},
		"65535 70000":   {"65535 65535", "265535 265535"},
		"65536 70000":   {"1 0", "1 0"},
		"1 0":           {"1 0", "1 0"},
		"4294967295 0":  {"1 0", "1 0"},
		"0":             {"0", "error"},
		"0 x":           {"0 x", "error"},
		"-1 0":          {"-1 0", "error"},
		"0 4294967296":  {"0 4294967296", "error"},
	} {
		spec := &specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv4.ping_group_range": value}}}
		clampPingGroupRange(spec, m.Size)
		if got := spec.Linux.Sysctl["net.ipv4.ping_group_range"]; got != want[0] {
			t.Errorf("clamped %q to %q, want %q", value, got, want[0])
		}
		spec.Linux.Sysctl["net.ipv4.ping_group_range"] = value
		writes, err := HostNetSysctls(spec, m)
		got := "error"
		if err == nil && len(writes) == 1 {
			got = writes[0].Value
		}
		if got != want[1] {
			t.Errorf("%q in host gids: %q (%v), want %q", value, got, err, want[1])
		}
	}
}

func TestHostNetSysctls(t *testing.T) {
	bind := &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_NET_BIND_SERVICE"}}}
	m := Mapping{UID: 100000, GID: 100000, Size: 65536}
	tests := []struct {
		name    string
		process *specs.Process
		sysctl  map[string]string
		want    []Sysctl
	}{
		{"net keys only, sorted", nil, map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "net/core/somaxconn": "7"},
			[]Sysctl{{"net.ipv4.ip_forward", "net/ipv4/ip_forward", "1"}, {"net/core/somaxconn", "net/core/somaxconn", "7"}}},
		{"low ports opened for a container that may bind them", bind, nil,
			[]Sysctl{{"", "net/ipv4/ip_unprivileged_port_start", "0"}}},
		{"the spec's value wins", bind, map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"},
			[]Sysctl{{"net.ipv4.ip_unprivileged_port_start", "net/ipv4/ip_unprivileged_port_start", "80"}}},
		{"nothing", nil, map[string]string{"kernel.shmmax": "1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &specs.Spec{Process: tt.process, Linux: &specs.Linux{Sysctl: tt.sysctl}}
			got, err := HostNetSysctls(spec, m)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if len(spec.Linux.Sysctl) != len(tt.sysctl) {
				t.Fatalf("the spec's sysctls changed to %v", spec.Linux.Sysctl)
			}
		})
	}
}
