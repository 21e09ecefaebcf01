package runtime

import (
	"errors"
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update changes the cgroup limits of a running container. Only the fields
// set in res change; the rest keep their values.
func (r *Runtime) Update(id string, res *specs.LinuxResources) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	cfg := c.Config()
	applyResources(cfg.Cgroups.Resources, res)
	if err := c.Set(cfg); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return ErrNotRunning // runc's words, unwrapped
		}
		return fmt.Errorf("update %s: %w", id, err)
	}
	return nil
}

func applyResources(dst *cgroups.Resources, res *specs.LinuxResources) {
	if m := res.Memory; m != nil {
		setInt(&dst.Memory, m.Limit)
		setInt(&dst.MemoryReservation, m.Reservation)
		setInt(&dst.MemorySwap, m.Swap)
		if m.Swappiness != nil {
			dst.MemorySwappiness = m.Swappiness
		}
		if m.CheckBeforeUpdate != nil {
			dst.MemoryCheckBeforeUpdate = *m.CheckBeforeUpdate
		}
	}
	if cpu := res.CPU; cpu != nil {
		setUint(&dst.CpuShares, cpu.Shares)
		setInt(&dst.CpuQuota, cpu.Quota)
		setUint(&dst.CpuPeriod, cpu.Period)
		setInt(&dst.CpuRtRuntime, cpu.RealtimeRuntime)
		setUint(&dst.CpuRtPeriod, cpu.RealtimePeriod)
		if cpu.Burst != nil {
			dst.CpuBurst = cpu.Burst
		}
		if cpu.Idle != nil {
			dst.CPUIdle = cpu.Idle
		}
		if cpu.Cpus != "" {
			dst.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			dst.CpusetMems = cpu.Mems
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		dst.PidsLimit = p.Limit
	}
	if b := res.BlockIO; b != nil && b.Weight != nil {
		dst.BlkioWeight = *b.Weight
	}
	if res.Unified != nil {
		if dst.Unified == nil {
			dst.Unified = map[string]string{}
		}
		for k, v := range res.Unified {
			dst.Unified[k] = v
		}
	}
}

func setInt(dst *int64, v *int64) {
	if v != nil {
		*dst = *v
	}
}

func setUint(dst *uint64, v *uint64) {
	if v != nil {
		*dst = *v
	}
}
