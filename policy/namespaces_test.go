package policy

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A fake host: its namespaces are inode 1 of each type, its user
// namespace inode 100; container A's user namespace is 200, B's 300.
var (
	hostUser = NamespaceID{Dev: 4, Ino: 100}
	userA    = NamespaceID{Dev: 4, Ino: 200}
	userB    = NamespaceID{Dev: 4, Ino: 300}
)

func hostNamespace(t specs.LinuxNamespaceType) (NamespaceID, error) {
	if t == specs.UserNamespace {
		return hostUser, nil
	}
	return NamespaceID{Dev: 4, Ino: uint64(1 + len(t))}, nil
}

var fakeNamespaces = map[string]NamespaceFacts{
	"/host/net":      {Kind: specs.NetworkNamespace, ID: NamespaceID{Dev: 4, Ino: 1 + uint64(len(specs.NetworkNamespace))}, Owner: hostUser, Pinned: true},
	"/a/net":         {Kind: specs.NetworkNamespace, ID: NamespaceID{Dev: 4, Ino: 201}, Owner: userA},
	"/a/ipc":         {Kind: specs.IPCNamespace, ID: NamespaceID{Dev: 4, Ino: 202}, Owner: userA},
	"/a/user":        {Kind: specs.UserNamespace, ID: userA},
	"/b/ipc":         {Kind: specs.IPCNamespace, ID: NamespaceID{Dev: 4, Ino: 302}, Owner: userB},
	"/pod/net":       {Kind: specs.NetworkNamespace, ID: NamespaceID{Dev: 4, Ino: 401}, Owner: hostUser, Pinned: true},
	"/pod/ipc":       {Kind: specs.IPCNamespace, ID: NamespaceID{Dev: 4, Ino: 402}, Owner: hostUser, Pinned: true},
	"/proc/9/ns/net": {Kind: specs.NetworkNamespace, ID: NamespaceID{Dev: 4, Ino: 501}, Owner: hostUser},
}

func fakeInspect(path string) (NamespaceFacts, error) {
	if f, ok := fakeNamespaces[path]; ok {
		return f, nil
	}
	return NamespaceFacts{}, os.ErrNotExist
}

