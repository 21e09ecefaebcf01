package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// LoadSpec reads and checks <bundle>/config.json. Its errors name the bundle
// and say what is missing, because they reach the docker user verbatim.
func LoadSpec(bundle string) (*specs.Spec, error) {
	st, err := os.Stat(bundle)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("bundle %s does not exist", bundle)
	case err != nil:
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	case !st.IsDir():
		return nil, fmt.Errorf("bundle %s is not a directory", bundle)
	}
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s has no config.json: create one with 'moat spec'", bundle)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, describeJSONError(data, err))
	}
	if err := ValidateSpec(&spec); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", path, err)
	}
	return &spec, nil
}

// LoadProcess reads an exec's process file (runc's --process).
func LoadProcess(path string) (*specs.Process, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read process file: %w", err)
	}
	var p specs.Process
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("parse process file %s: %w", path, err)
	}
	return &p, nil
}

// WriteExampleSpec writes runc's starter config.json into bundle. It never
// replaces one: that may be a user's edited spec.
func WriteExampleSpec(bundle string) error {
	path := bundle + "/config.json"
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists: remove it first", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	enc.SetIndent("", "\t")
	return enc.Encode(specconv.Example())
}

// describeJSONError adds the line of a syntax or type error, which
// encoding/json only reports as a byte offset.
func describeJSONError(data []byte, err error) error {
	var off int64
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	default:
		return err
	}
	line := 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n"))
	return fmt.Errorf("line %d: %w", line, err)
}

// ValidateSpec checks the fields moat needs before it touches anything.
func ValidateSpec(spec *specs.Spec) error {
	if spec.Root == nil || spec.Root.Path == "" {
		return errors.New("root.path is required")
	}
	if spec.Linux == nil {
		return errors.New("the linux section is required")
	}
	return ValidateProcess(spec.Process)
}

// ValidateProcess checks a process given to create, run or exec.
func ValidateProcess(p *specs.Process) error {
	switch {
	case p == nil:
		return errors.New("process is required")
	case len(p.Args) == 0:
		return errors.New("process.args must not be empty")
	case p.Cwd == "":
		return errors.New("process.cwd is required")
	case !filepath.IsAbs(p.Cwd):
		return fmt.Errorf("process.cwd %q must be an absolute path", p.Cwd)
	}
	return nil
}

// Mapping is the container's single ID range: container IDs 0..Size-1 map
// to host UID..UID+Size-1 and GID..GID+Size-1.
type Mapping struct {
	UID, GID, Size uint32
}

// applyUserns puts the container into a user namespace of its own with the
// given mapping, or into joinUserns (another moat container's, whose mapping
// m is) when it joins that container's namespaces. Whatever the caller asked
// for (--userns=host, its own mappings, a path to another namespace) is
// overridden: the mapping is the isolation boundary and not the caller's to
// choose. Cgroup and time namespaces are always the container's own; the
// time namespace starts the boot clock at zero, so /proc/uptime is the
// container's.
func applyUserns(spec *specs.Spec, m Mapping, joinUserns string) error {
	nss := spec.Linux.Namespaces[:0]
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		default:
			nss = append(nss, ns)
		}
	}
	spec.Linux.Namespaces = append(nss,
		specs.LinuxNamespace{Type: specs.UserNamespace, Path: joinUserns},
		specs.LinuxNamespace{Type: specs.CgroupNamespace},
		specs.LinuxNamespace{Type: specs.TimeNamespace})
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = nil, nil
	if joinUserns == "" {
		// libcontainer reads the mapping of a joined namespace itself.
		spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.UID, Size: m.Size}}
		spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GID, Size: m.Size}}
	}
	clampPingGroupRange(spec, m.Size)
	return resetBoottime(spec)
}

// resetBoottime offsets the container's boot clock by the host's uptime.
// The kernel refuses an offset that makes the clock negative when it is
// set; the clock only grows until then, so whole seconds are safe.
func resetBoottime(spec *specs.Spec) error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return fmt.Errorf("read boot clock: %w", err)
	}
	if spec.Linux.TimeOffsets == nil {
		spec.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{}
	}
	spec.Linux.TimeOffsets["boottime"] = specs.LinuxTimeOffset{Secs: -ts.Sec}
	return nil
}

// clampPingGroupRange keeps net.ipv4.ping_group_range inside the mapped
// groups: docker asks for "0 2147483647", which the kernel refuses in a user
// namespace where only Size groups exist.
func clampPingGroupRange(spec *specs.Spec, size uint32) {
	const key = "net.ipv4.ping_group_range"
	v, ok := spec.Linux.Sysctl[key]
	if !ok {
		return
	}
	var lo, hi uint64
	if _, err := fmt.Sscan(v, &lo, &hi); err != nil {
		return // let the kernel report it
	}
	if hi > uint64(size-1) {
		hi = uint64(size - 1)
	}
	if lo > hi {
		lo = hi
	}
	spec.Linux.Sysctl[key] = fmt.Sprintf("%d %d", lo, hi)
}

func isBind(m *specs.Mount) bool {
	return m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")
}

func hasOption(opts []string, want string) bool {
	for _, o := range opts {
		if o == want {
			return true
		}
	}
	return false
}
