package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/runtime"
)

var createFlags = []cli.Flag{
	&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "bundle directory (holds config.json)"},
	&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the terminal master"},
	&cli.StringFlag{Name: "pid-file", Usage: "file to write the init process's PID to"},
	&cli.BoolFlag{Name: "no-pivot", Usage: "do not use pivot_root (for a ramdisk rootfs)"},
	&cli.BoolFlag{Name: "no-new-keyring", Usage: "do not create a new session keyring"},
	&cli.IntFlag{Name: "preserve-fds", Usage: "pass this many fds beyond stdio (3, 4, ...) to the process"},
	&cli.StringFlag{Name: "pidfd-socket", Hidden: true, Usage: "accepted for runc compatibility"},
}

func createOpts(c *cli.Context) runtime.CreateOpts {
	return runtime.CreateOpts{
		ID:           c.Args().First(),
		Bundle:       c.String("bundle"),
		NoPivot:      c.Bool("no-pivot"),
		NoNewKeyring: c.Bool("no-new-keyring"),
		IO: runtime.IOOpts{
			ConsoleSocket: c.String("console-socket"),
			PidFile:       absOrEmpty(c.String("pid-file")),
			PreserveFDs:   c.Int("preserve-fds"),
			Detach:        c.Bool("detach"),
		},
	}
}

// absOrEmpty makes the pid file absolute before create changes directory.
func absOrEmpty(p string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return wd + "/" + p
}

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container (its process waits for 'moat start')",
	ArgsUsage: "<container-id>",
	Flags:     createFlags,
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Create(createOpts(c))
	},
}

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and start a container",
	ArgsUsage: "<container-id>",
	Flags: append([]cli.Flag{
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.BoolFlag{Name: "keep", Hidden: true, Usage: "accepted for runc compatibility"},
		&cli.BoolFlag{Name: "no-subreaper", Hidden: true, Usage: "accepted for runc compatibility"},
	}, createFlags...),
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		status, err := r.Run(createOpts(c))
		if err != nil {
			return err
		}
		os.Exit(status)
		return nil
	},
}

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "start the process of a created container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Start(c.Args().First())
	},
}

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "run a new process inside a running container",
	ArgsUsage: "<container-id> [command [args...]]",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "process.json describing the process"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the process"},
		&cli.StringFlag{Name: "pid-file", Usage: "file to write the process's PID to"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the terminal master"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal"},
		&cli.StringFlag{Name: "cwd", Usage: "working directory in the container"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set an environment variable"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID[:GID] in the container"},
		&cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "pass this many fds beyond stdio to the process"},
		&cli.StringFlag{Name: "pidfd-socket", Hidden: true, Usage: "accepted for runc compatibility"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 1, -1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		p, err := execProcess(c, r)
		if err != nil {
			return exitError{255, fmt.Errorf("exec failed: %w", err)}
		}
		status, err := r.Exec(runtime.ExecOpts{
			ID:           c.Args().First(),
			Process:      p,
			IgnorePaused: c.Bool("ignore-paused"),
			IO: runtime.IOOpts{
				Detach:        c.Bool("detach"),
				ConsoleSocket: c.String("console-socket"),
				PidFile:       absOrEmpty(c.String("pid-file")),
				PreserveFDs:   c.Int("preserve-fds"),
			},
		})
		if err != nil {
			return exitError{255, fmt.Errorf("exec failed: %w", err)}
		}
		os.Exit(status)
		return nil
	},
}

// execProcess reads --process, or builds the process from the container's
// own config and the command line, as runc does.
func execProcess(c *cli.Context, r *runtime.Runtime) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read process file: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("parse process file %s: %w", path, err)
		}
		return &p, nil
	}
	if c.NArg() < 2 {
		return nil, fmt.Errorf("exec needs a command to run or --process")
	}
	st, err := r.State(c.Args().First())
	if err != nil {
		return nil, err
	}
	spec, err := runtime.LoadSpec(st.Bundle)
	if err != nil {
		return nil, err
	}
	p := spec.Process
	p.Args = c.Args().Slice()[1:]
	p.Terminal = c.Bool("tty")
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	if u := c.String("user"); u != "" {
		uid, gid, hasGID := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: uid must be a number", u)
		}
		p.User.UID = uint32(n)
		if hasGID {
			n, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: gid must be a number", u)
			}
			p.User.GID = uint32(n)
		}
	}
	return p, nil
}

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default SIGTERM) to the container's init",
	ArgsUsage: "<container-id> [signal]",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "do not fail when the container has stopped"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 2); err != nil {
			return err
		}
		sig, err := parseSignal(c.Args().Get(1))
		if err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Kill(c.Args().First(), sig, c.Bool("all"))
	},
}

func parseSignal(s string) (unix.Signal, error) {
	if s == "" {
		return unix.SIGTERM, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		// 0 only checks that the container runs, as with runc.
		if n < 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal number %d", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete a container and everything moat holds for it",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill the container first if it runs"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Delete(c.Args().First(), c.Bool("force"))
	},
}

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "freeze every process of the container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Pause(c.Args().First())
	},
}

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Resume(c.Args().First())
	},
}

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
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		res, err := updateResources(c)
		if err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Update(c.Args().First(), res)
	},
}

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
