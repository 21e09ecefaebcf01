package userns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// subID is one entry of /etc/subuid or /etc/subgid: IDs [start, start+count).
type subID struct {
	name         string
	start, count uint64
}

// parseSubID parses "name:start:count".
func parseSubID(line string) (subID, error) {
	parts := strings.Split(line, ":")
	if len(parts) != 3 {
		return subID{}, fmt.Errorf("%q is not name:start:count", line)
	}
	start, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return subID{}, fmt.Errorf("%q: start: %w", line, err)
	}
	count, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil {
		return subID{}, fmt.Errorf("%q: count: %w", line, err)
	}
	return subID{name: parts[0], start: start, count: count}, nil
}

// ensureEntry returns the first entry of user in path and adds one if there
// is none. It runs under the allocator's lock, which serializes moat's own
// writers; the file is replaced atomically so that other readers (shadow,
// newuidmap) never see half of it. Lines of other users are kept verbatim.
func ensureEntry(path, user string, size uint32, count int) (subID, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return subID{}, err
	}
	var others []subID
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, perr := parseSubID(line)
		if strings.HasPrefix(line, user+":") {
			if perr != nil {
				return subID{}, fmt.Errorf("%s: entry of %s: %w", path, user, perr)
			}
			return e, checkEntry(path, e)
		}
		// A line we cannot read claims nothing we could avoid; it is kept.
		if perr == nil {
			others = append(others, e)
		}
	}

	e, err := pickEntry(others, user, uint64(size), uint64(count)*uint64(size))
	if err != nil {
		return subID{}, fmt.Errorf("%s: %w", path, err)
	}
	// Keep the file's mode (0644 when new): newuidmap and shadow read it as
	// other users.
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, fmt.Sprintf("%s:%d:%d\n", e.name, e.start, e.count)...)
	if err := writeAtomic(path, path+".moat-tmp", data, mode); err != nil {
		return subID{}, fmt.Errorf("add %s entry to %s: %w", user, path, err)
	}
	return e, nil
}

// pickEntry chooses the lowest start firstStart + k*step whose length IDs
// overlap none of others.
func pickEntry(others []subID, user string, step, length uint64) (subID, error) {
	for start := uint64(firstStart); start+length <= maxID; start += step {
		free := true
		for _, o := range others {
			if start < o.start+o.count && o.start < start+length {
				free = false
				// Jump past o rather than crawl through it step by step.
				if o.start+o.count > start {
					skip := (o.start + o.count - start + step - 1) / step
					start += (skip - 1) * step
				}
				break
			}
		}
		if free {
			return subID{name: user, start: start, count: length}, nil
		}
	}
	return subID{}, fmt.Errorf("no room for %d IDs for %s that overlaps no other entry", length, user)
}

// checkEntry refuses an entry that would map host root or the invalid ID.
func checkEntry(path string, e subID) error {
	switch {
	case e.start == 0:
		return fmt.Errorf("%s: entry %s:%d:%d includes host ID 0", path, e.name, e.start, e.count)
	case e.start+e.count > maxID:
		return fmt.Errorf("%s: entry %s:%d:%d runs past the last valid ID", path, e.name, e.start, e.count)
	}
	return nil
}
