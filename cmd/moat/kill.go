package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/runtime"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default SIGTERM) to the container's init",
	ArgsUsage: "<container-id> [signal]",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "do not fail when the container has stopped"},
	},
	Action: withRuntime(1, 2, func(c *cli.Context, r *runtime.Runtime) error {
		sig, err := parseSignal(c.Args().Get(1))
		if err != nil {
			return err
		}
		return r.Kill(c.Args().First(), sig, c.Bool("all"))
	}),
}

// parseSignal reads a signal as runc does: a number, or a name with or
// without SIG, in any case.
func parseSignal(s string) (unix.Signal, error) {
	if s == "" {
		return unix.SIGTERM, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		// 0 only checks that the container runs, as with runc.
		if n < 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal number %d", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
