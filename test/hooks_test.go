//go:build integration

package test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// failingHooks makes the hooks of the named stages in dir's config.json
// fail, each saying "<stage> hook broke" on stderr.
func failingHooks(t *testing.T, dir string, stages ...string) {
	t.Helper()
	editSpec(t, dir, func(s *specs.Spec) {
		if s.Hooks == nil {
			s.Hooks = &specs.Hooks{}
		}
		lists := map[string]*[]specs.Hook{
			"prestart":        &s.Hooks.Prestart, //nolint:staticcheck // runc still runs them
			"createRuntime":   &s.Hooks.CreateRuntime,
			"createContainer": &s.Hooks.CreateContainer,
			"startContainer":  &s.Hooks.StartContainer,
			"poststart":       &s.Hooks.Poststart,
			"poststop":        &s.Hooks.Poststop,
		}
		for _, stage := range stages {
			list, ok := lists[stage]
			if !ok {
				t.Fatalf("no hook stage %q", stage)
			}
			*list = []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo " + stage + " hook broke >&2; exit 3"}}}
		}
	})
}

// checkGone fails the test if anything of container id under root is
// left: its state dir, range, mounts or cgroups (a cgroup with processes
// cannot go).
func checkGone(t *testing.T, root, id string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir of %s left (%v)", id, err)
	}
	for _, r := range allocations(t) {
		if r.root == root && r.id == id {
			t.Errorf("range %d still held by %s", r.uid, id)
		}
	}
	for _, m := range moatMounts(t) {
		if strings.Contains(m, "/"+id) {
			t.Errorf("mount left: %s", m)
		}
	}
	checkNoCgroups(t, id)
}

// A failing poststop hook fails delete, but only after the container and
// everything moat held for it are gone: libcontainer has removed its
// cgroups and state dir before it runs the hook, as runc does.
func TestPoststopHookFails(t *testing.T) {
	root := moatRoot(t)
	dir := bundle(t, "sleep", "600")
	failingHooks(t, dir, "poststop")
	moat := func(t *testing.T, args ...string) {
		t.Helper()
		must(t, moatBin, append([]string{"--root", root}, args...)...)
	}
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, id string)
		force bool
	}{
		{"stopped", func(t *testing.T, id string) {
			moat(t, "start", id)
			moat(t, "kill", id, "KILL")
			waitStopped(t, moatBin, root, id)
		}, false},
		{"running, forced", func(t *testing.T, id string) { moat(t, "start", id) }, true},
		{"created", func(*testing.T, string) {}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "hook-" + randomID()
			moat(t, "create", "--bundle", dir, id)
			c.setup(t, id)
			args := []string{"--root", root, "delete", id}
			if c.force {
				args = []string{"--root", root, "delete", "--force", id}
			}
			r := run("", moatBin, args...)
			if r.code == 0 || !strings.Contains(r.stderr, "poststop hook broke") {
				t.Errorf("delete does not report the hook's failure: %s", r)
			}
			checkGone(t, root, id)
		})
	}

	// run deletes the container after it exits; the hook's failure is
	// reported and the exit status stays the container's.
	t.Run("run", func(t *testing.T) {
		dir := bundle(t, "sh", "-c", "exit 7")
		failingHooks(t, dir, "poststop")
		id := "hook-" + randomID()
		r := run("", moatBin, "--root", root, "run", "--bundle", dir, id)
		if r.code != 7 || !strings.Contains(r.stderr, "poststop hook broke") {
			t.Errorf("run: want the container's status 7 and the hook's failure: %s", r)
		}
		checkGone(t, root, id)
	})
}

// A hook that fails during create fails it and leaves nothing behind, even
// when the poststop hook that the rollback runs fails too.
func TestCreateHookFails(t *testing.T) {
	root := moatRoot(t)
	for _, stages := range [][]string{
		{"prestart"}, {"createRuntime"}, {"createContainer"}, {"poststart"},
		{"createRuntime", "poststop"},
	} {
		for _, cmd := range []string{"create", "run"} {
			t.Run(strings.Join(stages, "+")+" "+cmd, func(t *testing.T) {
				dir := bundle(t, "true")
				failingHooks(t, dir, stages...)
				id := "hook-" + randomID()
				r := run("", moatBin, "--root", root, cmd, "--bundle", dir, id)
				if r.code == 0 || !strings.Contains(r.stderr, stages[0]+" hook broke") {
					t.Errorf("%s does not report the %s hook's failure: %s", cmd, stages[0], r)
				}
				checkGone(t, root, id)
			})
		}
	}
}
