package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/helper"
)

var helperCommand = &cli.Command{
	Name:  "helper",
	Usage: "the mount-vetting helper: one privileged process per host, started by create when needed",
	Subcommands: []*cli.Command{
		{
			Name:   "serve",
			Usage:  "run the helper (create starts it; it exits 60s after its last container)",
			Hidden: true,
			Action: func(c *cli.Context) error { return helper.Serve() },
		},
		{
			Name:  "status",
			Usage: "print the helper's PID and the containers it serves",
			Action: func(c *cli.Context) error {
				st, err := helper.GetStatus()
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "pid: %d\ncontainers: %s\n", st.Pid, strings.Join(st.Containers, " "))
				return nil
			},
		},
	},
}
