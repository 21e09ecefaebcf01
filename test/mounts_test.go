//go:build integration

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// restricted is the start of the message a refused bind mount gives.
const restricted = "OCI runtime create failed: error in the container spec: can't mount "

// configuredRuntime registers moat with dockerd under a name of its own,
// reading config (the text of a config file) instead of
// /etc/moat/config.toml, and returns the name. The registration and the
// file go when the test ends.
func configuredRuntime(t *testing.T, config string) (string, string) {
	t.Helper()
	dir := filepath.Join("/run/moat-it", "config-"+randomID())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := "moat-it-" + randomID()
	dockerRuntime(t, "add", rt, moatBin, "--config", path)
	t.Cleanup(func() {
		dockerRuntime(t, "remove", rt)
		os.RemoveAll(dir)
	})
	return rt, path
}

// dockerRuntime registers or unregisters a runtime with dockerd through
// scripts/docker-runtime.sh, which returns once dockerd has reloaded.
func dockerRuntime(t *testing.T, args ...string) {
	t.Helper()
	must(t, "../scripts/docker-runtime.sh", args...)
}

// hostDir makes a directory of the kind users share, outside the temp
// dirs of the test binary, removed when the test ends.
func hostDir(t *testing.T, under string) string {
	t.Helper()
	if err := os.MkdirAll(under, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(under, "moat-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// With the default policy, engine configuration, sockets and host kernel
// interfaces are refused (also through a symlink, or as a parent
// directory); ordinary directories mount as before; nothing is left behind.
func TestRestrictedMounts(t *testing.T) {
	home := hostDir(t, "/root")
	if err := os.WriteFile(filepath.Join(home, "f"), []byte("from home\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(hostDir(t, "/tmp"), "daemon-link")
	if err := os.Symlink("/etc/docker/daemon.json", link); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(hostDir(t, "/tmp"), "etc-link")
	if err := os.Symlink("/etc/docker/../docker", dirLink); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, dockerRoot)
	for _, c := range []struct {
		name, volume, want string
	}{
		{"daemon.json", "/etc/docker/daemon.json:/x", "/etc/docker/daemon.json because it's configured as a restricted host mount"},
		{"symlink to daemon.json", link + ":/x", "/etc/docker/daemon.json because it's configured as a restricted host mount"},
		{"symlink with ..", dirLink + ":/x", "/etc/docker because it's configured as a restricted host mount"},
		{"docker socket", "/var/run/docker.sock:/var/run/docker.sock", "/run/docker.sock because it's configured as a restricted host mount (image " + image + " is not in docker.socket_images)"},
		{"containerd socket", "/run/containerd/containerd.sock:/c.sock", "/run/containerd/containerd.sock because it's configured as a restricted host mount"},
		{"docker data root", "/var/lib/docker:/d", "/var/lib/docker because it's configured as a restricted host mount"},
		{"host root", "/:/host", "/ because it contains"},
		{"parent of /etc/docker", "/etc:/e", "/etc because it contains /etc/docker, which is configured as a restricted host mount"},
		{"host proc", "/proc:/hostproc", "/proc because it's configured as a restricted host mount"},
		{"host sys", "/sys/kernel:/k", "/sys/kernel because it's configured as a restricted host mount"},
		{"moat state", "/var/lib/moat:/m", "/var/lib/moat because it's configured as a restricted host mount"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := docker("run", "--rm", "--runtime", "moat", "--name", name(t), "-v", c.volume, image, "true")
			if r.code == 0 || !strings.Contains(r.stderr, restricted+c.want) {
				t.Fatalf("want %q, got %s", restricted+c.want, r)
			}
		})
	}
	checkUnchanged(t, dockerRoot, before)

	t.Run("home directory", func(t *testing.T) {
		out := mustDocker(t, "run", "--rm", "--runtime", "moat", "-v", home+":/h", image, "sh", "-c", "cat /h/f && touch /h/new && stat -c %u:%g /h/f")
		if out != "from home\n0:0" {
			t.Fatalf("home dir in the container: %q", out)
		}
		if got := statOwner(t, filepath.Join(home, "new")); got != "0:0" {
			t.Fatalf("file written by the container root owned by %s on the host", got)
		}
	})
}

// A broken config file fails create with its path, line and key.
func TestBrokenConfig(t *testing.T) {
	rt, path := configuredRuntime(t, "[mounts]\nstrict = false\nstirct = true\n")
	r := docker("run", "--rm", "--runtime", rt, "--name", name(t), image, "true")
	want := fmt.Sprintf("OCI runtime create failed: config %s: line 3: key mounts.stirct: unknown key", path)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("want %q, got %s", want, r)
	}
}

// In strict mode only the listed host directories, named volumes and the
// engine's own files for the container mount.
func TestStrictMounts(t *testing.T) {
	shared := hostDir(t, "/srv")
	other := hostDir(t, "/srv")
	rt, _ := configuredRuntime(t, fmt.Sprintf("[mounts]\nstrict = true\nallowed = [%q]\n", shared))
	if err := os.Mkdir(filepath.Join(shared, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	vol := "moat-it-" + randomID()
	mustDocker(t, "volume", "create", vol)
	t.Cleanup(func() { docker("volume", "rm", "-f", vol) })

	out := mustDocker(t, "run", "--rm", "--runtime", rt, "-v", shared+"/sub:/s", "-v", vol+":/v", image,
		"sh", "-c", "touch /s/ok /v/ok && cat /etc/hostname >/dev/null && echo mounted")
	if out != "mounted" {
		t.Fatalf("allowed mounts in strict mode: %q", out)
	}
	r := docker("run", "--rm", "--runtime", rt, "--name", name(t), "-v", other+":/o", image, "true")
	want := restricted + other + " because it's not among the host directories allowed in strict mode (mounts.allowed)"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("want %q, got %s", want, r)
	}
	// Restricted paths stay refused even when listed.
	rt2, _ := configuredRuntime(t, "[mounts]\nstrict = true\nallowed = [\"/etc\"]\n")
	r = docker("run", "--rm", "--runtime", rt2, "--name", name(t), "-v", "/etc/docker:/d", image, "true")
	if r.code == 0 || !strings.Contains(r.stderr, restricted+"/etc/docker because it's configured as a restricted host mount") {
		t.Fatalf("restricted path in the strict list: %s", r)
	}
}

// The docker socket mounts only for images on docker.socket_images, by name
// or by ID; other images, even from the same config, are refused.
func TestSocketAllowlist(t *testing.T) {
	allowed := "moat-test/sockets:1"
	if docker("image", "inspect", allowed).code != 0 {
		// The same files as the test image under another image ID.
		rootfs := t.TempDir()
		must(t, "../scripts/mkrootfs.sh", rootfs)
		must(t, "sh", "-c", fmt.Sprintf(`tar -C %s -c . | %s import -c 'LABEL moat-test=sockets' - %s`, rootfs, dockerBin, allowed))
	}
	id := strings.TrimSpace(mustDocker(t, "image", "inspect", "-f", "{{.Id}}", allowed))
	sock := "/var/run/docker.sock:/var/run/docker.sock"
	for _, entry := range []string{allowed, id, strings.TrimPrefix(id, "sha256:")[:12]} {
		t.Run(entry, func(t *testing.T) {
			rt, _ := configuredRuntime(t, fmt.Sprintf("[docker]\nsocket_images = [%q]\n", entry))
			if out := mustDocker(t, "run", "--rm", "--runtime", rt, "-v", sock, allowed, "sh", "-c", "test -S /var/run/docker.sock && echo socket"); out != "socket" {
				t.Fatalf("allowlisted image: %q", out)
			}
			r := docker("run", "--rm", "--runtime", rt, "--name", name(t), "-v", sock, image, "true")
			want := restricted + "/run/docker.sock because it's configured as a restricted host mount (image " + image + " is not in docker.socket_images)"
			if r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Fatalf("want %q, got %s", want, r)
			}
		})
	}
}

// A named volume is judged by what docker's local driver mounts on it, not
// by where it is mounted: a bind of "/" or /run, or an overlay of /etc, in
// the disguise of a volume, is refused like the bind itself; an ordinary
// directory bound as a volume still mounts.
func TestVolumesInDisguise(t *testing.T) {
	vol := func(t *testing.T, opts ...string) string {
		t.Helper()
		v := "moat-it-" + randomID()
		args := []string{"volume", "create", "-d", "local"}
		for _, o := range opts {
			args = append(args, "-o", o)
		}
		mustDocker(t, append(args, v)...)
		t.Cleanup(func() { docker("volume", "rm", "-f", v) })
		return v
	}
	upper := hostDir(t, "/srv")
	for _, d := range []string{"u", "w"} {
		if err := os.Mkdir(filepath.Join(upper, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := takeSnapshot(t, dockerRoot)
	for _, c := range []struct {
		name string
		args func(t *testing.T) []string
		want string
	}{
		{"bind of / as a volume", func(t *testing.T) []string {
			return []string{"-v", vol(t, "type=none", "o=bind", "device=/") + ":/host"}
		}, "/ because it contains"},
		{"bind of /run through --mount volume options", func(t *testing.T) []string {
			return []string{"--mount", "type=volume,dst=/r,volume-driver=local,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/run"}
		}, "/run because it contains /run/docker"},
		{"overlay with a restricted lower layer", func(t *testing.T) []string {
			o := fmt.Sprintf("o=lowerdir=/etc,upperdir=%s/u,workdir=%s/w", upper, upper)
			return []string{"-v", vol(t, "type=overlay", "device=overlay", o) + ":/o"}
		}, "/etc because it contains /etc/docker"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", "--rm", "--runtime", "moat", "--name", name(t)}, c.args(t)...)
			r := docker(append(args, image, "true")...)
			if r.code == 0 || !strings.Contains(r.stderr, restricted+c.want) || !strings.Contains(r.stderr, "(reached through /var/lib/docker/volumes/") {
				t.Fatalf("want %q, reached through the volume, got %s", restricted+c.want, r)
			}
		})
	}
	checkUnchanged(t, dockerRoot, before)

	t.Run("ordinary directory bound as a volume", func(t *testing.T) {
		dir := hostDir(t, "/srv")
		v := vol(t, "type=none", "o=bind", "device="+dir)
		out := mustDocker(t, "run", "--rm", "--runtime", "moat", "-v", v+":/v", image, "sh", "-c", "touch /v/new && stat -c %u:%g /v/new")
		if out != "0:0" {
			t.Fatalf("in the container: %q", out)
		}
		if got := statOwner(t, filepath.Join(dir, "new")); got != "0:0" {
			t.Fatalf("file written by the container root owned by %s on the host", got)
		}
	})
}

// An overlay mount in a bundle's spec is judged by its layers.
func TestBundleOverlayLayers(t *testing.T) {
	root := moatRoot(t)
	layers := t.TempDir()
	for _, d := range []string{"l", "u", "w"} {
		if err := os.Mkdir(filepath.Join(layers, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, lower, want string }{
		{"restricted lower layer", "/etc", restrictedBundle + "/etc because it contains /etc/docker"},
		{"restricted layer through a symlink", "/var/run", restrictedBundle + "/run because it contains /run/docker"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := bundle(t, "true")
			editSpec(t, dir, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{
					Destination: "/o", Type: "overlay", Source: "overlay",
					Options: []string{"lowerdir=" + c.lower, "upperdir=" + layers + "/u", "workdir=" + layers + "/w"},
				})
			})
			runRefused(t, root, dir, c.want)
		})
	}
}

// restrictedBundle is the start of the message a refused mount gives moat
// run on a bundle.
const restrictedBundle = "error in the container spec: mount /o: can't mount "
