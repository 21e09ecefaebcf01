// Package config owns moat's one configuration file, /etc/moat/config.toml:
// its schema, its documented defaults and its validation. Every key is
// optional and a missing file means all defaults, so a host that never
// writes the file gets the documented behaviour. The schema is the Config
// struct itself: a table or key is a field with a toml tag, so adding one is
// adding a field (and its check in validate, if it needs one).
//
// The package only reads and checks the file. What the values mean for a
// container is decided elsewhere: the runtime translates a Config into the
// policy types of the policy package.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultPath is where moat looks for its configuration file.
const DefaultPath = "/etc/moat/config.toml"

// Defaults of the keys that have one. They are constants so that the
// documented defaults and the code cannot drift apart.
const (
	DefaultDockerDataRoot  = "/var/lib/docker"
	DefaultContainerdRoot  = "/var/lib/containerd"
	DefaultContainerdState = "/run/containerd"
	DefaultSubIDUser       = "moat"
	DefaultContainers      = 4096
	// MaxContainers is the most ranges an entry can hold: 65536 ranges of
	// 65536 IDs each span the whole 32-bit ID space.
	MaxContainers = 65536
)

// Placeholders that entries of the mount lists may start with. They are
// expanded with the configured (or default) engine directories, so that
// moving docker's data root does not mean rewriting the restricted list.
const (
	PlaceholderDockerDataRoot  = "{docker_data_root}"
	PlaceholderContainerdRoot  = "{containerd_root}"
	PlaceholderContainerdState = "{containerd_state}"
)

// Config is moat's configuration. Build one with Load or Default: the
// zero value lacks the defaults (although the methods fall back to them for
// the engine directories).
type Config struct {
	// Path is the file the configuration came from; "" when it is the
	// defaults because there was no file.
	Path string `toml:"-"`

	Mounts     Mounts     `toml:"mounts"`
	Docker     Docker     `toml:"docker"`
	Containerd Containerd `toml:"containerd"`
	IDs        IDs        `toml:"ids"`
	Devices    Devices    `toml:"devices"`
	Views      Views      `toml:"views"`
}

// Views is the [views] table: the container's own /proc and /sys files.
type Views struct {
	// Enabled binds /proc/meminfo, cpuinfo, stat, swaps and
	// /sys/devices/system/cpu/online, served by the helper from the
	// reader's cgroup, into every container. Off by default while the
	// views are incomplete.
	Enabled bool `toml:"enabled"`
}

// Mounts is the [mounts] table: which host paths containers may not
// bind-mount. Entries of the three lists may start with a placeholder
// ({docker_data_root}, {containerd_root}, {containerd_state}); use the
// RestrictedPaths and AllowedPaths methods to get them expanded.
type Mounts struct {
	// Restricted replaces the default list (DefaultRestricted) when set.
	// nil means "not set"; a non-nil empty slice (restricted = [] in the
	// file) really means "nothing restricted but ExtraRestricted".
	Restricted []string `toml:"restricted"`
	// ExtraRestricted is added to the default (or replaced) list, so that
	// a site can restrict more without restating the defaults.
	ExtraRestricted []string `toml:"extra_restricted"`
	// Strict allows only the Allowed host dirs (and the engine's own files
	// for the container, and named volumes) to be bind-mounted.
	Strict  bool     `toml:"strict"`
	Allowed []string `toml:"allowed"`
}

// Docker is the [docker] table.
type Docker struct {
	// DataRoot is dockerd's data root; default /var/lib/docker.
	DataRoot string `toml:"data_root"`
	// SocketImages lists the images that may mount the docker socket:
	// name[:tag], name@sha256:..., or an image ID. Default empty.
	SocketImages []string `toml:"socket_images"`
}

// Containerd is the [containerd] table.
type Containerd struct {
	Root  string `toml:"root"`  // default /var/lib/containerd
	State string `toml:"state"` // default /run/containerd
}

// IDs is the [ids] table: where moat gets the host IDs it hands out.
type IDs struct {
	// SubIDUser is the entry in /etc/subuid and /etc/subgid; default "moat".
	SubIDUser string `toml:"subid_user"`
	// Containers is how many 64K ranges an entry moat adds itself holds;
	// default 4096.
	Containers int `toml:"containers"`
}

// Devices is the [devices] table: which host devices a container may be
// given when its spec names them (docker's --device). A device named and
// not allowed fails the create; none is dropped silently.
type Devices struct {
	// Allowed are host device nodes a container may be given, besides
	// the few every container has (null, zero, full, random, urandom,
	// tty, fuse, net/tun). nil means DefaultAllowedDevices; a set empty
	// list means none.
	Allowed []string `toml:"allowed"`
}

// DefaultAllowedDevices returns the devices a container may be given
// when the config does not say: ones that reach no host data (a VM
// monitor, FUSE, tun/tap). It returns a new slice on every call.
func DefaultAllowedDevices() []string {
	return []string{"/dev/kvm", "/dev/fuse", "/dev/net/tun"}
}

