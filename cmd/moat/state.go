package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var stateCommand = &cli.Command{
	Name:      "state",
	Usage:     "print the state of a container as JSON",
	ArgsUsage: "<container-id>",
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		st, err := r.State(c.Args().First())
		if err != nil {
			return err
		}
		return writeJSON(c.App.Writer, st, "  ")
	}),
}
