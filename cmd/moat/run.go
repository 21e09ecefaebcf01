package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and start a container",
	ArgsUsage: "<container-id>",
	Flags: append([]cli.Flag{
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.BoolFlag{Name: "keep", Hidden: true, Usage: "accepted for runc compatibility"},
		&cli.BoolFlag{Name: "no-subreaper", Hidden: true, Usage: "accepted for runc compatibility"},
	}, createFlags...),
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		status, err := r.Run(createOpts(c))
		if err != nil {
			return err
		}
		os.Exit(status)
		return nil
	}),
}
