package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container's devices are decided by their numbers, never by their
// paths: docker's --device /dev/sda:/dev/null names a disk at the path of
// a harmless device. The devices cgroup allows exactly the devices given,
// whatever the caller's rules said, so a node the container finds
// elsewhere (carried by its image, put there by `docker cp`) opens nothing
// even if a mount let it try (none does: see idmap's nodev).
//
// In a user namespace libcontainer cannot mknod, so it bind-mounts the
// host's file at the device's container path, whatever that file is: a
// device entry would also be a way to mount any host path, and the host's
// node belongs to host root, whom the container cannot act as. So
// libcontainer gives only the devices of every container (/dev/null and
// the like, open to all) whose host file at that path, reached without
// symlinks, is that very device; moat makes the node of every other device itself, owned
// by the container, and binds it.

// Device is a device as the kernel and the devices cgroup know it.
type Device struct {
	Type         byte // 'c', 'b' or 'p' (a FIFO, which has no numbers)
	Major, Minor int64
}

func (n Device) String() string {
	if n.Type == 'p' {
		return "fifo"
	}
	return fmt.Sprintf("%c %d:%d", n.Type, n.Major, n.Minor)
}

// baseDevice reports whether every container may have n, privileged ones
// included: devices that reach no host data or hardware.
func baseDevice(n Device) bool {
	if n.Type != 'c' {
		return false
	}
	switch [2]int64{n.Major, n.Minor} {
	case [2]int64{1, 3}, // null
		[2]int64{1, 5},    // zero
		[2]int64{1, 7},    // full
		[2]int64{1, 8},    // random
		[2]int64{1, 9},    // urandom
		[2]int64{5, 0},    // tty
		[2]int64{10, 229}, // fuse
		[2]int64{10, 200}: // net/tun
		return true
	}
	return false
}

// everyContainers reports whether n is one of the devices libcontainer
// gives every container from the host's nodes, which hosts make open to
// all (mode 0666); fuse and tun often are not, so moat makes theirs.
func everyContainers(n Device) bool {
	return baseDevice(n) && !(n.Major == 10 && (n.Minor == 229 || n.Minor == 200))
}

// DeviceError is a device the spec names that the container may not have.
// Its message reaches the docker user after "OCI runtime create failed:".
type DeviceError struct {
	Path   string // in the container, as the spec names it
	Num    Device
	Config string // the config file whose allowlist applies
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("can't give the container device %s (%s) because it's not on the device allowlist (devices.allowed in %s)",
		e.Path, e.Num, e.Config)
}

// DeviceProbe tells what the host has at an absolute path: the device it
// is, or an error saying what else it is.
type DeviceProbe func(path string) (Device, error)

// DeviceRules is what ConfineDevices needs beyond the spec.
type DeviceRules struct {
	// Allowed are the host device paths of the allowlist.
	Allowed []string
	// Config names the file the allowlist comes from, for messages.
	Config string
	// Probe reads the host's file at a path without following symlinks;
	// Stat reads a path of the allowlist, following them (it is root's).
	Probe, Stat DeviceProbe
}

// ConfineDevices keeps the spec's devices that the container may have and
// makes the devices cgroup allow exactly those. It leaves in the spec the
// devices libcontainer can give and returns those moat must make itself.
// A privileged spec (one whose cgroup rules allow every device) lists
// every host device: it keeps the base set and loses the rest, as
// documented. Any other spec names its devices on purpose, so one that is
// not allowed fails the create.
func ConfineDevices(spec *specs.Spec, rules DeviceRules) (staged []specs.LinuxDevice, err error) {
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	privileged := allowsEveryDevice(spec.Linux.Resources.Devices)
	var (
		allowed map[Device]bool
		direct  = make([]specs.LinuxDevice, 0, len(spec.Linux.Devices))
	)
	for _, d := range spec.Linux.Devices {
		n, err := DeclaredDevice(d)
		if err != nil {
			return nil, err
		}
		base := baseDevice(n)
		if !base && privileged {
			continue
		}
		if !base {
			if allowed == nil {
				if allowed, err = allowlist(rules); err != nil {
					return nil, err
				}
			}
			if !allowed[n] {
				return nil, &DeviceError{Path: d.Path, Num: n, Config: rules.Config}
			}
		}
		if everyContainers(n) && atHostPath(d.Path, n, rules.Probe) {
			direct = append(direct, d)
		} else {
			staged = append(staged, d)
		}
	}
	spec.Linux.Devices = direct
	spec.Linux.Resources.Devices = cgroupRules(slices.Concat(direct, staged))
	return staged, nil
}

// allowsEveryDevice reports whether device cgroup rules give read or write
// access to every device, as docker, podman and CRI do for --privileged.
func allowsEveryDevice(rules []specs.LinuxDeviceCgroup) bool {
	for _, r := range rules {
		if r.Allow && (r.Type == "" || r.Type == "a") &&
			(r.Major == nil || *r.Major == -1) && (r.Minor == nil || *r.Minor == -1) &&
			strings.ContainsAny(r.Access, "rw") {
			return true
		}
	}
	return false
}

// DeclaredDevice is the device a spec entry names.
func DeclaredDevice(d specs.LinuxDevice) (Device, error) {
	switch d.Type {
	case "c", "u":
		return Device{'c', d.Major, d.Minor}, nil
	case "b":
		return Device{'b', d.Major, d.Minor}, nil
	case "p":
		return Device{Type: 'p'}, nil
	}
	return Device{}, fmt.Errorf("device %s: unknown type %q (want c, u, b or p)", d.Path, d.Type)
}

// allowlist reads the numbers of the allowlist's devices. One the host
// does not have allows nothing.
func allowlist(rules DeviceRules) (map[Device]bool, error) {
	out := map[Device]bool{}
	for _, p := range rules.Allowed {
		n, err := rules.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("device allowlist of %s: %w", rules.Config, err)
		}
		out[n] = true
	}
	return out, nil
}

// atHostPath reports whether the host's file at path, which libcontainer
// would bind-mount for the device, is the device itself.
func atHostPath(path string, want Device, probe DeviceProbe) bool {
	clean := filepath.Clean(path)
	if !strings.HasPrefix(clean, "/dev/") {
		return false
	}
	got, err := probe(clean)
	return err == nil && got == want
}

// cgroupRules allow exactly the given devices; libcontainer adds its own
// fixed few (the base devices, ptys, mknod, which fails in a user
// namespace anyway).
func cgroupRules(devs []specs.LinuxDevice) []specs.LinuxDeviceCgroup {
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range devs {
		n, _ := DeclaredDevice(d)
		if n.Type == 'p' {
			continue
		}
		major, minor := n.Major, n.Minor
		rules = append(rules, specs.LinuxDeviceCgroup{
			Allow: true, Type: string(n.Type), Major: &major, Minor: &minor, Access: "rwm",
		})
	}
	return rules
}
