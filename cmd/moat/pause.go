package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "freeze every process of the container",
	ArgsUsage: "<container-id>",
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		return r.Pause(c.Args().First())
	}),
}

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
	ArgsUsage: "<container-id>",
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		return r.Resume(c.Args().First())
	}),
}
