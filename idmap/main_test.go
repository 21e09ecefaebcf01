package idmap

import (
	"syscall"
	"testing"

	"github.com/moatrt/moat/internal/fstest"
)

func TestMain(m *testing.M) {
	fstest.Main(m, map[string]func([]string) error{
		// netns
		"in-netns": func(args []string) error { return inNetnsCheck(args[0]) },
		// target upper work lower...
		"mount-overlay": func(args []string) error {
			u := &Userns{UIDs: ctrUIDs, GIDs: ctrGIDs}
			defer u.Close()
			return MountOverlay(args[0], Overlay{Upper: args[1], Work: args[2], Lower: args[3:]}, u)
		},
	})
}

func sysMap(ms []Mapping) []syscall.SysProcIDMap {
	var out []syscall.SysProcIDMap
	for _, m := range ms {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	return out
}
