// Package test holds moat's integration tests. They drive the installed moat
// binary directly, through dockerd (moat registered as a runtime) and through
// containerd's runc v2 shim. They build only with the tag integration, so that
// `go test ./...` leaves them out; run them with `make integration`, which
// sets it and starts the daemons that are not running.
package test
