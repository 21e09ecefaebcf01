package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// writeConfig writes src to a config file of its own and returns its path.
func writeConfig(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadValid(t *testing.T) {
	withDefaults := func(f func(c *Config)) *Config {
		c := Default()
		f(c)
		return c
	}
	tests := []struct {
		name string
		src  string
		want *Config
	}{
		{
			name: "empty file",
			src:  "",
			want: Default(),
		},
		{
			name: "comments only",
			src:  "# nothing to see\n\n   # here\n",
			want: Default(),
		},
		{
			name: "every key",
			src: `
[mounts]
restricted = ["/etc/docker", "{docker_data_root}"]
extra_restricted = ["/srv/secrets"]
strict = true
allowed = ["/srv/data", "/home"]

[docker]
data_root = "/srv/docker"
socket_images = ["moat-test/dind:1", "docker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]

[containerd]
root = "/srv/containerd"
state = "/run/ctrd"

[ids]
subid_user = "moat-ids"
containers = 16

[devices]
allowed = ["/dev/kvm", "/dev//vhost-net/"]
`,
			want: &Config{
				Mounts: Mounts{
					Restricted:      []string{"/etc/docker", "{docker_data_root}"},
					ExtraRestricted: []string{"/srv/secrets"},
					Strict:          true,
					Allowed:         []string{"/srv/data", "/home"},
				},
				Docker: Docker{
					DataRoot:     "/srv/docker",
					SocketImages: []string{"moat-test/dind:1", "docker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
				},
				Containerd: Containerd{Root: "/srv/containerd", State: "/run/ctrd"},
				IDs:        IDs{SubIDUser: "moat-ids", Containers: 16},
				Devices:    Devices{Allowed: []string{"/dev/kvm", "/dev/vhost-net"}},
			},
		},
		{
			name: "empty device allowlist replaces the defaults",
			src:  "[devices]\nallowed = []\n",
			want: withDefaults(func(c *Config) { c.Devices.Allowed = []string{} }),
		},
		{
			name: "dotted keys and inline tables",
			src:  "mounts.strict = true\nids = { containers = 1, subid_user = \"m\" }\ndocker.data_root = '/d'\n",
			want: withDefaults(func(c *Config) {
				c.Mounts.Strict = true
				c.IDs = IDs{SubIDUser: "m", Containers: 1}
				c.Docker.DataRoot = "/d"
			}),
		},
		{
			name: "empty restricted list replaces the defaults",
			src:  "[mounts]\nrestricted = []\n",
			want: withDefaults(func(c *Config) { c.Mounts.Restricted = []string{} }),
		},
		{
			name: "paths are cleaned, placeholders kept",
			src:  "[mounts]\nextra_restricted = [\"//srv//x/\", \"{containerd_root}//a/../b/\", \"{docker_data_root}/\"]\n[docker]\ndata_root = \"/srv/docker/\"\n",
			want: withDefaults(func(c *Config) {
				c.Mounts.ExtraRestricted = []string{"/srv/x", "{containerd_root}/b", "{docker_data_root}"}
				c.Docker.DataRoot = "/srv/docker"
			}),
		},
		{
			name: "largest number of ranges",
			src:  "[ids]\ncontainers = 65536\n",
			want: withDefaults(func(c *Config) { c.IDs.Containers = MaxContainers }),
		},
		{
			name: "CRLF line ends, multi-line array with comments",
			src:  "[docker]\r\nsocket_images = [\r\n  \"a:1\", # ] not the end\r\n  'b',\r\n]\r\n",
			want: withDefaults(func(c *Config) { c.Docker.SocketImages = []string{"a:1", "b"} }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.want.Path = path
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	got, err := Load(filepath.Join(t.TempDir(), "nope", "config.toml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("Load of a missing file = %#v, want the defaults", got)
	}
	if got.Path != "" {
		t.Errorf("Path = %q, want \"\" for the defaults", got.Path)
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load of a directory: err = %v, want a read error", err)
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		key  string
		msg  string // the message after "config <path>: "
	}{
		{
			name: "wrong type, the example of the docs",
			src:  "# moat\n\n[mounts]\nstrict = \"yes\"\n",
			line: 4, key: "mounts.strict",
			msg: `line 4: key mounts.strict: expected a boolean, got string "yes"`,
		},
		{
			name: "typo in a table",
			src:  "[mounts]\nstrict = true\nstirct = true\n",
			line: 3, key: "mounts.stirct",
			msg: "line 3: key mounts.stirct: unknown key (did you mean mounts.strict?)",
		},
		{
			name: "typo in a dotted key",
			src:  "\nmounts.stirct = true\n",
			line: 2, key: "mounts.stirct",
			msg: "line 2: key mounts.stirct: unknown key (did you mean mounts.strict?)",
		},
		{
			name: "typo in an inline table",
			src:  "ids = {containers = 2,\n  subid_usr = \"x\"}\n",
			line: 2, key: "ids.subid_usr",
			msg: "line 2: key ids.subid_usr: unknown key (did you mean ids.subid_user?)",
		},
		{
			name: "unknown table",
			src:  "[ids]\ncontainers = 2\n\n[mount]\nstrict = true\n",
			line: 4, key: "mount",
			msg: "line 4: key mount: unknown key (did you mean mounts?)",
		},
		{
			name: "unknown table below a known one",
			src:  "[docker.extra]\nx = 1\n",
			line: 1, key: "docker.extra",
			msg: "line 1: key docker.extra: unknown key",
		},
		{
			name: "unknown key without a near name",
			src:  "colour = \"blue\"\n",
			line: 1, key: "colour",
			msg: "line 1: key colour: unknown key",
		},
		{
			name: "quoted keys",
			src:  "[ \"mounts\" ]\n'strict' = 1\n",
			line: 2, key: "mounts.strict",
			msg: "line 2: key mounts.strict: expected a boolean, got integer 1",
		},
		{
			name: "table where a value belongs",
			src:  "[mounts.strict]\nx = 1\n",
			line: 1, key: "mounts.strict",
			msg: "line 1: key mounts.strict: expected a boolean, got a table",
		},
		{
			name: "value where a table belongs",
			src:  "mounts = 1\n",
			line: 1, key: "mounts",
			msg: "line 1: key mounts: expected a table, got integer 1",
		},
		{
			name: "array of tables",
			src:  "[[mounts]]\nstrict = true\n",
			line: 1, key: "mounts",
			msg: "line 1: key mounts: expected a table, got an array of tables",
		},
		{
			name: "relative path in a list",
			src:  "[mounts]\nallowed = [\n  \"/srv\",\n  \"data\",\n]\n",
			line: 2, key: "mounts.allowed",
			msg: `line 2: key mounts.allowed: element 2: "data" is not an absolute path`,
		},
		{
			name: "relative restricted path",
			src:  "[mounts]\nrestricted = [\"etc/docker\"]\n",
			line: 2, key: "mounts.restricted",
			msg: `line 2: key mounts.restricted: element 1: "etc/docker" is not an absolute path`,
		},
		{
			name: "unknown placeholder",
			src:  "[mounts]\nextra_restricted = [\"{docker_root}/x\"]\n",
			line: 2, key: "mounts.extra_restricted",
			msg: `line 2: key mounts.extra_restricted: element 1: "{docker_root}/x" starts with an unknown placeholder (known: {docker_data_root}, {containerd_root}, {containerd_state})`,
		},
		{
			name: "placeholder not at the start",
			src:  "[mounts]\nextra_restricted = [\"x/{docker_data_root}\"]\n",
			line: 2, key: "mounts.extra_restricted",
			msg: `line 2: key mounts.extra_restricted: element 1: "x/{docker_data_root}" is not an absolute path`,
		},
		{
			name: "not a list of strings",
			src:  "[mounts]\nallowed = [\"/srv\", 3]\n",
			line: 2, key: "mounts.allowed",
			msg: "line 2: key mounts.allowed: expected an array of strings, got integer 3 as element 2",
		},
		{
			name: "string instead of a list",
			src:  "[docker]\nsocket_images = \"docker:dind\"\n",
			line: 2, key: "docker.socket_images",
			msg: `line 2: key docker.socket_images: expected an array of strings, got string "docker:dind"`,
		},
		{
			name: "empty image",
			src:  "[docker]\nsocket_images = [\"\"]\n",
			line: 2, key: "docker.socket_images",
			msg: `line 2: key docker.socket_images: element 1: "" is not an image reference or ID`,
		},
		{
			name: "relative data root",
			src:  "[docker]\ndata_root = \"var/lib/docker\"\n",
			line: 2, key: "docker.data_root",
			msg: `line 2: key docker.data_root: "var/lib/docker" is not an absolute path`,
		},
		{
			name: "empty containerd state",
			src:  "[containerd]\nstate = \"\"\n",
			line: 2, key: "containerd.state",
			msg: `line 2: key containerd.state: "" is not an absolute path`,
		},
		{
			name: "placeholder in a single path key",
			src:  "[containerd]\nroot = \"{docker_data_root}/c\"\n",
			line: 2, key: "containerd.root",
			msg: `line 2: key containerd.root: "{docker_data_root}/c" is not an absolute path`,
		},
		{
			name: "no ranges",
			src:  "[ids]\ncontainers = 0\n",
			line: 2, key: "ids.containers",
			msg: "line 2: key ids.containers: 0 is out of range (1 to 65536)",
		},
		{
			name: "too many ranges",
			src:  "[ids]\ncontainers = 65537\n",
			line: 2, key: "ids.containers",
			msg: "line 2: key ids.containers: 65537 is out of range (1 to 65536)",
		},
		{
			name: "ranges as a string",
			src:  "[ids]\ncontainers = \"10\"\n",
			line: 2, key: "ids.containers",
			msg: `line 2: key ids.containers: expected an integer, got string "10"`,
		},
		{
			name: "ranges as a float",
			src:  "[ids]\ncontainers = 1.5\n",
			line: 2, key: "ids.containers",
			msg: "line 2: key ids.containers: expected an integer, got float 1.5",
		},
		{
			name: "empty subid user",
			src:  "[ids]\nsubid_user = ''\n",
			line: 2, key: "ids.subid_user",
			msg: "line 2: key ids.subid_user: must not be empty",
		},
		{
			name: "subid user with a colon",
			src:  "[ids]\nsubid_user = \"mo:at\"\n",
			line: 2, key: "ids.subid_user",
			msg: `line 2: key ids.subid_user: "mo:at" must not contain ':', whitespace or control characters`,
		},
		{
			name: "subid user with a space",
			src:  "[ids]\nsubid_user = \"mo at\"\n",
			line: 2, key: "ids.subid_user",
			msg: `line 2: key ids.subid_user: "mo at" must not contain ':', whitespace or control characters`,
		},
		{
			name: "subid user as a number",
			src:  "[ids]\nsubid_user = 1000\n",
			line: 2, key: "ids.subid_user",
			msg: "line 2: key ids.subid_user: expected a string, got integer 1000",
		},
		{
			name: "datetime",
			src:  "[ids]\nsubid_user = 1979-05-27 07:32:00Z\n",
			line: 2, key: "ids.subid_user",
			msg: "line 2: key ids.subid_user: expected a string, got a datetime",
		},
		{
			name: "line counted past multi-line strings and arrays",
			src: "[docker]\ndata_root = \"\"\"\n/srv/docker\n[mounts]\nstrict = 1\n\"\"\"\n" +
				"socket_images = [\n  'a', # ] '\n  \"\"\"\nb\"\"\",\n]\n[mounts]\nstrict = \"no\"\n",
			line: 13, key: "mounts.strict",
			msg: `line 13: key mounts.strict: expected a boolean, got string "no"`,
		},
		{
			name: "byte order mark",
			src:  "\ufeffmounts.strict = 0\n",
			line: 1, key: "mounts.strict",
			msg: "line 1: key mounts.strict: expected a boolean, got integer 0",
		},
		{
			name: "keys match their case",
			src:  "[mounts]\nStrict = true\n",
			line: 2, key: "mounts.Strict",
			msg: "line 2: key mounts.Strict: unknown key (did you mean mounts.strict?)",
		},
		{
			name: "wrong type in an inline table",
			src:  "ids = {\n  containers = \"x\" }\n",
			line: 2, key: "ids.containers",
			msg: `line 2: key ids.containers: expected an integer, got string "x"`,
		},
		{
			name: "array in an array",
			src:  "mounts = { allowed = [[\"/srv\"]] }\n",
			line: 1, key: "mounts.allowed",
			msg: "line 1: key mounts.allowed: expected an array of strings, got an array as element 1",
		},
		{
			name: "quoted unknown key",
			src:  "[mounts]\n\"a.b\" = 1\n",
			line: 2, key: `mounts."a.b"`,
			msg: `line 2: key mounts."a.b": unknown key`,
		},
		{
			name: "unknown key before a wrong type",
			src:  "colour = 1\n[mounts]\nstrict = 2\n",
			line: 1, key: "colour",
			msg: "line 1: key colour: unknown key",
		},
		{
			name: "first problem in the file wins",
			src:  "[ids]\ncontainers = 0\n[mounts]\nstrict = 1\n",
			line: 2, key: "ids.containers",
			msg: "line 2: key ids.containers: 0 is out of range (1 to 65536)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %#v, want an error", c)
			}
			if want := "config " + path + ": " + tt.msg; err.Error() != want {
				t.Errorf("error\n got %q\nwant %q", err, want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if ce.Path != path || ce.Line != tt.line || ce.Key != tt.key {
				t.Errorf("error path/line/key = %q/%d/%q, want %q/%d/%q", ce.Path, ce.Line, ce.Key, path, tt.line, tt.key)
			}
		})
	}
}

func TestLoadSyntaxError(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		msg  string // a part of the message
	}{
		{"unclosed table header", "# x\n[mounts\nstrict = true\n", 2, "invalid TOML: "},
		{"duplicate key", "[mounts]\nstrict = true\nstrict = false\n", 3, "already defined"},
		{"duplicate table", "[ids]\n[mounts]\n[ids]\n", 3, "invalid TOML: "},
		{"value missing", "[ids]\n\ncontainers =\n", 3, "invalid TOML: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.src)
			_, err := Load(path)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load error %v, want a *config.Error", err)
			}
			if ce.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", ce.Line, tt.line, err)
			}
			if prefix := "config " + path + ": line "; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want it to start with %q and contain %q", err, prefix, tt.msg)
			}
			var de *toml.DecodeError
			if !errors.As(err, &de) {
				t.Errorf("error %v does not wrap the toml.DecodeError", err)
			}
		})
	}
}

