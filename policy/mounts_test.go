package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	policyDindID  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	policyOtherID = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	policyDigest  = "sha256:abababababababababababababababababababababababababababababababab"
)

// policyNoLinks resolves every path to itself: tests that use it do not
// depend on the symlinks of the host running them.
func policyNoLinks(p string) (string, error) { return p, nil }

// policyDefaults is a policy like the one the runtime makes from the
// default configuration.
func policyDefaults() Policy {
	return Policy{
		Restricted: []string{
			"/etc/docker", "/var/lib/docker", "/run/docker.sock", "/var/run/docker.sock",
			"/run/docker", "/var/run/docker", "/etc/containerd", "/var/lib/containerd",
			"/run/containerd", "/etc/moat", "/var/lib/moat", "/run/moat", "/run/moat-mounts",
			"/proc", "/sys", "/dev", "/boot", "/lib/modules", "/usr/lib/modules",
		},
		Exceptions: []string{
			"/var/lib/docker/containers/{id}",
			"/var/lib/docker/volumes/*/_data",
			"/var/lib/containerd/io.containerd.grpc.v1.cri/containers/{id}",
			"/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox}",
			"/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{sandbox}",
			"/run/containerd/io.containerd.grpc.v1.cri/containers/{id}",
		},
		Sockets:      []string{"/run/docker.sock", "/var/run/docker.sock"},
		SocketImages: []string{"moat-test/dind:1", "docker:dind"},
	}
}

func mustPolicy(t testing.TB, p Policy) *Policy {
	t.Helper()
	pol, err := newPolicy(p, policyNoLinks)
	if err != nil {
		t.Fatalf("newPolicy: %v", err)
	}
	return pol
}

