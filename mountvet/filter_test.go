package mountvet

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const sock = "/run/moat/helper.sock"

// actionOf returns what the rewritten profile does with name, and the
// errno it returns.
func actionOf(sc *specs.LinuxSeccomp, name string) (specs.LinuxSeccompAction, uint) {
	for _, r := range sc.Syscalls {
		if slices.Contains(r.Names, name) {
			e := uint(0)
			if r.ErrnoRet != nil {
				e = *r.ErrnoRet
			}
			return r.Action, e
		}
	}
	return sc.DefaultAction, 0
}

func TestApply(t *testing.T) {
	eperm := uint(unix.EPERM)
	dockerLike := func(withSysAdmin bool) *specs.LinuxSeccomp {
		sc := &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno, DefaultErrnoRet: &eperm,
			Architectures: []specs.Arch{specs.ArchX86_64},
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read", "write", "getpid"}, Action: specs.ActAllow},
			},
		}
		if withSysAdmin {
			sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{
				Names:  []string{"bpf", "mount", "umount2", "open_tree", "move_mount", "fsopen"},
				Action: specs.ActAllow,
			})
		}
		return sc
	}
	tests := []struct {
		name       string
		sc         *specs.LinuxSeccomp
		wantNotify bool
		// what stays as it was
		keep map[string]specs.LinuxSeccompAction
	}{
		{"no profile (privileged)", nil, true,
			map[string]specs.LinuxSeccompAction{"getpid": specs.ActAllow, "bpf": specs.ActAllow}},
		{"docker default with SYS_ADMIN", dockerLike(true), true,
			map[string]specs.LinuxSeccompAction{"getpid": specs.ActAllow, "bpf": specs.ActAllow, "kexec_load": specs.ActErrno}},
		{"docker default without SYS_ADMIN", dockerLike(false), false,
			map[string]specs.LinuxSeccompAction{"getpid": specs.ActAllow, "bpf": specs.ActErrno}},
		{"mount denied by a rule", &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"mount", "umount2", "umount"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
		}, false, map[string]specs.LinuxSeccompAction{"getpid": specs.ActAllow}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Seccomp: tc.sc}}
			Apply(spec, sock)
			sc := spec.Linux.Seccomp
			for _, name := range []string{"mount", "umount2"} {
				a, _ := actionOf(sc, name)
				if tc.wantNotify && a != specs.ActNotify {
					t.Errorf("%s: %s, want notify", name, a)
				}
				if !tc.wantNotify && a == specs.ActNotify {
					t.Errorf("%s: notify, but the profile denied it", name)
				}
			}
			if tc.wantNotify != (sc.ListenerPath == sock) {
				t.Errorf("listener path %q", sc.ListenerPath)
			}
			if tc.wantNotify != (sc.ListenerMetadata != "") {
				t.Errorf("listener metadata %q: want a nonce exactly when there is a listener", sc.ListenerMetadata)
			}
			for _, name := range newMountAPI {
				if a, e := actionOf(sc, name); a != specs.ActErrno || e != uint(unix.ENOSYS) {
					t.Errorf("%s: %s errno %d, want ENOSYS", name, a, e)
				}
			}
			for name, want := range tc.keep {
				if a, _ := actionOf(sc, name); a != want {
					t.Errorf("%s: %s, want %s as before", name, a, want)
				}
			}
			for _, r := range sc.Syscalls {
				if len(r.Names) == 0 {
					t.Errorf("empty rule left: %+v", r)
				}
				n := 0
				for _, r2 := range sc.Syscalls {
					for _, name := range r.Names {
						if slices.Contains(r2.Names, name) {
							n++
						}
					}
				}
				if n != len(r.Names) {
					t.Errorf("a call named by two rules in %+v", sc.Syscalls)
				}
			}
			if tc.sc == nil && !slices.Contains(sc.Architectures, specs.ArchX86) {
				t.Errorf("a new profile covers %v: 32-bit calls would be killed", sc.Architectures)
			}
		})
	}
}
