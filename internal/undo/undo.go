// Package undo collects the steps that take back a half-done operation, so
// that one that fails leaves nothing behind.
package undo

// Stack holds undo steps; the zero value is ready to use.
type Stack []func()

// Add records the step that takes back what was just done.
func (s *Stack) Add(f func()) { *s = append(*s, f) }

// Run runs the steps last first, and forgets them.
func (s *Stack) Run() {
	for i := len(*s) - 1; i >= 0; i-- {
		(*s)[i]()
	}
	*s = nil
}

// OnError runs the steps if *err is set when the caller returns:
// defer u.OnError(&retErr).
func (s *Stack) OnError(err *error) {
	if *err != nil {
		s.Run()
	}
}