func TestPolicyCheck(t *testing.T) {
	ctr := Context{ContainerID: "abc123", SandboxID: "sb1"}
	withImage := func(img *Image) Context { c := ctr; c.Image = img; return c }
	dind := &Image{ID: policyDindID, Names: []string{"moat-test/dind:1"}}
	busybox := &Image{ID: policyOtherID, Names: []string{"moat-test/busybox:2", "busybox:latest"}}
	strict := func(p *Policy) { p.Strict = true; p.Allowed = []string{"/srv/data", "/home/"} }

	restricted := func(s string) string {
		return "can't mount " + s + " because it's configured as a restricted host mount"
	}
	contains := func(s, r string) string {
		return "can't mount " + s + " because it contains " + r + ", which is configured as a restricted host mount"
	}
	notAllowed := func(s string) string {
		return "can't mount " + s + " because it's not among the host directories allowed in strict mode (mounts.allowed)"
	}

	tests := []struct {
		name   string
		modify func(*Policy)
		source string
		ctx    Context
		want   string // "" for allowed
	}{
		{name: "under a restricted path", source: "/etc/docker/daemon.json", ctx: ctr, want: restricted("/etc/docker/daemon.json")},
		{name: "a restricted path", source: "/etc/docker", ctx: ctr, want: restricted("/etc/docker")},
		{name: "parent of a restricted path", source: "/etc", ctx: ctr, want: contains("/etc", "/etc/docker")},
		{name: "root contains everything", source: "/", ctx: ctr, want: contains("/", "/etc/docker")},
		{name: "grandparent", source: "/var", ctx: ctr, want: contains("/var", "/var/lib/docker")},
		{name: "ancestor named by list order", source: "/run", ctx: ctr, want: contains("/run", "/run/docker.sock")},
		{name: "element boundary: longer name", source: "/etc/dockerfile", ctx: ctr},
		{name: "element boundary: longer name, below", source: "/etc/docker-x/y", ctx: ctr},
		{name: "element boundary: shorter name", source: "/etc/dock", ctx: ctr},
		{name: "element boundary: no ancestor by prefix", source: "/usr/lib/mod", ctx: ctr},
		{name: "unrelated", source: "/srv/data", ctx: ctr},
		{name: "proc", source: "/proc/self/ns", ctx: ctr, want: restricted("/proc/self/ns")},
		{name: "dev", source: "/dev/null", ctx: ctr, want: restricted("/dev/null")},
		{name: "modules parent", source: "/usr/lib", ctx: ctr, want: contains("/usr/lib", "/usr/lib/modules")},

		{name: "the container's own file", source: "/var/lib/docker/containers/abc123/hostname", ctx: ctr},
		{name: "the container's own dir", source: "/var/lib/docker/containers/abc123", ctx: ctr},
		{name: "another container's file", source: "/var/lib/docker/containers/other/hostname", ctx: ctr, want: restricted("/var/lib/docker/containers/other/hostname")},
		{name: "all containers", source: "/var/lib/docker/containers", ctx: ctr, want: restricted("/var/lib/docker/containers")},
		{name: "the data root", source: "/var/lib/docker", ctx: ctr, want: restricted("/var/lib/docker")},
		{name: "parent of the data root", source: "/var/lib", ctx: ctr, want: contains("/var/lib", "/var/lib/docker")},
		{name: "empty container ID matches nothing", source: "/var/lib/docker/containers/x", ctx: Context{}, want: restricted("/var/lib/docker/containers/x")},
		{name: "placeholder is not a literal", source: "/var/lib/docker/containers/{id}", ctx: Context{}, want: restricted("/var/lib/docker/containers/{id}")},
		{name: "ID with a slash", source: "/var/lib/docker/containers/a/b", ctx: Context{ContainerID: "a/b"}, want: restricted("/var/lib/docker/containers/a/b")},
		{name: "ID of dots", source: "/var/lib/docker/containers", ctx: Context{ContainerID: ".."}, want: restricted("/var/lib/docker/containers")},
		{name: "joined container's file", source: "/var/lib/docker/containers/donor/mounts/shm", ctx: Context{ContainerID: "abc123", Joined: []string{"donor"}}},
		{name: "not joined container's file", source: "/var/lib/docker/containers/other/hosts", ctx: Context{ContainerID: "abc123", Joined: []string{"donor"}}, want: restricted("/var/lib/docker/containers/other/hosts")},
		{name: "empty joined ID matches nothing", source: "/var/lib/docker/containers", ctx: Context{ContainerID: "abc123", Joined: []string{""}}, want: restricted("/var/lib/docker/containers")},
		{name: "named volume", source: "/var/lib/docker/volumes/vol1/_data", ctx: ctr},
		{name: "in a named volume", source: "/var/lib/docker/volumes/vol1/_data/sub/f", ctx: ctr},
		{name: "volume metadata", source: "/var/lib/docker/volumes/vol1", ctx: ctr, want: restricted("/var/lib/docker/volumes/vol1")},
		{name: "wildcard is one element", source: "/var/lib/docker/volumes/a/b/_data", ctx: ctr, want: restricted("/var/lib/docker/volumes/a/b/_data")},
		{name: "CRI sandbox file", source: "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/hostname", ctx: ctr},
		{name: "CRI sandbox of another pod", source: "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/hostname", ctx: ctr, want: restricted("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/hostname")},
		{name: "CRI sandbox, no sandbox ID", source: "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1", ctx: Context{ContainerID: "abc123"}, want: restricted("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1")},
		{name: "CRI container file", source: "/var/lib/containerd/io.containerd.grpc.v1.cri/containers/abc123/x", ctx: ctr},
		{name: "sandbox ID is not a container ID", source: "/run/containerd/io.containerd.grpc.v1.cri/containers/sb1", ctx: ctr, want: restricted("/run/containerd/io.containerd.grpc.v1.cri/containers/sb1")},

		{name: "socket, unknown image", source: "/run/docker.sock", ctx: ctr,
			want: restricted("/run/docker.sock") + " (the container's image could not be established)"},
		{name: "socket, image without ID or names", source: "/run/docker.sock", ctx: withImage(&Image{}),
			want: restricted("/run/docker.sock") + " (the container's image could not be established)"},
		{name: "socket, image not allowed", source: "/run/docker.sock", ctx: withImage(busybox),
			want: restricted("/run/docker.sock") + " (image moat-test/busybox:2 is not in docker.socket_images)"},
		{name: "socket, image known by ID only", source: "/var/run/docker.sock", ctx: withImage(&Image{ID: policyOtherID}),
			want: restricted("/var/run/docker.sock") + " (image " + policyOtherID + " is not in docker.socket_images)"},
		{name: "socket, image allowed", source: "/run/docker.sock", ctx: withImage(dind)},
		{name: "socket by its other path, image allowed", source: "/var/run/docker.sock", ctx: withImage(dind)},
		{name: "socket dir, image allowed", source: "/run/docker", ctx: withImage(dind), want: restricted("/run/docker")},
		{name: "socket's parent, image allowed", source: "/var/run", ctx: withImage(dind), want: contains("/var/run", "/var/run/docker.sock")},
		{name: "socket not restricted", modify: func(p *Policy) { p.Restricted = []string{"/etc"} }, source: "/run/docker.sock", ctx: ctr},

		{name: "strict: allowed dir", modify: strict, source: "/srv/data", ctx: ctr},
		{name: "strict: under an allowed dir", modify: strict, source: "/srv/data/x/y", ctx: ctr},
		{name: "strict: allowed dir given with a slash", modify: strict, source: "/home/u", ctx: ctr},
		{name: "strict: element boundary", modify: strict, source: "/srv/database", ctx: ctr, want: notAllowed("/srv/database")},
		{name: "strict: parent of an allowed dir", modify: strict, source: "/srv", ctx: ctr, want: notAllowed("/srv")},
		{name: "strict: engine file", modify: strict, source: "/var/lib/docker/containers/abc123/resolv.conf", ctx: ctr},
		{name: "strict: named volume", modify: strict, source: "/var/lib/docker/volumes/v/_data", ctx: ctr},
		{name: "strict: allowed socket", modify: strict, source: "/run/docker.sock", ctx: withImage(dind)},
		{name: "strict: restricted first", modify: strict, source: "/etc/docker", ctx: ctr, want: restricted("/etc/docker")},
		{name: "strict: allowed but restricted", source: "/etc/docker/x", ctx: ctr,
			modify: func(p *Policy) { p.Strict = true; p.Allowed = []string{"/etc"} }, want: restricted("/etc/docker/x")},
		{name: "strict: allowed ancestor of restricted", source: "/etc", ctx: ctr,
			modify: func(p *Policy) { p.Strict = true; p.Allowed = []string{"/"} }, want: contains("/etc", "/etc/docker")},

		{name: "exception does not cover an ancestor", source: "/var/lib/docker/containers/abc123", ctx: ctr,
			modify: func(p *Policy) { p.Restricted = append(p.Restricted, "/var/lib/docker/containers/abc123/secret") },
			want:   contains("/var/lib/docker/containers/abc123", "/var/lib/docker/containers/abc123/secret")},
		{name: "restricted root refuses everything", source: "/srv", ctx: ctr,
			modify: func(p *Policy) { p.Restricted = []string{"/"} }, want: restricted("/srv")},
		{name: "restricted paths are cleaned", source: "/x/y", ctx: ctr,
			modify: func(p *Policy) { p.Restricted = []string{"//x/./y/"} }, want: restricted("/x/y")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policyDefaults()
			if tt.modify != nil {
				tt.modify(&p)
			}
			err := mustPolicy(t, p).Check(tt.source, tt.ctx)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want it allowed", tt.source, err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("Check(%q) = %v, want a *RefusedError", tt.source, err)
			}
			if err.Error() != tt.want {
				t.Errorf("Check(%q)\n got %q\nwant %q", tt.source, err, tt.want)
			}
		})
	}
}

