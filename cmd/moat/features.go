package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "print the features moat supports as JSON",
	Action: func(c *cli.Context) error {
		return writeJSON(c.App.Writer, runtime.Features(version, gitCommit), "    ")
	},
}
