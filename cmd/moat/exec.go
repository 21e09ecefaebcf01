package main

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

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
	Action: withRuntime(1, -1, func(c *cli.Context, r *runtime.Runtime) error {
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
	}),
}

// execProcess reads --process, or has the runtime build the process from
// the container's config and the command line.
func execProcess(c *cli.Context, r *runtime.Runtime) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		return runtime.LoadProcess(path)
	}
	if c.NArg() < 2 {
		return nil, fmt.Errorf("exec needs a command to run or --process")
	}
	return r.ExecProcess(c.Args().First(), runtime.ExecArgs{
		Args:     c.Args().Slice()[1:],
		Terminal: c.Bool("tty"),
		Cwd:      c.String("cwd"),
		Env:      c.StringSlice("env"),
		User:     c.String("user"),
	})
}
