package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/mounts"
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
// by the container, and binds it (stageDevices).

// devNum is a device as the kernel and the devices cgroup know it.
type devNum struct {
	typ          byte // 'c', 'b' or 'p' (a FIFO, which has no numbers)
	major, minor int64
}

func (n devNum) String() string {
	if n.typ == 'p' {
		return "fifo"
	}
	return fmt.Sprintf("%c %d:%d", n.typ, n.major, n.minor)
}

// baseDevice reports whether every container may have n, privileged ones
// included: devices that reach no host data or hardware.
func baseDevice(n devNum) bool {
	if n.typ != 'c' {
		return false
	}
	switch [2]int64{n.major, n.minor} {
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
func everyContainers(n devNum) bool {
	return baseDevice(n) && !(n.major == 10 && (n.minor == 229 || n.minor == 200))
}

// DeviceError is a device the spec names that the container may not have.
// Its message reaches the docker user after "OCI runtime create failed:".
type DeviceError struct {
	Path   string // in the container, as the spec names it
	Num    devNum
	Config string // the config file whose allowlist applies
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("can't give the container device %s (%s) because it's not on the device allowlist (devices.allowed in %s)",
		e.Path, e.Num, e.Config)
}

// deviceProbe tells what the host has at an absolute path: the device it
// is, or an error saying what else it is.
type deviceProbe func(path string) (devNum, error)

// deviceRules is what confineDevices needs beyond the spec.
type deviceRules struct {
	// Allowed are the host device paths of the allowlist.
	Allowed []string
	// Config names the file the allowlist comes from, for messages.
	Config string
	// Probe reads the host's file at a path without following symlinks;
	// Stat reads a path of the allowlist, following them (it is root's).
	Probe, Stat deviceProbe
}

// confineDevices keeps the spec's devices that the container may have and
// makes the devices cgroup allow exactly those. It leaves in the spec the
// devices libcontainer can give and returns those moat must make itself.
// A privileged spec (one whose cgroup rules allow every device) lists
// every host device: it keeps the base set and loses the rest, as
// documented. Any other spec names its devices on purpose, so one that is
// not allowed fails the create.
func confineDevices(spec *specs.Spec, rules deviceRules) (staged []specs.LinuxDevice, err error) {
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	privileged := allowsEveryDevice(spec.Linux.Resources.Devices)
	var (
		allowed map[devNum]bool
		direct  = make([]specs.LinuxDevice, 0, len(spec.Linux.Devices))
	)
	for _, d := range spec.Linux.Devices {
		n, err := declaredDevice(d)
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

func declaredDevice(d specs.LinuxDevice) (devNum, error) {
	switch d.Type {
	case "c", "u":
		return devNum{'c', d.Major, d.Minor}, nil
	case "b":
		return devNum{'b', d.Major, d.Minor}, nil
	case "p":
		return devNum{typ: 'p'}, nil
	}
	return devNum{}, fmt.Errorf("device %s: unknown type %q (want c, u, b or p)", d.Path, d.Type)
}

// allowlist reads the numbers of the allowlist's devices. One the host
// does not have allows nothing.
func allowlist(rules deviceRules) (map[devNum]bool, error) {
	out := map[devNum]bool{}
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
func atHostPath(path string, want devNum, probe deviceProbe) bool {
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
		n, _ := declaredDevice(d)
		if n.typ == 'p' {
			continue
		}
		major, minor := n.major, n.minor
		rules = append(rules, specs.LinuxDeviceCgroup{
			Allow: true, Type: string(n.typ), Major: &major, Minor: &minor, Access: "rwm",
		})
	}
	return rules
}

// probeHostNode is the deviceProbe for the host: openat2 refuses every
// symlink on the way, so a link planted in a path cannot point the check
// at one file and the mount at another.
func probeHostNode(path string) (devNum, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) {
		return devNum{}, errors.New("reached through a symlink")
	}
	if err != nil {
		return devNum{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return devNum{}, err
	}
	return statDevice(&st)
}

// statHostDevice is the deviceProbe for allowlist paths.
func statHostDevice(path string) (devNum, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return devNum{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	n, err := statDevice(&st)
	if err != nil {
		return devNum{}, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func statDevice(st *unix.Stat_t) (devNum, error) {
	major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return devNum{'c', major, minor}, nil
	case unix.S_IFBLK:
		return devNum{'b', major, minor}, nil
	case unix.S_IFIFO:
		return devNum{typ: 'p'}, nil
	case unix.S_IFDIR:
		return devNum{}, errors.New("a directory")
	case unix.S_IFREG:
		return devNum{}, errors.New("a regular file")
	}
	return devNum{}, errors.New("not a device")
}

// stageDevices makes the nodes of the devices libcontainer cannot give
// (see confineDevices), owned by the container's IDs, and binds each at
// its device's path in the container.
func (r *Runtime) stageDevices(spec *specs.Spec, id string, m Mapping, devs []specs.LinuxDevice) error {
	if len(devs) == 0 {
		return nil
	}
	dir := filepath.Join(r.bindsDir(r.root, id), "devices")
	nodes := make([]mounts.Node, 0, len(devs))
	for i, d := range devs {
		n, err := declaredDevice(d)
		if err != nil {
			return err
		}
		var uid, gid uint32
		if d.UID != nil {
			uid = *d.UID
		}
		if d.GID != nil {
			gid = *d.GID
		}
		if uid >= m.Size || gid >= m.Size {
			return fmt.Errorf("device %s: owner %d:%d is outside the container's IDs (0 to %d)", d.Path, uid, gid, m.Size-1)
		}
		perm := uint32(0o666) // libcontainer's default too
		if d.FileMode != nil {
			perm = uint32(*d.FileMode) & 0o777
		}
		typ := map[byte]uint32{'c': unix.S_IFCHR, 'b': unix.S_IFBLK, 'p': unix.S_IFIFO}[n.typ]
		nodes = append(nodes, mounts.Node{
			Name: strconv.Itoa(i), Type: typ, Major: uint32(n.major), Minor: uint32(n.minor),
			Perm: perm, UID: int(m.UID + uid), GID: int(m.GID + gid),
		})
	}
	if err := mounts.StageDevices(dir, nodes); err != nil {
		return err
	}
	for i, d := range devs {
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: d.Path, Type: "bind", Source: filepath.Join(dir, strconv.Itoa(i)), Options: []string{"bind"},
		})
	}
	return nil
}
