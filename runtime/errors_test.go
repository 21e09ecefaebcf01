package runtime

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
)

// The substrings containerd's shim matches stay in the errors it reads.
func TestShimSubstrings(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{ErrNotExist, "does not exist"},
		{ErrNotRunning, "container not running"},
	} {
		if !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%q lost %q", c.err, c.want)
		}
	}
}

func TestStateError(t *testing.T) {
	other := errors.New("other")
	for _, c := range []struct {
		in, want error
	}{
		{libcontainer.ErrNotExist, ErrNotExist},
		{libcontainer.ErrNotRunning, ErrNotRunning},
		{fmt.Errorf("unable to kill all processes: %w", libcontainer.ErrNotRunning), ErrNotRunning},
		{libcontainer.ErrNotPaused, ErrNotPaused},
		{other, other},
		{nil, nil},
	} {
		if got := stateError(c.in); got != c.want {
			t.Errorf("stateError(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
