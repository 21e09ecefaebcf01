package runtime

import (
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moatrt/moat/internal/fstest"
)

// net.* sysctls go into a network namespace the host owns, written by
// moat, and leave the spec; the others stay for libcontainer.
func TestNetSysctls(t *testing.T) {
	fstest.RequiresRoot(t)
	pid := strconv.Itoa(fstest.NamespacedProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}))
	netns := "/proc/" + pid + "/ns/net"
	read := func(key string) string {
		t.Helper()
		out, err := exec.Command("nsenter", "-t", pid, "-n", "cat", "/proc/sys/"+key).CombinedOutput()
		if err != nil {
			t.Fatalf("read %s: %v: %s", key, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	hostPorts, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Fatal(err)
	}
	ports := "80"
	if strings.TrimSpace(string(hostPorts)) == ports {
		ports = "81"
	}
	m := Mapping{UID: 100000, GID: 100000, Size: 65536}
	spec := &specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{
		"net.ipv4.ping_group_range":           "0 0",
		"net/ipv4/ip_unprivileged_port_start": ports,
		"kernel.shmmax":                       "1000000",
	}}}
	if err := netSysctls(spec, netns, m); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"kernel.shmmax": "1000000"}; !reflect.DeepEqual(spec.Linux.Sysctl, want) {
		t.Errorf("sysctls left in the spec: %v, want %v", spec.Linux.Sysctl, want)
	}
	if got := read("net/ipv4/ping_group_range"); got != "100000 100000" {
		t.Errorf("ping_group_range in the namespace: %q", got)
	}
	if got := read("net/ipv4/ip_unprivileged_port_start"); got != ports {
		t.Errorf("ip_unprivileged_port_start in the namespace: %q, want %s", got, ports)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); string(now) != string(hostPorts) {
		t.Errorf("the host's ip_unprivileged_port_start changed from %q to %q", hostPorts, now)
	}

	// A container that may bind ports below 1024 can there too: the
	// kernel would check its capability in the host's user namespace.
	for _, tc := range []struct {
		caps []string
		want string
	}{{[]string{"CAP_CHOWN"}, ports}, {[]string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"}, "0"}} {
		spec = &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: tc.caps}}, Linux: &specs.Linux{}}
		if err := netSysctls(spec, netns, m); err != nil {
			t.Fatal(err)
		}
		if got := read("net/ipv4/ip_unprivileged_port_start"); got != tc.want {
			t.Errorf("capabilities %v: ip_unprivileged_port_start %q, want %s", tc.caps, got, tc.want)
		}
	}

	// Without a network namespace of the host's, libcontainer writes them.
	spec = &specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv4.ip_forward": "1"}}}
	if err := netSysctls(spec, "", m); err != nil || len(spec.Linux.Sysctl) != 1 {
		t.Errorf("netSysctls without a namespace: %v, spec %v", err, spec.Linux.Sysctl)
	}

	// A key cannot lead out of /proc/sys/net; a key that does not exist
	// fails; the spec is left as it was.
	for _, key := range []string{"net/../kernel/hostname", "net.ipv4.nosuchsysctl", "net.ipv4.ping_group_range"} {
		spec = &specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{key: "x"}}}
		err := netSysctls(spec, netns, m)
		if err == nil {
			t.Errorf("sysctl %q written", key)
			continue
		}
		t.Log(err)
		if len(spec.Linux.Sysctl) != 1 {
			t.Errorf("sysctl %q: spec changed to %v", key, spec.Linux.Sysctl)
		}
	}
}
