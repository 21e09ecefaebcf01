package mounts

import (
	"syscall"
	"testing"

	"github.com/moatrt/moat/idmap"
	"github.com/moatrt/moat/internal/fstest"
)

func TestMain(m *testing.M) {
	fstest.Main(m, map[string]func([]string) error{
		// netns, target
		"stage-sysfs": func(args []string) error { return StageSysfs(args[0], args[1]) },
	})
}

func sysMap(ms []idmap.Mapping) []syscall.SysProcIDMap {
	var out []syscall.SysProcIDMap
	for _, m := range ms {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	return out
}