// AllowedDevices returns the effective device allowlist.
func (c *Config) AllowedDevices() []string {
	if c.Devices.Allowed == nil {
		return DefaultAllowedDevices()
	}
	return c.Devices.Allowed
}

// Error is a problem with the contents of a configuration file. Line and
// Key are set when known; Err is the underlying error, if any (a
// *toml.DecodeError of github.com/pelletier/go-toml/v2 for syntax and type
// errors).
type Error struct {
	Path string
	Line int
	Key  string
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: ", e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Default returns the configuration used when there is no file.
func Default() *Config {
	return &Config{
		Docker: Docker{DataRoot: DefaultDockerDataRoot},
		Containerd: Containerd{
			Root:  DefaultContainerdRoot,
			State: DefaultContainerdState,
		},
		IDs: IDs{SubIDUser: DefaultSubIDUser, Containers: DefaultContainers},
	}
}

// DefaultRestricted returns the default restricted host paths, with their
// placeholders unexpanded. It returns a new slice on every call.
func DefaultRestricted() []string {
	return []string{
		"/etc/docker",
		PlaceholderDockerDataRoot,
		"/run/docker.sock",
		"/var/run/docker.sock",
		"/run/docker",
		"/var/run/docker",
		"/etc/containerd",
		PlaceholderContainerdRoot,
		PlaceholderContainerdState,
		"/etc/moat",
		"/var/lib/moat",
		"/run/moat",
		"/run/moat-mounts",
		"/proc",
		"/sys",
		"/dev",
		"/boot",
		"/lib/modules",
		"/usr/lib/modules",
	}
}

// Placeholders of the mount exceptions that only the mount policy can fill
// in, per container.
const (
	PlaceholderContainerID = "{id}"
	PlaceholderSandboxID   = "{sandbox}"
)

// defaultExceptions are the paths under restricted ones that belong to the
// container itself: what the engines bind-mount into every container
// (hostname, hosts, resolv.conf, CRI's per-sandbox files) and docker's
// named volumes. '*' stands for exactly one path element.
func defaultExceptions() []string {
	return []string{
		PlaceholderDockerDataRoot + "/containers/" + PlaceholderContainerID,
		PlaceholderDockerDataRoot + "/volumes/*/_data",
		PlaceholderContainerdRoot + "/io.containerd.grpc.v1.cri/containers/" + PlaceholderContainerID,
		PlaceholderContainerdRoot + "/io.containerd.grpc.v1.cri/sandboxes/" + PlaceholderSandboxID,
		PlaceholderContainerdState + "/io.containerd.grpc.v1.cri/sandboxes/" + PlaceholderSandboxID,
		PlaceholderContainerdState + "/io.containerd.grpc.v1.cri/containers/" + PlaceholderContainerID,
	}
}

// Load reads the configuration file at path ("" means DefaultPath) and
// fills in the defaults of the keys it does not set. A missing file is
// not an error: the result is Default(). Any other problem is, so that a
// typo never silently turns a protection off.
func Load(path string) (*Config, error) {
	if path == "" {
		path = DefaultPath
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(path, data)
}

// RestrictedPaths returns the effective restricted host paths: the
// default list, or Mounts.Restricted when set, plus
// Mounts.ExtraRestricted, with placeholders expanded, cleaned and without
// duplicates.
func (c *Config) RestrictedPaths() []string {
	l := c.Mounts.Restricted
	if l == nil {
		l = DefaultRestricted()
	}
	return c.expandAll(slices.Concat(l, c.Mounts.ExtraRestricted))
}

// RestrictedExceptions returns the patterns of paths under restricted
// ones that are the container's own, with the engine directories
// expanded. {id} and {sandbox} stay for the mount policy to match against
// the container and sandbox IDs; '*' stands for exactly one path element.
func (c *Config) RestrictedExceptions() []string {
	return c.expandAll(defaultExceptions())
}

// AllowedPaths returns Mounts.Allowed with placeholders expanded.
func (c *Config) AllowedPaths() []string {
	return c.expandAll(c.Mounts.Allowed)
}

// EngineSockets returns the engine socket paths that Docker.SocketImages
// applies to.
func (c *Config) EngineSockets() []string {
	return []string{"/run/docker.sock", "/var/run/docker.sock"}
}

func (c *Config) expandAll(l []string) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		s = c.expand(s)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// expand replaces a leading engine-directory placeholder. An empty
// directory (a Config not made by Load or Default) falls back to the
// default rather than turning "{docker_data_root}/x" into "/x".
func (c *Config) expand(s string) string {
	for _, r := range []struct{ ph, val, def string }{
		{PlaceholderDockerDataRoot, c.Docker.DataRoot, DefaultDockerDataRoot},
		{PlaceholderContainerdRoot, c.Containerd.Root, DefaultContainerdRoot},
		{PlaceholderContainerdState, c.Containerd.State, DefaultContainerdState},
	} {
		rest, ok := strings.CutPrefix(s, r.ph)
		if !ok || (rest != "" && rest[0] != '/') {
			continue
		}
		val := r.val
		if val == "" {
			val = r.def
		}
		return filepath.Clean(val + rest)
	}
	if filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return s
}
