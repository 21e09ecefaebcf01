package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/moatrt/moat/runtime"
)

// withRuntime is the action of every subcommand that needs the runtime: it
// checks the number of positional arguments (max < 0: no upper limit),
// builds the runtime from the global flags and hands both to run.
func withRuntime(min, max int, run func(c *cli.Context, r *runtime.Runtime) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := args(c, min, max); err != nil {
			return err
		}
		r, err := runtime.New(runtime.Options{
			Root:          c.String("root"),
			SystemdCgroup: c.Bool("systemd-cgroup"),
			ConfigPath:    c.String("config"),
		})
		if err != nil {
			return err
		}
		return run(c, r)
	}
}

// idCommand is a subcommand whose only argument is the container ID, passed
// to one method of the runtime (start, pause, resume).
func idCommand(name, usage string, op func(*runtime.Runtime, string) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "<container-id>",
		Action: withRuntime(1, 1, func(c *cli.Context, r *runtime.Runtime) error {
			return op(r, c.Args().First())
		}),
	}
}

// args checks the positional arguments of a subcommand.
func args(c *cli.Context, min, max int) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		want := fmt.Sprintf("%d", min)
		switch {
		case max < 0:
			want = fmt.Sprintf("at least %d", min)
		case max != min:
			want = fmt.Sprintf("%d to %d", min, max)
		}
		return fmt.Errorf("%s: expected %s argument(s), got %d (usage: moat %s %s)",
			c.Command.Name, want, n, c.Command.Name, c.Command.ArgsUsage)
	}
	return nil
}

// absOrEmpty makes a pid file absolute before create changes directory.
func absOrEmpty(p string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return wd + "/" + p
}

// writeJSON prints v as state, list, ps, ids and features do; indent
// differs between them as it does in runc.
func writeJSON(w io.Writer, v any, indent string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", indent)
	return enc.Encode(v)
}
