package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete a container and everything moat holds for it",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill the container first if it runs"},
	},
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		return r.Delete(c.Args().First(), c.Bool("force"))
	}),
}
