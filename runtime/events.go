package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/runc/libcontainer"
)

// Event is one line of `moat events`: the same envelope runc prints.
type Event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// Events writes the container's cgroup stats every interval (once with
// once) and an "oom" event whenever the kernel OOM-kills in it, until the
// container stops or ctx ends.
func (r *Runtime) Events(ctx context.Context, id string, interval time.Duration, once bool, w io.Writer) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	if st == libcontainer.Stopped {
		return errEventsNotRunning(id)
	}
	enc := json.NewEncoder(w)
	stats := func() error {
		s, err := c.Stats()
		if err != nil {
			return fmt.Errorf("stats of %s: %w", id, err)
		}
		return enc.Encode(Event{Type: "stats", ID: id, Data: s})
	}
	if once {
		return stats()
	}
	oom, err := c.NotifyOOM()
	if err != nil {
		oom = nil // not every cgroup setup offers OOM notification
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-oom:
			if !ok {
				return nil
			}
			if err := enc.Encode(Event{Type: "oom", ID: id}); err != nil {
				return err
			}
		case <-tick.C:
			st, err := c.Status()
			if err != nil || st == libcontainer.Stopped {
				return err
			}
			if err := stats(); err != nil {
				return err
			}
		}
	}
}
