// Command moat is an OCI runtime that runs every container in its own user
// namespace. Its command line is runc's, because dockerd and containerd's
// shim drive it exactly like runc. This package only parses flags and
// prints; the decisions live in package runtime.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	// Docker always sends device rules; this registers their cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"

	"github.com/moatrt/moat/config"
	"github.com/moatrt/moat/runtime"
)

// Set at build time by the Makefile.
var (
	version   = "0.1.0-dev"
	gitCommit = ""
)

func init() {
	// libcontainer re-executes this binary as `moat init` inside the new
	// namespaces; that must happen before any flag parsing.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

func main() {
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fatal(err, exitCode(err))
	}
}

func newApp() *cli.App {
	cli.VersionPrinter = func(c *cli.Context) {
		fmt.Fprintf(c.App.Writer, "moat version %s\n", version)
		if gitCommit != "" {
			fmt.Fprintf(c.App.Writer, "commit: %s\n", gitCommit)
		}
		fmt.Fprintf(c.App.Writer, "spec: %s\n", specs.Version)
	}
	return &cli.App{
		Name:    "moat",
		Usage:   "OCI runtime that gives every container its own user namespace and ID range",
		Version: version,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
			&cli.StringFlag{Name: "log", Usage: "log file (default: stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.StringFlag{Name: "root", Value: runtime.DefaultRoot, Usage: "directory for container state (on tmpfs)"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "use systemd to manage cgroups"},
			&cli.StringFlag{Name: "config", Value: config.DefaultPath, Usage: "moat's config file (read by create and run)"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Hidden: true, Usage: "accepted for runc compatibility; moat runs as root"},
			&cli.StringFlag{Name: "criu", Hidden: true, Usage: "accepted for runc compatibility; checkpoint is not supported"},
		},
		Before: configureLogging,
		Commands: []*cli.Command{
			createCommand, startCommand, runCommand, execCommand, killCommand,
			deleteCommand, stateCommand, listCommand, psCommand, pauseCommand,
			resumeCommand, updateCommand, eventsCommand, featuresCommand, specCommand, idsCommand, helperCommand,
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main reports errors
	}
}

// configureLogging sets up logrus the way containerd's shim reads it: JSON
// lines in --log, the last error line being the message it shows.
func configureLogging(c *cli.Context) error {
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	switch f := c.String("log-format"); f {
	case "", "text":
		logrus.SetFormatter(&logrus.TextFormatter{})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("invalid --log-format %q: use text or json", f)
	}
	if path := c.String("log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return fmt.Errorf("open log file: %w", err)
		}
		logrus.SetOutput(f)
	}
	return nil
}

// exitError carries a specific exit status (an exec that failed: 255).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// fatal logs err where the caller reads it and exits. The log line is what
// the shim turns into "OCI runtime create failed: <msg>".
// Without --log the message goes to stderr alone, plain.
func fatal(err error, code int) {
	if logrus.StandardLogger().Out != os.Stderr {
		logrus.Error(err)
	}
	fmt.Fprintln(os.Stderr, "moat: "+err.Error())
	os.Exit(code)
}
