package userns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// ProcessStart returns the start time of pid (field 22 of /proc/<pid>/stat,
// in clock ticks since boot). Together with the PID it names one process:
// a later process that reuses the PID has a later start time.
func ProcessStart(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat returns the state letter and the start time of pid.
func procStat(pid int) (byte, uint64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may itself hold
	// spaces and parentheses: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%s: no command name in %q", path, data)
	}
	// Fields from 3 (state) on; starttime is field 22.
	fields := bytes.Fields(data[i+1:])
	const state, startTime = 3, 22
	if len(fields) < startTime-state+1 {
		return 0, 0, fmt.Errorf("%s: %d fields after the command name, want at least %d", path, len(fields), startTime-state+1)
	}
	start, err := strconv.ParseUint(string(fields[startTime-state]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: start time: %w", path, err)
	}
	return fields[0][0], start, nil
}

// processRunning tells whether the process pid that started at start still
// runs. When in doubt it says yes: keeping a dead owner's range only wastes
// it, reclaiming a live one would share it.
func processRunning(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, got, err := procStat(pid)
	if err != nil {
		// ESRCH: the process exited while its stat was being read.
		return !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ESRCH)
	}
	// A zombie has released everything; it only waits to be reaped.
	if st == 'Z' || st == 'X' {
		return false
	}
	return start == 0 || got == start
}
