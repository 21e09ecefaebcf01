// Package mountvet owns mount vetting: the seccomp rules moat adds to every
// container, so that mount and umount reach moat's helper instead of the
// kernel, and the decisions and on-behalf operations the helper makes for
// those trapped calls.
package mountvet

import (
	"crypto/rand"
	"encoding/hex"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Trapped are the calls the helper vets and carries out for the container.
var trapped = []string{"mount", "umount", "umount2"}

// newMountAPI are the calls that act on mounts through file descriptors.
// They fail with ENOSYS, as on a kernel without them, so that tools fall
// back to mount(2), which is vetted.
var newMountAPI = []string{
	"fsopen", "fsconfig", "fsmount", "fspick",
	"open_tree", "open_tree_attr", "move_mount", "mount_setattr",
}

// Architectures a filter moat writes itself covers: the native one and the
// compat ones a 64-bit x86 kernel runs, as docker's default profile does.
var nativeArches = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}

// Apply rewrites spec's seccomp profile so that the container's mount and
// umount calls are sent to the helper at listenerPath, and the new mount
// API fails with ENOSYS. A container without a profile (docker's
// --privileged, seccomp=unconfined) gets one that allows everything else.
// A profile that already denies mount (no CAP_SYS_ADMIN in docker's
// default) keeps denying it: the helper only ever narrows what the kernel
// would allow. The listener goes to the helper with a nonce of this
// create as its metadata, so that the create can tell it from one of an
// earlier container of the same name.
func Apply(spec *specs.Spec, listenerPath string) {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	sc := spec.Linux.Seccomp
	if sc == nil {
		sc = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: nativeArches,
		}
		spec.Linux.Seccomp = sc
	}
	allowed := map[string]bool{}
	for _, name := range trapped {
		allowed[name] = permits(sc, name)
	}
	sc.Syscalls = without(sc.Syscalls, append(slices.Clone(trapped), newMountAPI...))
	var notify []string
	for _, name := range trapped {
		if allowed[name] {
			notify = append(notify, name)
		}
	}
	if len(notify) > 0 {
		sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: notify, Action: specs.ActNotify})
		sc.ListenerPath = listenerPath
		sc.ListenerMetadata = Nonce()
	}
	enosys := uint(unix.ENOSYS)
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{
		Names: slices.Clone(newMountAPI), Action: specs.ActErrno, ErrnoRet: &enosys,
	})
}

// Nonce is a random name for a create or a listener.
func Nonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b[:])
}

// permits reports whether the profile lets name through to the kernel
// with any arguments: by a rule that allows it, or by an allowing default
// when no rule names it. A rule with argument conditions counts as allowing
// it: the helper vets every call the kernel would have seen.
func permits(sc *specs.LinuxSeccomp, name string) bool {
	named := false
	for _, r := range sc.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		named = true
		if allows(r.Action) {
			return true
		}
	}
	return !named && allows(sc.DefaultAction)
}

func allows(a specs.LinuxSeccompAction) bool {
	switch a {
	case specs.ActAllow, specs.ActLog, specs.ActTrace, specs.ActNotify:
		return true
	}
	return false
}

// without drops names from every rule, and rules left with none.
func without(rules []specs.LinuxSyscall, names []string) []specs.LinuxSyscall {
	out := make([]specs.LinuxSyscall, 0, len(rules))
	for _, r := range rules {
		r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(names, n) })
		if len(r.Names) > 0 {
			out = append(out, r)
		}
	}
	return out
}