func TestCheckNamespaces(t *testing.T) {
	// private is a spec's namespaces: the isolated ones private, with
	// the given paths.
	private := func(paths map[specs.LinuxNamespaceType]string, omit ...specs.LinuxNamespaceType) []specs.LinuxNamespace {
		var nss []specs.LinuxNamespace
		for _, iso := range isolatedNamespaces {
			if !slices.Contains(omit, iso.typ) {
				nss = append(nss, specs.LinuxNamespace{Type: iso.typ, Path: paths[iso.typ]})
			}
		}
		for typ, p := range paths {
			if !slices.Contains([]specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace}, typ) {
				nss = append(nss, specs.LinuxNamespace{Type: typ, Path: p})
			}
		}
		return nss
	}
	type paths = map[specs.LinuxNamespaceType]string
	tests := []struct {
		name   string
		nss    []specs.LinuxNamespace
		want   Namespaces
		shared []string
		err    string
	}{
		{name: "all private", nss: private(nil)},
		{name: "pid omitted", nss: private(nil, specs.PIDNamespace), shared: []string{"pid"}},
		{name: "all omitted", nss: private(nil, specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace),
			shared: []string{"pid", "network", "ipc", "uts", "mount"}},
		{name: "host net by path", nss: private(paths{specs.NetworkNamespace: "/host/net"}), shared: []string{"network"}},
		{name: "unknown type", nss: append(private(nil), specs.LinuxNamespace{Type: "bogus"}), err: `unknown namespace type "bogus"`},
		{name: "missing path", nss: private(paths{specs.NetworkNamespace: "/nope"}), err: "network namespace path: file does not exist"},
		{name: "user path that is a network namespace", nss: private(paths{specs.UserNamespace: "/a/net"}),
			err: "user namespace path /a/net is a network namespace"},
		{name: "the type is checked before the host", nss: private(paths{specs.IPCNamespace: "/a/net"}, specs.PIDNamespace),
			err: "ipc namespace path /a/net is a network namespace"},
		{name: "caller's user namespace path is not a join", nss: private(paths{specs.UserNamespace: "/a/user"})},
		{name: "container's netns", nss: private(paths{specs.NetworkNamespace: "/a/net"}), want: Namespaces{Join: "/a/net", JoinOwner: userA}},
		{name: "net and ipc of one container", nss: private(paths{specs.NetworkNamespace: "/a/net", specs.IPCNamespace: "/a/ipc"}),
			want: Namespaces{Join: "/a/net", JoinOwner: userA}},
		{name: "two containers", nss: private(paths{specs.NetworkNamespace: "/a/net", specs.IPCNamespace: "/b/ipc"}),
			err: "namespaces /a/net and /b/ipc belong to two different containers"},
		{name: "pod netns", nss: private(paths{specs.NetworkNamespace: "/pod/net"}), want: Namespaces{HostNet: "/pod/net"}},
		{name: "pod netns, sandbox's ipc", nss: private(paths{specs.NetworkNamespace: "/pod/net", specs.IPCNamespace: "/a/ipc"}),
			want: Namespaces{Join: "/a/ipc", JoinOwner: userA, HostNet: "/pod/net"}},
		{name: "a process's netns the host owns", nss: private(paths{specs.NetworkNamespace: "/proc/9/ns/net"}),
			err: "can't join the network namespace /proc/9/ns/net: it belongs to a process that is not in a moat container"},
		{name: "a pinned ipc namespace the host owns", nss: private(paths{specs.IPCNamespace: "/pod/ipc"}),
			err: "can't join the ipc namespace /pod/ipc: the host's user namespace owns it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Namespaces: tt.nss}}
			got, err := CheckNamespaces(spec, NamespaceRules{Inspect: fakeInspect, Host: hostNamespace})
			var hn *HostNamespaceError
			switch {
			case tt.shared != nil:
				if !errors.As(err, &hn) || !reflect.DeepEqual(hn.Shared, tt.shared) {
					t.Fatalf("error %v, want one sharing %v", err, tt.shared)
				}
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case got != tt.want:
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Each path is inspected once, however many checks look at it.
func TestCheckNamespacesInspectsOnce(t *testing.T) {
	calls := map[string]int{}
	inspect := func(path string) (NamespaceFacts, error) {
		calls[path]++
		return fakeInspect(path)
	}
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/pod/net"},
		{Type: specs.IPCNamespace, Path: "/a/ipc"}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
	}}}
	if _, err := CheckNamespaces(spec, NamespaceRules{Inspect: inspect, Host: hostNamespace}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"/pod/net": 1, "/a/ipc": 1}; !reflect.DeepEqual(calls, want) {
		t.Fatalf("inspected %v, want %v", calls, want)
	}
}

func TestHostNamespaceMessage(t *testing.T) {
	err := &HostNamespaceError{Shared: []string{"pid", "network"}}
	want := "moat containers can't share namespaces [pid network] with the host (because they use the linux user-namespace for isolation)"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err.Error(), want)
	}
}

func TestCheckJoinedMappings(t *testing.T) {
	one := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 165536, Size: 65536}}
	tests := []struct {
		name       string
		uids, gids []specs.LinuxIDMapping
		want       uint32 // 0: refused
	}{
		{"moat's", one, one, 165536},
		{"two ranges", append(one, specs.LinuxIDMapping{ContainerID: 65536, HostID: 300000, Size: 1}), one, 0},
		{"not from 0", []specs.LinuxIDMapping{{ContainerID: 1, HostID: 165536, Size: 1}}, one, 0},
		{"no gids", one, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckJoinedMappings("/proc/1/ns/net", tt.uids, tt.gids)
			if tt.want == 0 {
				if err == nil || !strings.Contains(err.Error(), JoinOnlyMoat) {
					t.Fatalf("got %d, %v; want a refusal", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}
