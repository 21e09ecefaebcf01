package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "change the resource limits of a container",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "JSON file of linux resources, - for stdin"},
		&cli.StringFlag{Name: "memory", Usage: "memory limit in bytes"},
		&cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit in bytes (-1: unlimited)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit in bytes"},
		&cli.StringFlag{Name: "cpu-shares", Usage: "CPU shares (relative weight)"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS quota in microseconds"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period in microseconds"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPUs to run on"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "memory nodes to use"},
		&cli.StringFlag{Name: "pids-limit", Usage: "maximum number of processes"},
	},
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		res, err := updateResources(c)
		if err != nil {
			return err
		}
		return r.Update(c.Args().First(), res)
	}),
}

// updateResources reads --resources and the limit flags, as runc does.
func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	if path := c.String("resources"); path != "" {
		f := os.Stdin
		if path != "-" {
			var err error
			if f, err = os.Open(path); err != nil {
				return nil, fmt.Errorf("open resources: %w", err)
			}
			defer f.Close()
		}
		if err := json.NewDecoder(f).Decode(res); err != nil {
			return nil, fmt.Errorf("parse resources: %w", err)
		}
	}
	num := func(flag string) (*int64, error) {
		if !c.IsSet(flag) {
			return nil, nil
		}
		n, err := strconv.ParseInt(c.String(flag), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: not a number", flag, c.String(flag))
		}
		return &n, nil
	}
	// Flags override the file, field by field.
	for _, f := range []struct {
		flag string
		set  func(v int64)
	}{
		{"memory", func(v int64) { mem(res).Limit = &v }},
		{"memory-swap", func(v int64) { mem(res).Swap = &v }},
		{"memory-reservation", func(v int64) { mem(res).Reservation = &v }},
		{"cpu-shares", func(v int64) { u := uint64(v); cpu(res).Shares = &u }},
		{"cpu-quota", func(v int64) { cpu(res).Quota = &v }},
		{"cpu-period", func(v int64) { u := uint64(v); cpu(res).Period = &u }},
		{"pids-limit", func(v int64) { res.Pids = &specs.LinuxPids{Limit: &v} }},
	} {
		v, err := num(f.flag)
		if err != nil {
			return nil, err
		}
		if v != nil {
			f.set(*v)
		}
	}
	if s := c.String("cpuset-cpus"); s != "" {
		cpu(res).Cpus = s
	}
	if s := c.String("cpuset-mems"); s != "" {
		cpu(res).Mems = s
	}
	return res, nil
}

func mem(r *specs.LinuxResources) *specs.LinuxMemory {
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func cpu(r *specs.LinuxResources) *specs.LinuxCPU {
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}