func TestPolicyCheckBadSource(t *testing.T) {
	pol := mustPolicy(t, policyDefaults())
	for _, src := range []string{"", "etc/docker", "docker.sock", "/etc/docker/", "//etc/docker", "/etc/docker/../docker", "/srv/./data", "/srv/data/.."} {
		t.Run(src, func(t *testing.T) {
			err := pol.Check(src, Context{ContainerID: "c"})
			var re *RefusedError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("Check(%q) = %v, want an error that is not a refusal", src, err)
			}
			if !strings.Contains(err.Error(), "not an absolute clean path") {
				t.Errorf("Check(%q) = %v", src, err)
			}
		})
	}
}

func TestPolicyNotPrepared(t *testing.T) {
	for name, p := range map[string]*Policy{"nil": nil, "zero": {}, "literal": {Restricted: []string{"/etc"}}} {
		t.Run(name, func(t *testing.T) {
			if err := p.Check("/srv", Context{}); err == nil || !strings.Contains(err.Error(), "not made by NewPolicy") {
				t.Errorf("Check on an unprepared policy = %v, want an error", err)
			}
		})
	}
}

func TestRefusedErrorSource(t *testing.T) {
	err := mustPolicy(t, policyDefaults()).Check("/run/docker.sock", Context{})
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Check = %v, want a refusal", err)
	}
	re.Source = "/var/run/docker.sock"
	want := "can't mount /var/run/docker.sock because it's configured as a restricted host mount (the container's image could not be established)"
	if re.Error() != want {
		t.Errorf("with the source as given:\n got %q\nwant %q", re.Error(), want)
	}
}