func TestRestrictedPaths(t *testing.T) {
	custom := Default()
	custom.Docker.DataRoot = "/srv/docker"
	custom.Containerd = Containerd{Root: "/srv/ctrd", State: "/run/ctrd"}

	tests := []struct {
		name   string
		c      *Config
		mounts Mounts
		want   []string
	}{
		{
			name: "defaults",
			c:    Default(),
			want: []string{
				"/etc/docker", "/var/lib/docker", "/run/docker.sock", "/var/run/docker.sock",
				"/run/docker", "/var/run/docker", "/etc/containerd", "/var/lib/containerd",
				"/run/containerd", "/etc/moat", "/var/lib/moat", "/run/moat", "/run/moat-mounts",
				"/proc", "/sys", "/dev", "/boot", "/lib/modules", "/usr/lib/modules",
			},
		},
		{
			name:   "defaults with moved engine directories, plus extras",
			c:      custom,
			mounts: Mounts{ExtraRestricted: []string{"/srv/secrets", "{docker_data_root}/image", "/etc/docker"}},
			want: []string{
				"/etc/docker", "/srv/docker", "/run/docker.sock", "/var/run/docker.sock",
				"/run/docker", "/var/run/docker", "/etc/containerd", "/srv/ctrd",
				"/run/ctrd", "/etc/moat", "/var/lib/moat", "/run/moat", "/run/moat-mounts",
				"/proc", "/sys", "/dev", "/boot", "/lib/modules", "/usr/lib/modules",
				"/srv/secrets", "/srv/docker/image",
			},
		},
		{
			name:   "replaced list",
			c:      custom,
			mounts: Mounts{Restricted: []string{"{containerd_state}", "/etc"}, ExtraRestricted: []string{"/x"}},
			want:   []string{"/run/ctrd", "/etc", "/x"},
		},
		{
			name:   "replaced by an empty list",
			c:      custom,
			mounts: Mounts{Restricted: []string{}, ExtraRestricted: []string{"/x"}},
			want:   []string{"/x"},
		},
		{
			name:   "a zero Config falls back to the default directories",
			c:      &Config{},
			mounts: Mounts{Restricted: []string{"{docker_data_root}/x", "{containerd_root}", "{containerd_state}/"}},
			want:   []string{"/var/lib/docker/x", "/var/lib/containerd", "/run/containerd"},
		},
		{
			name:   "unknown placeholders are left alone",
			c:      &Config{},
			mounts: Mounts{Restricted: []string{"{docker_data_rootx}", "{nope}/x"}},
			want:   []string{"{docker_data_rootx}", "{nope}/x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *tt.c
			c.Mounts = tt.mounts
			if got := c.RestrictedPaths(); !slices.Equal(got, tt.want) {
				t.Errorf("RestrictedPaths()\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRestrictedPathsFromFile(t *testing.T) {
	path := writeConfig(t, `
[mounts]
extra_restricted = ["{docker_data_root}/image"]
allowed = ["{containerd_state}/x", "/srv"]
[docker]
data_root = "/data/docker"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := c.RestrictedPaths()
	for _, want := range []string{"/data/docker", "/data/docker/image"} {
		if !slices.Contains(got, want) {
			t.Errorf("RestrictedPaths() = %q, want it to contain %q", got, want)
		}
	}
	if slices.Contains(got, "/var/lib/docker") {
		t.Errorf("RestrictedPaths() = %q still has the default data root", got)
	}
	if got, want := c.AllowedPaths(), []string{"/run/containerd/x", "/srv"}; !slices.Equal(got, want) {
		t.Errorf("AllowedPaths() = %q, want %q", got, want)
	}
}

func TestRestrictedExceptions(t *testing.T) {
	c := Default()
	c.Docker.DataRoot = "/srv/docker"
	c.Containerd = Containerd{Root: "/srv/ctrd", State: "/run/ctrd"}
	tests := []struct {
		name string
		c    *Config
		want []string
	}{
		{
			name: "defaults",
			c:    Default(),
			want: []string{
				"/var/lib/docker/containers/{id}",
				"/var/lib/docker/volumes/*/_data",
				"/var/lib/containerd/io.containerd.grpc.v1.cri/containers/{id}",
				"/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox}",
				"/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox}",
				"/run/containerd/io.containerd.grpc.v1.cri/containers/{id}",
			},
		},
		{
			name: "moved engine directories",
			c:    c,
			want: []string{
				"/srv/docker/containers/{id}",
				"/srv/docker/volumes/*/_data",
				"/srv/ctrd/io.containerd.grpc.v1.cri/containers/{id}",
				"/srv/ctrd/io.containerd.grpc.v1.cri/sandboxes/{sandbox}",
				"/run/ctrd/io.containerd.grpc.v1.cri/sandboxes/{sandbox}",
				"/run/ctrd/io.containerd.grpc.v1.cri/containers/{id}",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.RestrictedExceptions(); !slices.Equal(got, tt.want) {
				t.Errorf("RestrictedExceptions()\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEngineSockets(t *testing.T) {
	want := []string{"/run/docker.sock", "/var/run/docker.sock"}
	if got := Default().EngineSockets(); !slices.Equal(got, want) {
		t.Errorf("EngineSockets() = %q, want %q", got, want)
	}
}

func TestDefaultRestrictedIsACopy(t *testing.T) {
	l := DefaultRestricted()
	l[0] = "/changed"
	if DefaultRestricted()[0] == "/changed" {
		t.Error("DefaultRestricted returns shared state")
	}
}

// lines maps every key of src, and every table and parent of a dotted
// key, to the line where it first appears, as keyPositions finds them.
func lines(src string) map[string]int {
	m := map[string]int{}
	for _, k := range keyPositions([]byte(src)) {
		for n := 1; n <= len(k.key); n++ {
			if s := strings.Join(k.key[:n], "."); m[s] == 0 {
				m[s] = k.line
			}
		}
	}
	return m
}

func TestKeyLines(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]int // dotted key -> line
	}{
		{
			name: "tables and dotted keys",
			src:  "a = 1\n[b.c]\nd.e = 2\n[[f]]\ng = 3\n[[f]]\nh = 4\n",
			want: map[string]int{"a": 1, "b": 2, "b.c": 2, "b.c.d": 3, "b.c.d.e": 3, "f": 4, "f.g": 5, "f.h": 7},
		},
		{
			name: "quoted keys with escapes and spaces around dots",
			src:  "[ \"x\" . 'y' ]\n\"\\u0061\" . b = 1\n",
			want: map[string]int{"x": 1, "x.y": 1, "x.y.a": 2, "x.y.a.b": 2},
		},
		{
			name: "inline tables, nested and across lines",
			src:  "t = { a = 1, b = { c = [ {d = 1},\n {e = 2} ] },\n f = 3 }\n",
			want: map[string]int{"t": 1, "t.a": 1, "t.b": 1, "t.b.c": 1, "t.f": 3},
		},
		{
			name: "strings that look like keys",
			src:  "s = \"\"\"\nx = 1\n[y]\n\"\"\"\"\"\nl = '''\nz = 1'''\nq = \"# [w]\" # [v]\nr = 1\n",
			want: map[string]int{"s": 1, "l": 5, "q": 7, "r": 8},
		},
		{
			name: "escaped quotes in multi-line basic strings",
			src:  "s = \"\"\"a\\\"\"\"\nb\"\"\"\nt = 1\n",
			want: map[string]int{"s": 1, "t": 3},
		},
		{
			name: "datetime with a space",
			src:  "d = 1979-05-27 07:32:00Z # c\ne = 1\n",
			want: map[string]int{"d": 1, "e": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]any
			if err := toml.Unmarshal([]byte(tt.src), &doc); err != nil {
				t.Fatalf("test document does not parse: %v", err)
			}
			if got := lines(tt.src); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("keyPositions\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// FuzzKeyLines checks that keyPositions does not panic on any input,
// parseable or not, and that what it finds is inside the document, at the
// right line.
func FuzzKeyLines(f *testing.F) {
	for _, s := range []string{"", "[a", "a = \"\"\"", "a = '''x''''", "t = {a = [", "\"\\u", "[[x]]\ny.z = {", "\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range keyPositions([]byte(s)) {
			if k.start < 0 || k.start >= len(s) {
				t.Fatalf("key %q at byte %d, outside the document", k.key, k.start)
			}
			if want := 1 + strings.Count(s[:k.start], "\n"); k.line != want {
				t.Fatalf("key %q at line %d, want %d", k.key, k.line, want)
			}
		}
	})
}

// tableKeys calls f with every key of a decoded document that is not
// inside an array, tables included.
func tableKeys(m map[string]any, parent []string, f func([]string)) {
	for k, v := range m {
		key := append(slices.Clone(parent), k)
		f(key)
		if sub, ok := v.(map[string]any); ok {
			tableKeys(sub, key, f)
		}
	}
}

// FuzzParse checks that parse never panics, that every problem with a
// key it reports comes with a line, and that keyPositions finds every key
// the library does (outside arrays), which unknownKey relies on.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"[mounts]\nstrict = \"yes\"\n",
		"mounts.stirct = 1\n",
		"\"mounts\".'strict' = 1\n",
		"ids = { containers = 0 }\n",
		"[docker]\nsocket_images = [\n'a',\n1]\n",
		"[\"\\u006dounts\"]\nx = 1\n",
		"a.b.c = 1\n",
		"[[mounts]]\n",
		"x = \"\"\"\n[mounts]\n\"\"\"\ny = 1\n",
		"\"\\x61\" = 1\n'a.b' = 2\n\"\\U0001F600\" = 3\n\"a\\\"b\".c = 4\n",
		"[a] # c\n[ b\t. c ]\n'#x' = { '=' = [ { d = 1 } ] }\n",
		"e = \"\\e\"\nt = 07:32\n",
		"[MOUNTS]\nallowed = ['x']\n",
		"ids = { containers = 1, x = { y = 'z' } }\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := parse("f", []byte(s))
		var ce *Error
		if errors.As(err, &ce) && ce.Key != "" && ce.Line < 1 {
			t.Fatalf("error %v names key %s but no line", err, ce.Key)
		}
		var doc map[string]any
		if err := toml.Unmarshal([]byte(strings.TrimPrefix(s, "\ufeff")), &doc); err != nil {
			return
		}
		keys := keyPositions([]byte(strings.TrimPrefix(s, "\ufeff")))
		tableKeys(doc, nil, func(k []string) {
			if _, ok := firstPos(keys, k); !ok {
				t.Fatalf("key %q not found by keyPositions in %q", k, s)
			}
		})
	})
}
