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
// next IdleExit: it greets the running one, or starts one from binary,
// detached from the caller, and waits for it to answer.
func Ensure(binary string) error {
	// A connection is enough: the helper answers nothing, and a create
	// that finds it gone after all fails at the hand-over or the confirm.
	if c, err := net.Dial("unix", Socket); err == nil {
		c.Close()
		return nil
	}
	if err := spawn(binary, "serve"); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := hello()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mount-vetting helper did not start (see %s): %w", LogFile, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hello() error {
	var out answer
	return ask(request{Op: "hello"}, &out)
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
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
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
