package policy

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// policyOracle decides mounts the slow, obvious way, independently of
// policy.go: paths are lists of elements got by splitting on "/", and
// "under" is "starts with the same elements". The fuzz targets check
// Check against it.
type policyOracle struct {
	restricted, exceptions, sockets, allowed [][]string
	strict                                   bool
}

func newPolicyOracle(p Policy) policyOracle {
	split := func(l []string) [][]string {
		var out [][]string
		for _, s := range l {
			out = append(out, oracleElems(s))
		}
		return out
	}
	return policyOracle{
		restricted: split(p.Restricted),
		exceptions: split(p.Exceptions),
		sockets:    split(p.Sockets),
		allowed:    split(p.Allowed),
		strict:     p.Strict,
	}
}

func oracleElems(p string) []string {
	var out []string
	for _, e := range strings.Split(p, "/") {
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

// oracleStartsWith reports whether path begins with the elements of head.
func oracleStartsWith(path, head []string) bool {
	if len(head) > len(path) {
		return false
	}
	for i := range head {
		if path[i] != head[i] {
			return false
		}
	}
	return true
}

// refuses says whether a container may mount the clean absolute source;
// socketOK says whether its image is on the socket allowlist.
func (o policyOracle) refuses(source string, c Context, socketOK bool) bool {
	s := oracleElems(source)
	excepted := false
	for _, pat := range o.exceptions {
		if len(s) < len(pat) {
			continue
		}
		match := true
		for i, pe := range pat {
			switch pe {
			case "*":
			case "{id}":
				match = match && c.ContainerID != "" && s[i] == c.ContainerID
			case "{sandbox}":
				match = match && c.SandboxID != "" && s[i] == c.SandboxID
			default:
				match = match && s[i] == pe
			}
		}
		excepted = excepted || match
	}
	for _, r := range o.restricted {
		if len(r) > len(s) && oracleStartsWith(r, s) {
			return true // source contains a restricted path
		}
	}
	for _, r := range o.restricted {
		if !excepted && oracleStartsWith(s, r) {
			isSocket := false
			for _, sock := range o.sockets {
				isSocket = isSocket || slices.Equal(sock, s)
			}
			return !(isSocket && socketOK)
		}
	}
	if o.strict && !excepted {
		for _, a := range o.allowed {
			if oracleStartsWith(s, a) {
				return false
			}
		}
		return true
	}
	return false
}

// checkAgainstOracle runs Check on source and fails t if its verdict
// differs from the oracle's.
func checkAgainstOracle(t *testing.T, pol *Policy, o policyOracle, source string, c Context, socketOK bool) {
	t.Helper()
	err := pol.Check(source, c)
	var re *RefusedError
	if !filepath.IsAbs(source) || filepath.Clean(source) != source {
		if err == nil || errors.As(err, &re) {
			t.Fatalf("Check(%q) = %v, want an error for a path that is not absolute and clean", source, err)
		}
		return
	}
	if o.refuses(source, c, socketOK) {
		if !errors.As(err, &re) {
			t.Fatalf("Check(%q, %+v) = %v, want a refusal", source, c, err)
		}
	} else if err != nil {
		t.Fatalf("Check(%q, %+v) = %v, want it allowed", source, c, err)
	}
}

// policyFuzzPolicies are the policies both fuzz targets check: the
// default-like one, and the same in strict mode.
func policyFuzzPolicies(t testing.TB) []*Policy {
	strict := policyDefaults()
	strict.Strict = true
	strict.Allowed = []string{"/srv/data", "/home"}
	return []*Policy{mustPolicy(t, policyDefaults()), mustPolicy(t, strict)}
}

func FuzzCheck(f *testing.F) {
	seeds := []struct {
		raw, e1, e2, id, sandbox string
		pick                     uint8
		dind                     bool
	}{
		{raw: "/"},
		{raw: "/etc/docker/../docker"},
		{raw: "/var/run/docker.sock", dind: true},
		{raw: "/run/docker.sock"},
		{raw: "//etc/docker"},
		{raw: "/etc/docker/"},
		{raw: "/etc/dockerfile"},
		{raw: "etc/docker"},
		{raw: ""},
		{raw: "/var/lib/docker/containers/c1/hostname", id: "c1"},
		{raw: "/var/lib/docker/containers/c2/hostname", id: "c1"},
		{raw: "/var/lib/docker/containers/c1", id: ""},
		{raw: "/var/lib/docker/volumes/v/_data/x"},
		{raw: "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/s/x", sandbox: "s"},
		{e1: "..", e2: "docker", pick: 1},
		{e1: "c1", e2: "hosts", id: "c1", pick: 20},
		{e1: "a/b", id: "a/b", pick: 20},
		{e1: ".", id: ".", pick: 20},
		{e1: "", e2: "", pick: 2, dind: true},
	}
	for _, s := range seeds {
		f.Add(s.raw, s.e1, s.e2, s.id, s.sandbox, s.pick, s.dind)
	}
	pols := policyFuzzPolicies(f)
	dind := &Image{ID: policyDindID, Names: []string{"moat-test/dind:1"}}
	busybox := &Image{ID: policyOtherID, Names: []string{"busybox"}}
	f.Fuzz(func(t *testing.T, raw, e1, e2, id, sandbox string, pick uint8, allowImage bool) {
		c := Context{ContainerID: id, SandboxID: sandbox, Image: busybox}
		if allowImage {
			c.Image = dind
		}
		if pick%3 == 0 {
			c.Image = nil
		}
		socketOK := c.Image == dind
		// Bases near the edges of the policy: restricted paths, their
		// parents and the exceptions, filled in with this container's IDs
		// or with e1.
		bases := []string{"/", "/etc", "/var/lib", "/run/containerd/io.containerd.grpc.v1.cri/sandboxes"}
		bases = append(bases, pols[0].Restricted...)
		for _, e := range pols[0].Exceptions {
			bases = append(bases, strings.NewReplacer("{id}", id, "{sandbox}", sandbox, "*", e1).Replace(e))
		}
		base := bases[int(pick)%len(bases)]
		sources := []string{
			raw,
			filepath.Clean("/" + raw),
			base + "/" + e1,
			filepath.Clean(base + "/" + e1),
			filepath.Clean(base + "/" + e1 + "/" + e2),
			filepath.Clean("/" + e1 + "/" + e2),
		}
		for _, pol := range pols {
			o := newPolicyOracle(*pol)
			for _, src := range sources {
				checkAgainstOracle(t, pol, o, src, c, socketOK)
			}
		}
	})
}

// policyIsBind reports whether runc would take m for a bind mount.
func policyIsBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

func FuzzCheckSpec(f *testing.F) {
	for _, s := range []string{
		`{"hostname":"c1","mounts":[{"destination":"/x","type":"bind","source":"/etc/docker/../docker","options":["rbind"]}]}`,
		`{"mounts":[{"destination":"/","source":"/","options":["rbind","ro"]}]}`,
		`{"mounts":[{"destination":"/s","type":"none","source":"/var/run/docker.sock","options":["bind"]}]}`,
		`{"mounts":[{"destination":"/s","type":"bind","source":"//etc/docker/"}]}`,
		`{"hostname":"c1","mounts":[{"destination":"/etc/hostname","type":"bind","source":"/var/lib/docker/containers/c1/hostname","options":["rbind","rprivate"]},
		  {"destination":"/etc/hosts","type":"bind","source":"/var/lib/docker/containers/c2/hosts","options":["rbind"]}]}`,
		`{"annotations":{"io.kubernetes.cri.sandbox-id":"sb"},"mounts":[{"destination":"/etc/hostname","type":"bind","source":"/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb/hostname"}]}`,
		`{"mounts":[{"destination":"/d","type":"bind","source":"/var/lib/docker/volumes/v/_data/"},{"destination":"/p","type":"proc","source":"proc"}]}`,
		`{"mounts":[{"destination":"/d","type":"bind","source":"relative/path"}]}`,
		`{"mounts":null}`,
	} {
		f.Add([]byte(s))
	}
	pols := policyFuzzPolicies(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var spec specs.Spec
		if err := json.Unmarshal(data, &spec); err != nil {
			return
		}
		c := Context{ContainerID: spec.Hostname, SandboxID: spec.Annotations["io.kubernetes.cri.sandbox-id"]}
		for _, m := range spec.Mounts {
			if !policyIsBind(m) || !filepath.IsAbs(m.Source) {
				continue
			}
			src := filepath.Clean(m.Source)
			for _, pol := range pols {
				checkAgainstOracle(t, pol, newPolicyOracle(*pol), src, c, false)
			}
		}
	})
}
