package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moatrt/moat/policy"
)

// LoadSpec reads and checks <bundle>/config.json. Its errors name the bundle
// and say what is missing, because they reach the docker user verbatim.
func LoadSpec(bundle string) (*specs.Spec, error) {
	st, err := os.Stat(bundle)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("bundle %s does not exist", bundle)
	case err != nil:
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	case !st.IsDir():
		return nil, fmt.Errorf("bundle %s is not a directory", bundle)
	}
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s has no config.json: create one with 'moat spec'", bundle)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, describeJSONError(data, err))
	}
	if err := ValidateSpec(&spec); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", path, err)
	}
	return &spec, nil
}

// LoadProcess reads an exec's process file (runc's --process).
func LoadProcess(path string) (*specs.Process, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read process file: %w", err)
	}
	var p specs.Process
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("parse process file %s: %w", path, err)
	}
	return &p, nil
}

// WriteExampleSpec writes runc's starter config.json into bundle. It never
// replaces one: that may be a user's edited spec.
func WriteExampleSpec(bundle string) error {
	path := bundle + "/config.json"
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists: remove it first", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	enc.SetIndent("", "\t")
	return enc.Encode(specconv.Example())
}

// describeJSONError adds the line of a syntax or type error, which
// encoding/json only reports as a byte offset.
func describeJSONError(data []byte, err error) error {
	var off int64
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	default:
		return err
	}
	line := 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n"))
	return fmt.Errorf("line %d: %w", line, err)
}

// ValidateSpec checks the fields moat needs before it touches anything.
func ValidateSpec(spec *specs.Spec) error {
	if spec.Root == nil || spec.Root.Path == "" {
		return errors.New("root.path is required")
	}
	if spec.Linux == nil {
		return errors.New("the linux section is required")
	}
	return ValidateProcess(spec.Process)
}

// ValidateProcess checks a process given to create, run or exec.
func ValidateProcess(p *specs.Process) error {
	switch {
	case p == nil:
		return errors.New("process is required")
	case len(p.Args) == 0:
		return errors.New("process.args must not be empty")
	case p.Cwd == "":
		return errors.New("process.cwd is required")
	case !filepath.IsAbs(p.Cwd):
		return fmt.Errorf("process.cwd %q must be an absolute path", p.Cwd)
	}
	return nil
}

// Mapping is the container's single ID range (see policy.Mapping).
type Mapping = policy.Mapping

// bootSeconds is the host's boot clock, in whole seconds.
func bootSeconds() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("read boot clock: %w", err)
	}
	return ts.Sec, nil
}
