package main

import (
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "print container statistics (and OOM notices) as JSON lines",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between stats"},
		&cli.BoolFlag{Name: "stats", Usage: "print stats once and exit"},
	},
	Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
		if c.Duration("interval") <= 0 {
			return errors.New("--interval must be greater than 0")
		}
		return r.Events(c.Context, c.Args().First(), c.Duration("interval"), c.Bool("stats"), c.App.Writer)
	}),
}
