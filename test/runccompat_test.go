//go:build integration

package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const runcBin = "/usr/bin/runc"

// ociRuntime is moat or runc with a state root of its own.
type ociRuntime struct {
	name, bin, root string
	// made holds the container made for each state, by state.
	made map[string]string
}

// outcome is how a command ended, as containerd's shim sees it: the exit
// status and the message of the last error line of the JSON log, with the
// container's ID replaced by <id>.
type outcome struct {
	code int
	msg  string
}

func (o ociRuntime) run(t *testing.T, id string, args ...string) outcome {
	t.Helper()
	log := filepath.Join(t.TempDir(), "log.json")
	r := run("", o.bin, append([]string{"--root", o.root, "--log", log, "--log-format", "json"}, args...)...)
	if r.code < 0 {
		t.Fatalf("%s %s: %s", o.name, strings.Join(args, " "), r)
	}
	msg := ""
	data, _ := os.ReadFile(log)
	for _, l := range strings.Split(string(data), "\n") {
		var e struct{ Level, Msg string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Level == "error" {
			msg = e.Msg
		}
	}
	return outcome{r.code, strings.ReplaceAll(strings.TrimSpace(msg), id, "<id>")}
}

func (o ociRuntime) must(t *testing.T, args ...string) {
	t.Helper()
	must(t, o.bin, append([]string{"--root", o.root}, args...)...)
}

// container returns a container of o in the given state, made once per
// state. "half" is a create interrupted before libcontainer saved its state
// (a state dir without state.json), made again once delete has removed it. For runc an empty state dir is that: all runc does with it is
// remove it. For moat it is a real create whose state.json is then removed,
// so that its init, cgroups, mounts and range are there to be cleaned.
func (o ociRuntime) container(t *testing.T, state, bundle string) string {
	t.Helper()
	if id, ok := o.made[state]; ok {
		if _, err := os.Stat(filepath.Join(o.root, id)); state != "half" || err == nil {
			return id
		}
	}
	id := o.name + "-" + state + "-" + randomID()
	o.made[state] = id
	switch state {
	case "unknown":
	case "half":
		if o.bin == runcBin {
			if err := os.MkdirAll(filepath.Join(o.root, id), 0o711); err != nil {
				t.Fatal(err)
			}
			break
		}
		o.must(t, "create", "--bundle", bundle, id)
		if err := os.Remove(filepath.Join(o.root, id, "state.json")); err != nil {
			t.Fatal(err)
		}
	default:
		o.must(t, "create", "--bundle", bundle, id)
		if state == "created" {
			break
		}
		o.must(t, "start", id)
		switch state {
		case "paused":
			o.must(t, "pause", id)
		case "stopped":
			o.must(t, "kill", id, "KILL")
			waitStopped(t, o.bin, o.root, id)
		}
	}
	return id
}

// Commands on containers that do not exist or are in the wrong state end
// as runc's do: same exit status, same message. containerd's shim matches
// "does not exist" and "container not running" in them.
func TestRuncErrors(t *testing.T) {
	if _, err := os.Stat(runcBin); err != nil {
		t.Skipf("no runc to compare with: %v", err)
	}
	bundleDir := bundle(t, "sleep", "600")
	moat := ociRuntime{name: "moat", bin: moatBin, root: moatRoot(t), made: map[string]string{}}
	runc := ociRuntime{name: "runc", bin: runcBin, root: filepath.Join(t.TempDir(), "runc"), made: map[string]string{}}
	t.Cleanup(func() {
		es, _ := os.ReadDir(runc.root)
		for _, e := range es {
			run("", runcBin, "--root", runc.root, "delete", "--force", e.Name())
		}
	})
	before := takeSnapshot(t, moat.root)

	for _, c := range []struct {
		state string
		args  []string // ID stands for the container's ID
	}{
		{"unknown", []string{"state", "ID"}},
		{"unknown", []string{"start", "ID"}},
		{"unknown", []string{"kill", "ID", "KILL"}},
		{"unknown", []string{"kill", "--all", "ID", "KILL"}},
		{"unknown", []string{"pause", "ID"}},
		{"unknown", []string{"resume", "ID"}},
		{"unknown", []string{"ps", "--format", "json", "ID"}},
		{"unknown", []string{"exec", "ID", "true"}},
		{"unknown", []string{"update", "--pids-limit", "10", "ID"}},
		{"unknown", []string{"events", "--stats", "ID"}},
		{"unknown", []string{"delete", "ID"}},
		{"unknown", []string{"delete", "--force", "ID"}},
		{"half", []string{"state", "ID"}},
		{"half", []string{"kill", "ID", "KILL"}},
		{"half", []string{"delete", "ID"}},
		{"half", []string{"delete", "--force", "ID"}},
		{"created", []string{"resume", "ID"}},
		{"running", []string{"start", "ID"}},
		{"running", []string{"resume", "ID"}},
		{"running", []string{"delete", "ID"}},
		{"paused", []string{"start", "ID"}},
		{"paused", []string{"pause", "ID"}},
		{"paused", []string{"exec", "ID", "true"}},
		{"paused", []string{"delete", "ID"}},
		{"stopped", []string{"start", "ID"}},
		{"stopped", []string{"kill", "ID", "KILL"}},
		{"stopped", []string{"kill", "ID", "0"}},
		{"stopped", []string{"kill", "--all", "ID", "KILL"}},
		{"stopped", []string{"pause", "ID"}},
		{"stopped", []string{"resume", "ID"}},
		{"stopped", []string{"exec", "ID", "true"}},
		{"stopped", []string{"update", "--pids-limit", "10", "ID"}},
		{"stopped", []string{"events", "--stats", "ID"}},
	} {
		t.Run(c.state+" "+strings.Join(c.args, " "), func(t *testing.T) {
			var got [2]outcome
			for i, rt := range []ociRuntime{runc, moat} {
				id := rt.container(t, c.state, bundleDir)
				args := make([]string, len(c.args))
				for j, a := range c.args {
					args[j] = strings.ReplaceAll(a, "ID", id)
				}
				got[i] = rt.run(t, id, args...)
			}
			if got[0] != got[1] {
				t.Errorf("runc: exit %d %q\nmoat: exit %d %q", got[0].code, got[0].msg, got[1].code, got[1].msg)
			}
			if c.state == "half" && strings.HasPrefix(c.args[0], "delete") {
				checkGone(t, moat.root, moat.made["half"])
			}
		})
	}

	for _, id := range moat.made {
		run("", moatBin, "--root", moat.root, "delete", "--force", id)
	}
	checkUnchanged(t, moat.root, before)
}
