package main

import (
	"fmt"
	"os"
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
			Action: withBinary(helper.Serve),
		},
		{
			Name:   "keep",
			Usage:  "hold the helper's listeners and restart it if it dies (the helper starts it)",
			Hidden: true,
			Action: withBinary(helper.Keep),
		},
		{
			Name:  "status",
			Usage: "print the helper's PID and the containers it serves",
			Action: func(c *cli.Context) error {
				st, err := helper.GetStatus()
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "pid: %d\nkeeper: %d\ncontainers: %s\n", st.Pid, st.KeeperPid, strings.Join(st.Containers, " "))
				if st.Views != "" {
					fmt.Fprintf(c.App.Writer, "views: %s\n", st.Views)
				}
				fmt.Fprintf(c.App.Writer, "goroutines: %d\nfds: %d\n", st.Goroutines, st.FDs)
				return nil
			},
		},
	},
}

// withBinary runs f with moat's own binary, which the helper and its
// keeper run to start each other.
func withBinary(f func(binary string) error) cli.ActionFunc {
	return func(*cli.Context) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		return f(exe)
	}
}
