package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

var idsCommand = &cli.Command{
	Name:  "ids",
	Usage: "list the host ID ranges moat has given to containers (all roots)",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
	},
	Action: withRuntime(0, 0, func(c *cli.Context, r *runtime.Runtime) error {
		ranges, err := r.Ranges()
		if err != nil {
			return err
		}
		switch f := c.String("format"); f {
		case "json":
			return writeJSON(c.App.Writer, ranges, "")
		case "table":
			w := tabwriter.NewWriter(c.App.Writer, 8, 1, 3, ' ', 0)
			fmt.Fprint(w, "ROOT\tID\tUID\tGID\tSIZE\tSHARED\n")
			for _, g := range ranges {
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%t\n", g.Owner.Root, g.Owner.ID, g.UID, g.GID, g.Size, g.Shared)
			}
			return w.Flush()
		default:
			return fmt.Errorf("invalid --format %q: use table or json", f)
		}
	}),
}
