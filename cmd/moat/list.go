package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var listCommand = &cli.Command{
	Name:  "list",
	Usage: "list the containers under --root",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the IDs"},
	},
	Action: withRuntime(0, 0, func(c *cli.Context, r *runtime.Runtime) error {
		list, err := r.List()
		if err != nil {
			return err
		}
		if c.Bool("quiet") {
			for _, s := range list {
				fmt.Fprintln(c.App.Writer, s.ID)
			}
			return nil
		}
		switch f := c.String("format"); f {
		case "json":
			if list == nil {
				list = []runtime.State{}
			}
			return writeJSON(c.App.Writer, list, "")
		case "table":
			w := tabwriter.NewWriter(c.App.Writer, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.InitProcessPid, s.Status,
					s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
			}
			return w.Flush()
		default:
			return fmt.Errorf("invalid --format %q: use table or json", f)
		}
	}),
}
