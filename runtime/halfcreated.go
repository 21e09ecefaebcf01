package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// cgroupRecord is moat's note, in the container's state dir, of the cgroup
// config it handed to libcontainer. libcontainer makes the cgroups when init
// starts but saves its state only once init is ready, so a create killed in
// between leaves cgroups that nothing else would find.
const cgroupRecord = "moat-cgroup.json"

func (r *Runtime) recordCgroup(id string, cg *cgroups.Cgroup) error {
	data, err := json.Marshal(cg)
	if err != nil {
		return err
	}
	// No fsync: after a reboot the cgroups are gone too.
	if err := os.WriteFile(filepath.Join(r.stateDir(id), cgroupRecord), data, 0o600); err != nil {
		return fmt.Errorf("record cgroup of %s: %w", id, err)
	}
	return nil
}

// removeRecordedCgroup kills whatever runs in the recorded cgroups of a
// half-created container and removes them. No record means no cgroup was
// made.
func (r *Runtime) removeRecordedCgroup(id string) error {
	data, err := os.ReadFile(filepath.Join(r.stateDir(id), cgroupRecord))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cg cgroups.Cgroup
	if err := json.Unmarshal(data, &cg); err != nil {
		return fmt.Errorf("cgroup record of %s: %w", id, err)
	}
	m, err := manager.New(&cg)
	if err != nil {
		return fmt.Errorf("cgroup of %s: %w", id, err)
	}
	// Not m.Exists(): a create killed while libcontainer was making the
	// cgroups may have made some controllers' directories only.
	for i := 0; i < 50; i++ {
		pids, err := m.GetAllPids()
		if err != nil || len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup of %s: %w", id, err)
	}
	return nil
}
