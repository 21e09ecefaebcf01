package runtime

import (
	"errors"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
)

// Errors about a container's existence and state, in runc 1.1.5's words.
// containerd's runc v2 shim reads the runtime's last error line and matches
// substrings: "does not exist" (a delete of a container already gone counts
// as done, a kill as not found), "container not running" and "no such
// process" (a kill of a task that already exited). dockerd and ctr show the
// rest to users who know runc's wording. They are returned unwrapped, since
// the text is the contract; "no such process" comes from libcontainer's own
// signal error.
var (
	ErrEmptyID      = errors.New("container id cannot be empty")
	ErrNotExist     = errors.New("container does not exist")
	ErrNotRunning   = errors.New("container not running")
	ErrNotPaused    = errors.New("container not paused")
	ErrStartRunning = errors.New("cannot start an already running container")
	ErrStartStopped = errors.New("cannot start a container that has stopped")
	ErrExecStopped  = errors.New("cannot exec in a stopped container")
	ErrExecPaused   = errors.New("cannot exec in a paused container (use --ignore-paused to override)")
)

// runc's texts that name the container or its state.

func errStartInState(st libcontainer.Status) error {
	return fmt.Errorf("cannot start a container in the %s state", st)
}

func errDeleteNotStopped(id string, st libcontainer.Status) error {
	return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st)
}

func errEventsNotRunning(id string) error {
	return fmt.Errorf("container with id %s is not running", id)
}

// stateError gives libcontainer's state errors runc's text (they match
// today, but are libcontainer's to change); other errors pass unchanged.
func stateError(err error) error {
	switch {
	case errors.Is(err, libcontainer.ErrNotExist):
		return ErrNotExist
	case errors.Is(err, libcontainer.ErrNotRunning):
		return ErrNotRunning
	case errors.Is(err, libcontainer.ErrNotPaused):
		return ErrNotPaused
	}
	return err
}