func TestSocketImages(t *testing.T) {
	hex := strings.TrimPrefix(policyDindID, "sha256:")
	tests := []struct {
		entry string
		img   Image
		want  bool
	}{
		{"busybox", Image{Names: []string{"busybox"}}, true},
		{"busybox", Image{Names: []string{"busybox:latest"}}, true},
		{"busybox", Image{Names: []string{"docker.io/library/busybox:latest"}}, true},
		{"busybox", Image{Names: []string{"library/busybox"}}, true},
		{"busybox", Image{Names: []string{"index.docker.io/library/busybox"}}, true},
		{"docker.io/library/busybox:latest", Image{Names: []string{"busybox"}}, true},
		{"busybox", Image{Names: []string{"busybox:1.36"}}, false},
		{"busybox:1.36", Image{Names: []string{"busybox"}}, false},
		{"busybox", Image{Names: []string{"quay.io/busybox"}}, false},
		{"busybox", Image{Names: []string{"other/busybox"}}, false},
		{"moat-test/dind:1", Image{Names: []string{"docker.io/moat-test/dind:1"}}, true},
		{"moat-test/dind:1", Image{Names: []string{"x", "moat-test/dind:1"}}, true},
		{"moat-test/dind:1", Image{Names: []string{"moat-test/dind:2"}}, false},
		{"moat-test/dind:1", Image{Names: []string{"localhost/moat-test/dind:1"}}, false},
		{"moat-test/dind:1", Image{Names: []string{"moat-test/dind"}}, false},
		{"localhost/x:1", Image{Names: []string{"localhost/x:1"}}, true},
		{"localhost:5000/x", Image{Names: []string{"localhost:5000/x:latest"}}, true},
		{"localhost:5000/x", Image{Names: []string{"x"}}, false},
		{"reg.example/a/b:t", Image{Names: []string{"reg.example/a/b:t"}}, true},
		{"docker@" + policyDigest, Image{Names: []string{"docker@" + policyDigest}}, true},
		{"docker@" + policyDigest, Image{Names: []string{"docker.io/library/docker:dind@" + policyDigest}}, true},
		{"docker:cli@" + policyDigest, Image{Names: []string{"docker@" + policyDigest}}, true},
		{"docker@" + policyDigest, Image{Names: []string{"docker:dind"}}, false},
		{"docker@" + policyDigest, Image{Names: []string{"other@" + policyDigest}}, false},
		{"docker:dind", Image{Names: []string{"docker:dind@" + policyDigest}}, true},
		{"docker:dind", Image{Names: []string{"docker@" + policyDigest}}, false},
		{policyDindID, Image{ID: policyDindID}, true},
		{policyDindID, Image{ID: hex}, true},
		{hex, Image{ID: policyDindID}, true},
		{hex[:12], Image{ID: policyDindID}, true},
		{"sha256:" + hex[:12], Image{ID: policyDindID}, true},
		{strings.ToUpper(hex[:16]), Image{ID: policyDindID}, true},
		{hex[:11], Image{ID: policyDindID}, false},
		{hex[:12], Image{ID: policyOtherID}, false},
		{hex[:12], Image{ID: hex[:12]}, false},
		{policyDindID, Image{ID: policyOtherID, Names: []string{policyDindID}}, false},
		{policyDindID, Image{Names: []string{policyDindID, hex}}, false},
		{"docker:dind", Image{ID: policyDindID}, false},
		{"sha256", Image{Names: []string{policyDindID}}, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s~%v", tt.entry, tt.img), func(t *testing.T) {
			p := policyDefaults()
			p.SocketImages = []string{tt.entry}
			err := mustPolicy(t, p).Check("/run/docker.sock", Context{Image: &tt.img})
			if got := err == nil; got != tt.want {
				t.Errorf("entry %q, image %+v: allowed = %v (%v), want %v", tt.entry, tt.img, got, err, tt.want)
			}
		})
	}
}

func TestNewPolicyErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Policy)
		eval   func(string) (string, error)
		want   string
	}{
		{name: "relative restricted", modify: func(p *Policy) { p.Restricted = []string{"etc"} }, want: `restricted path "etc" is not absolute`},
		{name: "empty restricted", modify: func(p *Policy) { p.Restricted = []string{""} }, want: `restricted path "" is not absolute`},
		{name: "relative allowed", modify: func(p *Policy) { p.Allowed = []string{"srv"} }, want: `allowed path "srv" is not absolute`},
		{name: "relative socket", modify: func(p *Policy) { p.Sockets = []string{"docker.sock"} }, want: `socket path "docker.sock" is not absolute`},
		{name: "unexpanded exception", modify: func(p *Policy) { p.Exceptions = []string{"{docker_data_root}/containers/{id}"} }, want: "is not absolute"},
		{name: "unknown placeholder", modify: func(p *Policy) { p.Exceptions = []string{"/d/{name}"} }, want: `"{name}" is neither a path element nor one of`},
		{name: "glob in an element", modify: func(p *Policy) { p.Exceptions = []string{"/d/vol*/_data"} }, want: `"vol*" is neither`},
		{name: "no fixed head", modify: func(p *Policy) { p.Exceptions = []string{"/*/_data"} }, want: "does not start with a fixed path"},
		{name: "root exception", modify: func(p *Policy) { p.Exceptions = []string{"/"} }, want: "does not start with a fixed path"},
		{name: "empty image", modify: func(p *Policy) { p.SocketImages = []string{""} }, want: `socket image "" is not`},
		{name: "image with a space", modify: func(p *Policy) { p.SocketImages = []string{"docker dind"} }, want: "is not an image reference"},
		{name: "bad ID", modify: func(p *Policy) { p.SocketImages = []string{"sha256:xyz"} }, want: "is not an image reference"},
		{name: "empty tag", modify: func(p *Policy) { p.SocketImages = []string{"docker:"} }, want: "is not an image reference"},
		{name: "resolver fails", eval: func(string) (string, error) { return "", &fs.PathError{Op: "lstat", Path: "/x", Err: syscall.EACCES} }, want: "permission denied"},
		{name: "resolver returns a relative path", eval: func(string) (string, error) { return "x", nil }, want: "relative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policyDefaults()
			if tt.modify != nil {
				tt.modify(&p)
			}
			eval := tt.eval
			if eval == nil {
				eval = policyNoLinks
			}
			_, err := newPolicy(p, eval)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newPolicy = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestResolveExisting(t *testing.T) {
	// A fake file system: /var/run links to /run, /a/f is a file, /loop
	// is unresolvable.
	eval := func(p string) (string, error) {
		switch {
		case p == "/var/run" || strings.HasPrefix(p, "/var/run/"):
			if p == "/var/run" || p == "/var/run/docker.sock" {
				return "/run" + strings.TrimPrefix(p, "/var/run"), nil
			}
		case p == "/" || p == "/var" || p == "/a" || p == "/a/f":
			return p, nil
		case strings.HasPrefix(p, "/a/f/"):
			return "", &fs.PathError{Op: "lstat", Path: p, Err: syscall.ENOTDIR}
		case strings.HasPrefix(p, "/loop"):
			return "", &fs.PathError{Op: "lstat", Path: p, Err: syscall.ELOOP}
		}
		return "", &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
	}
	tests := []struct {
		path, want string
		wantErr    bool
	}{
		{path: "/var/run/docker.sock", want: "/run/docker.sock"},
		{path: "/var/run/moat/x", want: "/run/moat/x"},
		{path: "/var/lib/docker", want: "/var/lib/docker"},
		{path: "/nothing/here", want: "/nothing/here"},
		{path: "/a/f/below", want: "/a/f/below"},
		{path: "/", want: "/"},
		{path: "/loop/x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := ResolveExisting(tt.path, eval)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ResolveExisting(%q) = %q, %v; want %q (error: %v)", tt.path, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestNewPolicyResolvesSymlinks runs NewPolicy on a real directory tree in
// which the configured paths go through a symlink, as /var/run does on
// most hosts and a moved docker data root often does.
func TestNewPolicyResolvesSymlinks(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real, link := filepath.Join(base, "real"), filepath.Join(base, "link")
	for _, d := range []string{"docker/containers/c1", "data"} {
		if err := os.MkdirAll(filepath.Join(real, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(real, "docker.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(Policy{
		Restricted:   []string{link + "/docker", link + "/missing/deeper", link + "/docker.sock"},
		Exceptions:   []string{link + "/docker/containers/{id}", link + "/nodir/{id}"},
		Strict:       true,
		Allowed:      []string{link + "/data", link + "/later"},
		Sockets:      []string{link + "/docker.sock"},
		SocketImages: []string{"moat-test/dind:1"},
	})
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	dind := &Image{Names: []string{"moat-test/dind:1"}}
	tests := []struct {
		source string
		ctx    Context
		want   string
	}{
		{source: real + "/docker/x", want: "configured as a restricted host mount"},
		{source: real + "/missing/deeper/y", want: "configured as a restricted host mount"},
		{source: real + "/docker/containers/c1/hostname", ctx: Context{ContainerID: "c1"}},
		{source: real + "/docker/containers/c2", ctx: Context{ContainerID: "c1"}, want: "configured as a restricted host mount"},
		{source: real, want: "because it contains " + real + "/docker,"},
		{source: real + "/data/f"},
		{source: real + "/later/f"},
		{source: real + "/other", want: "not among the host directories allowed in strict mode"},
		{source: real + "/docker.sock", ctx: Context{Image: dind}},
		{source: real + "/docker.sock", want: "(the container's image could not be established)"},
		{source: link + "/docker/x", want: "configured as a restricted host mount"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.source, base), func(t *testing.T) {
			err := pol.Check(tt.source, tt.ctx)
			if tt.want == "" && err != nil {
				t.Errorf("Check(%q) = %v, want it allowed", tt.source, err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check(%q) = %v, want an error containing %q", tt.source, err, tt.want)
			}
		})
	}
}

// TestNewPolicyCopies checks that the prepared policy does not share
// slices with its input, so changing one cannot change the other.
func TestNewPolicyCopies(t *testing.T) {
	in := policyDefaults()
	pol := mustPolicy(t, in)
	in.Restricted[0] = "/changed"
	in.Exceptions[0] = "/changed"
	if pol.Restricted[0] != "/etc/docker" || pol.Exceptions[0] != "/var/lib/docker/containers/{id}" {
		t.Error("the prepared policy shares its slices with the input")
	}
	if err := pol.Check("/etc/docker", Context{}); err == nil {
		t.Error("/etc/docker allowed after the input changed")
	}
}
