//go:build integration

package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatrt/moat/internal/fstest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var (
	moatBin   = envOr("MOAT", "/usr/local/bin/moat")
	dockerBin = envOr("DOCKER", "/usr/bin/docker")
	image     = envOr("MOAT_TEST_IMAGE", "moat-test/busybox:2")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// result is what a command printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout: %s\nstderr: %s", r.code, r.err, r.stdout, r.stderr)
}

// run runs a command with a deadline; it never fails the test itself.
func run(stdin string, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// Files, not pipes: a detached container inherits them, and a pipe would
	// keep Run waiting until the container exits.
	outf, errf := tempOutput(), tempOutput()
	defer outf.Close()
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = outf, errf
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	out, errb := readBack(outf), readBack(errf)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code, err: err}
}

func tempOutput() *os.File {
	f, err := os.CreateTemp("", "moat-it-out")
	if err != nil {
		panic(err)
	}
	os.Remove(f.Name())
	return f
}

func readBack(f *os.File) *bytes.Buffer {
	var b bytes.Buffer
	if _, err := f.Seek(0, 0); err == nil {
		_, _ = b.ReadFrom(f)
	}
	return &b
}

// must runs a command that has to succeed and returns its trimmed stdout.
func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	r := run("", name, args...)
	if r.err != nil {
		t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

func docker(args ...string) result { return run("", dockerBin, args...) }

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	return must(t, dockerBin, args...)
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// name returns a container name unique to this test, removed when it ends.
func name(t *testing.T) string {
	t.Helper()
	n := "moat-it-" + randomID()
	t.Cleanup(func() { docker("rm", "-f", "-v", n) })
	return n
}

// dockerRun starts a detached moat container running args and returns its
// name.
func dockerRun(t *testing.T, opts []string, args ...string) string {
	t.Helper()
	n := name(t)
	all := append([]string{"run", "-d", "--runtime", "moat", "--name", n}, opts...)
	all = append(all, image)
	all = append(all, args...)
	mustDocker(t, all...)
	return n
}

// uidMap reads /proc/self/uid_map of a command run by docker exec, folded
// to single spaces.
func uidMap(t *testing.T, container, file string) string {
	t.Helper()
	return strings.Join(strings.Fields(mustDocker(t, "exec", container, "cat", file)), " ")
}

// idRange is one line of `moat ids`.
type idRange struct {
	root, id string
	uid, gid uint32
	shared   bool
}

// allocations lists the ID ranges moat holds host-wide.
func allocations(t *testing.T) []idRange {
	t.Helper()
	out := must(t, moatBin, "ids", "--format", "table")
	var rs []idRange
	for _, l := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		var r idRange
		r.root, r.id = f[0], f[1]
		fmt.Sscan(f[2], &r.uid)
		fmt.Sscan(f[3], &r.gid)
		r.shared = len(f) > 5 && f[5] == "true"
		rs = append(rs, r)
	}
	return rs
}

// moatMountDir is where moat mounts the containers' rootfs and volumes.
const moatMountDir = "/run/moat-mounts"

// moatMounts lists mount points moat made (its rootfs mounts and anything
// under them).
func moatMounts(t *testing.T) []string {
	t.Helper()
	return fstest.MountsUnder(t, moatMountDir)
}

// snapshot is what moat holds on the host; a test that creates nothing
// must leave it unchanged.
type snapshot struct {
	ranges, mounts, states string
}

func takeSnapshot(t *testing.T, root string) snapshot {
	t.Helper()
	var ids []string
	for _, r := range allocations(t) {
		ids = append(ids, fmt.Sprintf("%s/%s=%d", r.root, r.id, r.uid))
	}
	var states []string
	if es, err := os.ReadDir(root); err == nil {
		for _, e := range es {
			states = append(states, e.Name())
		}
	}
	return snapshot{
		ranges: strings.Join(ids, ","),
		mounts: strings.Join(moatMounts(t), ","),
		states: strings.Join(states, ","),
	}
}

// bundle makes a busybox bundle whose process runs args, with no terminal
// and a writable rootfs.
func bundle(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, "../scripts/mkrootfs.sh", filepath.Join(dir, "rootfs"))
	r := run("", moatBin, "spec", "--bundle", dir)
	if r.err != nil {
		t.Fatalf("moat spec: %s", r)
	}
	editSpec(t, dir, func(s *specs.Spec) {
		s.Process.Terminal = false
		s.Root.Readonly = false
		s.Process.Args = args
	})
	return dir
}

// editSpec loads the bundle's config.json, lets edit change it and writes
// it back.
func editSpec(t *testing.T, dir string, edit func(s *specs.Spec)) {
	t.Helper()
	cfg := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("%s: %v", cfg, err)
	}
	edit(&s)
	if data, err = json.MarshalIndent(&s, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// moatRoot is a state root of the test's own, so tests never see the
// daemons' containers; it is cleaned of containers when the test ends.
func moatRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join("/run/moat-it", randomID())
	t.Cleanup(func() {
		if es, err := os.ReadDir(root); err == nil {
			for _, e := range es {
				run("", moatBin, "--root", root, "delete", "--force", e.Name())
			}
		}
		os.RemoveAll(root)
		// moat keeps one mount dir per state root, named by a hash of the
		// root, and leaves it when its last container goes; this root's
		// is gone with the test. Only an empty one is removed.
		sum := sha256.Sum256([]byte(root))
		os.Remove(filepath.Join(moatMountDir, hex.EncodeToString(sum[:6])))
	})
	return root
}

// runRefused runs the bundle under root and checks that moat refuses it
// with a message containing want, leaving nothing behind.
func runRefused(t *testing.T, root, dir, want string) {
	t.Helper()
	before := takeSnapshot(t, root)
	r := run("", moatBin, "--root", root, "run", "--bundle", dir, "it-"+randomID())
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("want %q, got %s", want, r)
	}
	checkUnchanged(t, root, before)
}

// dockerRoot is dockerd's state root for its runtimes, moat's included.
const dockerRoot = "/run/docker/runtime-runc/moby"

// checkUnchanged fails the test if moat holds other ID ranges or mounts
// than before; under a state root of the test's own (moatRoot), other
// state dirs too. A daemon's root also holds containers of other runtimes.
func checkUnchanged(t *testing.T, root string, before snapshot) {
	t.Helper()
	after := takeSnapshot(t, root)
	if !strings.HasPrefix(root, "/run/moat-it/") {
		after.states, before.states = "", ""
	}
	if after != before {
		t.Fatalf("moat left state behind:\nbefore %+v\nafter  %+v", before, after)
	}
}
