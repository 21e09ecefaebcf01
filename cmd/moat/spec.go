package main

import (
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var specCommand = &cli.Command{
	Name:  "spec",
	Usage: "write a starter config.json into the bundle",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "bundle directory"},
		&cli.BoolFlag{Name: "rootless", Usage: "accepted for runc compatibility; every moat container is user-namespaced"},
	},
	Action: func(c *cli.Context) error {
		return runtime.WriteExampleSpec(c.String("bundle"))
	},
}
