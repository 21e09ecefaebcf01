package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Ensure makes sure a helper runs and will take a listener within the
// next IdleExit: it connects to the running one, which puts off its idle
// exit, or starts one from binary, detached from the caller. A connection
// is enough: a create that finds the helper gone after all fails at the
// hand-over or the confirm.
func Ensure(binary string) error {
	err := reach(binary, "serve", func() error {
		c, err := net.Dial("unix", Socket)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("mount-vetting helper did not start (see %s): %w", LogFile, err)
	}
	return nil
}

// reach calls try, and if it fails starts `binary helper <what>` and
// tries again until it works or the new process had waitStart to come up.
func reach(binary, what string, try func() error) error {
	if try() == nil {
		return nil
	}
	if err := spawn(binary, what); err != nil {
		return err
	}
	deadline := time.Now().Add(waitStart)
	for {
		err := try()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Confirm waits until the helper serves a listener of container id and
// has it kept safe from its own crash: that of process pid, or if pid is
// 0 the one handed over with metadata. A create or exec that cannot
// confirm must fail: its process would not be vetted.
func Confirm(id string, pid int, metadata string, since time.Time) error {
	var out answer
	req := request{Op: "confirm", ID: id, Pid: pid, Metadata: metadata}
	if !since.IsZero() {
		req.Since = since.UnixNano()
	}
	if err := ask(req, &out); err != nil {
		return fmt.Errorf("confirm mount vetting of %s: %w", id, err)
	}
	if out.Error != "" {
		return fmt.Errorf("confirm mount vetting of %s: %s", id, out.Error)
	}
	return nil
}

// EnsureViews makes sure the helper serves the /proc and /sys views at
// ViewsDir, starting it if need be (binary is moat's), before a container
// that binds them starts.
func EnsureViews(binary string) error {
	var out answer
	err := ask(request{Op: "views"}, &out)
	if errors.Is(err, ErrNotRunning) {
		if err = Ensure(binary); err == nil {
			err = ask(request{Op: "views"}, &out)
		}
	}
	if err != nil {
		return fmt.Errorf("serve the /proc and /sys views: %w", err)
	}
	if out.Error != "" {
		return fmt.Errorf("serve the /proc and /sys views: %s", out.Error)
	}
	return nil
}

// GetStatus asks the running helper for its PID and containers.
func GetStatus() (*Status, error) {
	var st Status
	if err := ask(request{Op: "status"}, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ErrNotRunning is returned when no helper answers.
var ErrNotRunning = errors.New("the mount-vetting helper is not running")

func ask(req request, out any) error {
	conn, err := net.DialTimeout("unix", Socket, time.Second)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer conn.Close()
	// A confirm may wait for a new keeper.
	_ = conn.SetDeadline(time.Now().Add(confirmWait + 2*time.Second))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return err
	}
	if err := json.NewDecoder(conn).Decode(out); err != nil {
		return fmt.Errorf("helper answer: %w", err)
	}
	return nil
}

// spawn runs `binary helper <what>` (the helper or its keeper) in a
// session of its own, its output in the log file, and does not wait for it.
func spawn(binary, what string) error {
	if err := os.MkdirAll(Dir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(LogFile), 0o700); err != nil {
		return err
	}
	log, err := os.OpenFile(LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("helper log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(binary, "--log-format", "text", "helper", what)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mount-vetting %s: %w", what, err)
	}
	// Not waited for: it outlives this process, and init reaps it.
	return cmd.Process.Release()
}
