package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

// createFlags are create's flags, which run shares.
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

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container (its process waits for 'moat start')",
	ArgsUsage: "<container-id>",
	Flags:     createFlags,
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		return r.Create(createOpts(c))
	}),
}
