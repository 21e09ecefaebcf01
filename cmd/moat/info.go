package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

func writeJSON(w io.Writer, v any, indent string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", indent)
	return enc.Encode(v)
}

var stateCommand = &cli.Command{
	Name:      "state",
	Usage:     "print the state of a container as JSON",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		st, err := r.State(c.Args().First())
		if err != nil {
			return err
		}
		return printJSON(c.App.Writer, st)
	},
}

var listCommand = &cli.Command{
	Name:  "list",
	Usage: "list the containers under --root",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the IDs"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 0, 0); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
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
	},
}

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "list the processes of a container",
	ArgsUsage: "<container-id> [ps options]",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 1, -1); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		pids, err := r.Pids(c.Args().First())
		if err != nil {
			return err
		}
		switch f := c.String("format"); f {
		case "json":
			if pids == nil {
				pids = []int{}
			}
			return writeJSON(c.App.Writer, pids, "")
		case "table":
			return psTable(c.App.Writer, pids, c.Args().Slice()[1:])
		default:
			return fmt.Errorf("invalid --format %q: use table or json", f)
		}
	},
}

// psTable runs ps(1) and keeps the header and the container's rows.
func psTable(w io.Writer, pids []int, psArgs []string) error {
	if len(psArgs) == 0 {
		psArgs = []string{"-ef"}
	}
	out, err := exec.Command("ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	pidCol := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == "PID" {
			pidCol = i
		}
	}
	if pidCol < 0 {
		return errors.New("ps output has no PID column")
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	fmt.Fprintln(w, lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= pidCol {
			continue
		}
		if p, err := strconv.Atoi(f[pidCol]); err == nil && want[p] {
			fmt.Fprintln(w, l)
		}
	}
	return nil
}

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "print container statistics (and OOM notices) as JSON lines",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between stats"},
		&cli.BoolFlag{Name: "stats", Usage: "print stats once and exit"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 1, 1); err != nil {
			return err
		}
		if c.Duration("interval") <= 0 {
			return errors.New("--interval must be greater than 0")
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		return r.Events(c.Context, c.Args().First(), c.Duration("interval"), c.Bool("stats"), c.App.Writer)
	},
}

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "print the features moat supports as JSON",
	Action: func(c *cli.Context) error {
		return writeJSON(c.App.Writer, runtime.Features(version, gitCommit), "    ")
	},
}

var specCommand = &cli.Command{
	Name:  "spec",
	Usage: "write a starter config.json into the bundle",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "bundle directory"},
		&cli.BoolFlag{Name: "rootless", Usage: "accepted for runc compatibility; every moat container is user-namespaced"},
	},
	Action: func(c *cli.Context) error {
		path := c.String("bundle") + "/config.json"
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s already exists: remove it first", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("write spec: %w", err)
		}
		defer f.Close()
		return writeJSON(f, specconv.Example(), "\t")
	},
}

var idsCommand = &cli.Command{
	Name:  "ids",
	Usage: "list the host ID ranges moat has given to containers (all roots)",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
	},
	Action: func(c *cli.Context) error {
		if err := args(c, 0, 0); err != nil {
			return err
		}
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
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
	},
}
