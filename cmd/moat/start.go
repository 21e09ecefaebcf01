package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "start the process of a created container",
	ArgsUsage: "<container-id>",
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		return r.Start(c.Args().First())
	}),
}
