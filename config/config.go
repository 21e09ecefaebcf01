// Package config owns moat's one configuration file, /etc/moat/config.toml:
// its schema, its documented defaults and its validation. Every key is
// optional and a missing file means all defaults, so a host that never
// writes the file gets the documented behaviour.
//
// The package only reads and checks the file. What the values mean for a
// container is decided elsewhere: the runtime translates a Config into the
// policy types of the policy package.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where moat looks for its configuration file.
const DefaultPath = "/etc/moat/config.toml"

// Defaults of the keys that have one. They are constants so that the
// documented defaults and the code cannot drift apart.
const (
	DefaultDockerDataRoot  = "/var/lib/docker"
	DefaultContainerdRoot  = "/var/lib/containerd"
	DefaultContainerdState = "/run/containerd"
	DefaultSubIDUser       = "moat"
	DefaultContainers      = 4096
	// MaxContainers is the most ranges an entry can hold: 65536 ranges of
	// 65536 IDs each span the whole 32-bit ID space.
	MaxContainers = 65536
)

// Placeholders that entries of the mount lists may start with. They are
// expanded with the configured (or default) engine directories, so that
// moving docker's data root does not mean rewriting the restricted list.
const (
	PlaceholderDockerDataRoot  = "{docker_data_root}"
	PlaceholderContainerdRoot  = "{containerd_root}"
	PlaceholderContainerdState = "{containerd_state}"
)

// Config is moat's configuration. Build one with Load or Default: the
// zero value lacks the defaults (although the methods fall back to them for
// the engine directories).
type Config struct {
	// Path is the file the configuration came from; "" when it is the
	// defaults because there was no file.
	Path string `toml:"-"`

	Mounts     Mounts     `toml:"mounts"`
	Docker     Docker     `toml:"docker"`
	Containerd Containerd `toml:"containerd"`
	IDs        IDs        `toml:"ids"`
	Devices    Devices    `toml:"devices"`
}

// Mounts is the [mounts] table: which host paths containers may not
// bind-mount. Entries of the three lists may start with a placeholder
// ({docker_data_root}, {containerd_root}, {containerd_state}); use the
// RestrictedPaths and AllowedPaths methods to get them expanded.
type Mounts struct {
	// Restricted replaces the default list (DefaultRestricted) when set.
	// nil means "not set"; a non-nil empty slice (restricted = [] in the
	// file) really means "nothing restricted but ExtraRestricted".
	Restricted []string `toml:"restricted"`
	// ExtraRestricted is added to the default (or replaced) list, so that
	// a site can restrict more without restating the defaults.
	ExtraRestricted []string `toml:"extra_restricted"`
	// Strict allows only the Allowed host dirs (and the engine's own files
	// for the container, and named volumes) to be bind-mounted.
	Strict  bool     `toml:"strict"`
	Allowed []string `toml:"allowed"`
}

// Docker is the [docker] table.
type Docker struct {
	// DataRoot is dockerd's data root; default /var/lib/docker.
	DataRoot string `toml:"data_root"`
	// SocketImages lists the images that may mount the docker socket:
	// name[:tag], name@sha256:..., or an image ID. Default empty.
	SocketImages []string `toml:"socket_images"`
}

// Containerd is the [containerd] table.
type Containerd struct {
	Root  string `toml:"root"`  // default /var/lib/containerd
	State string `toml:"state"` // default /run/containerd
}

// IDs is the [ids] table: where moat gets the host IDs it hands out.
type IDs struct {
	// SubIDUser is the entry in /etc/subuid and /etc/subgid; default "moat".
	SubIDUser string `toml:"subid_user"`
	// Containers is how many 64K ranges an entry moat adds itself holds;
	// default 4096.
	Containers int `toml:"containers"`
}

// Devices is the [devices] table: which host devices a container may be
// given when its spec names them (docker's --device). A device named and
// not allowed fails the create; none is dropped silently.
type Devices struct {
	// Allowed are host device nodes a container may be given, besides
	// the few every container has (null, zero, full, random, urandom,
	// tty, fuse, net/tun). nil means DefaultAllowedDevices; a set empty
	// list means none.
	Allowed []string `toml:"allowed"`
}

// DefaultAllowedDevices returns the devices a container may be given
// when the config does not say: ones that reach no host data (a VM
// monitor, FUSE, tun/tap). It returns a new slice on every call.
func DefaultAllowedDevices() []string {
	return []string{"/dev/kvm", "/dev/fuse", "/dev/net/tun"}
}

// AllowedDevices returns the effective device allowlist.
func (c *Config) AllowedDevices() []string {
	if c.Devices.Allowed == nil {
		return DefaultAllowedDevices()
	}
	return c.Devices.Allowed
}

// Error is a problem with the contents of a configuration file. Line and
// Key are set when known; Err is the underlying error, if any (a
// toml.ParseError for syntax errors).
type Error struct {
	Path string
	Line int
	Key  string
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: ", e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Default returns the configuration used when there is no file.
func Default() *Config {
	return &Config{
		Docker: Docker{DataRoot: DefaultDockerDataRoot},
		Containerd: Containerd{
			Root:  DefaultContainerdRoot,
			State: DefaultContainerdState,
		},
		IDs: IDs{SubIDUser: DefaultSubIDUser, Containers: DefaultContainers},
	}
}

// DefaultRestricted returns the default restricted host paths, with their
// placeholders unexpanded. It returns a new slice on every call.
func DefaultRestricted() []string {
	return []string{
		"/etc/docker",
		PlaceholderDockerDataRoot,
		"/run/docker.sock",
		"/var/run/docker.sock",
		"/run/docker",
		"/var/run/docker",
		"/etc/containerd",
		PlaceholderContainerdRoot,
		PlaceholderContainerdState,
		"/etc/moat",
		"/var/lib/moat",
		"/run/moat",
		"/run/moat-mounts",
		"/proc",
		"/sys",
		"/dev",
		"/boot",
		"/lib/modules",
		"/usr/lib/modules",
	}
}

// Placeholders of the mount exceptions that only the mount policy can fill
// in, per container.
const (
	PlaceholderContainerID = "{id}"
	PlaceholderSandboxID   = "{sandbox}"
)

// defaultExceptions are the paths under restricted ones that belong to the
// container itself: what the engines bind-mount into every container
// (hostname, hosts, resolv.conf, CRI's per-sandbox files) and docker's
// named volumes. '*' stands for exactly one path element.
func defaultExceptions() []string {
	return []string{
		PlaceholderDockerDataRoot + "/containers/" + PlaceholderContainerID,
		PlaceholderDockerDataRoot + "/volumes/*/_data",
		PlaceholderContainerdRoot + "/io.containerd.grpc.v1.cri/containers/" + PlaceholderContainerID,
		PlaceholderContainerdRoot + "/io.containerd.grpc.v1.cri/sandboxes/" + PlaceholderSandboxID,
		PlaceholderContainerdState + "/io.containerd.grpc.v1.cri/sandboxes/" + PlaceholderSandboxID,
		PlaceholderContainerdState + "/io.containerd.grpc.v1.cri/containers/" + PlaceholderContainerID,
	}
}

// Load reads the configuration file at path ("" means DefaultPath) and
// fills in the defaults of the keys it does not set. A missing file is
// not an error: the result is Default(). Any other problem is, so that a
// typo never silently turns a protection off.
func Load(path string) (*Config, error) {
	if path == "" {
		path = DefaultPath
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := parse(path, string(data))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parse decodes src, the contents of the file at path, into a Config.
//
// The document is decoded into a generic map and checked against the
// schema here rather than decoded into Config directly: that way unknown
// keys and wrong types get messages that name the key and its line, and
// an explicit value (ids.containers = 0) is told apart from an absent one.
func parse(path, src string) (*Config, error) {
	var doc map[string]any
	md, err := toml.Decode(src, &doc)
	if err != nil {
		e := &Error{Path: path, Msg: "invalid TOML: " + err.Error(), Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Msg = "invalid TOML: " + pe.Message
			e.Line = pe.Position.Line
			// The lexer has already counted the newline when it fails on
			// one ("got '\n' instead"); the offset gives the line the
			// user has to fix.
			if st := pe.Position.Start; st >= 0 && st <= len(src) {
				e.Line = 1 + strings.Count(src[:st], "\n")
			}
		}
		return nil, e
	}
	p := &parser{path: path, doc: doc, lines: keyLines(src), c: Default()}
	p.c.Path = path
	for _, k := range md.Keys() {
		if err := p.key(k); err != nil {
			return nil, err
		}
	}
	return p.c, nil
}

// field is one leaf key of the schema: set checks a value and stores it.
type field struct {
	name string
	set  func(p *parser, k toml.Key, v any) error
}

// schema lists the tables and their keys. It is a function, not a
// package variable, to keep the package free of mutable globals.
func schema() map[string][]field {
	return map[string][]field{
		"mounts": {
			{"restricted", func(p *parser, k toml.Key, v any) error {
				l, err := p.pathList(k, v)
				if err != nil {
					return err
				}
				// Non-nil even when empty: set, it replaces the defaults.
				p.c.Mounts.Restricted = l
				return nil
			}},
			{"extra_restricted", func(p *parser, k toml.Key, v any) error {
				l, err := p.pathList(k, v)
				p.c.Mounts.ExtraRestricted = l
				return err
			}},
			{"strict", func(p *parser, k toml.Key, v any) error {
				b, ok := v.(bool)
				if !ok {
					return p.errf(k, "expected a boolean, got %s", describe(v))
				}
				p.c.Mounts.Strict = b
				return nil
			}},
			{"allowed", func(p *parser, k toml.Key, v any) error {
				l, err := p.pathList(k, v)
				p.c.Mounts.Allowed = l
				return err
			}},
		},
		"docker": {
			{"data_root", func(p *parser, k toml.Key, v any) error {
				s, err := p.onePath(k, v)
				p.c.Docker.DataRoot = s
				return err
			}},
			{"socket_images", func(p *parser, k toml.Key, v any) error {
				l, err := p.stringList(k, v)
				if err != nil {
					return err
				}
				for i, s := range l {
					if s == "" || strings.IndexFunc(s, unicode.IsSpace) >= 0 {
						return p.errf(k, "element %d: %q is not an image reference or ID", i+1, s)
					}
				}
				p.c.Docker.SocketImages = l
				return nil
			}},
		},
		"containerd": {
			{"root", func(p *parser, k toml.Key, v any) error {
				s, err := p.onePath(k, v)
				p.c.Containerd.Root = s
				return err
			}},
			{"state", func(p *parser, k toml.Key, v any) error {
				s, err := p.onePath(k, v)
				p.c.Containerd.State = s
				return err
			}},
		},
		"devices": {
			{"allowed", func(p *parser, k toml.Key, v any) error {
				l, err := p.pathList(k, v)
				if err != nil {
					return err
				}
				// Non-nil even when empty: set, it replaces the defaults.
				if l == nil {
					l = []string{}
				}
				p.c.Devices.Allowed = l
				return nil
			}},
		},
		"ids": {
			{"subid_user", func(p *parser, k toml.Key, v any) error {
				s, ok := v.(string)
				if !ok {
					return p.errf(k, "expected a string, got %s", describe(v))
				}
				if s == "" {
					return p.errf(k, "must not be empty")
				}
				// The name is a field of the colon-separated, line-based
				// /etc/subuid: anything else would corrupt the file.
				if strings.IndexFunc(s, func(r rune) bool {
					return r == ':' || unicode.IsSpace(r) || unicode.IsControl(r)
				}) >= 0 {
					return p.errf(k, "%q must not contain ':', whitespace or control characters", s)
				}
				p.c.IDs.SubIDUser = s
				return nil
			}},
			{"containers", func(p *parser, k toml.Key, v any) error {
				n, ok := v.(int64)
				if !ok {
					return p.errf(k, "expected an integer, got %s", describe(v))
				}
				if n < 1 || n > MaxContainers {
					return p.errf(k, "%d is out of range (1 to %d)", n, MaxContainers)
				}
				p.c.IDs.Containers = int(n)
				return nil
			}},
		},
	}
}

type parser struct {
	path  string
	doc   map[string]any
	lines map[string]int // see keyLines
	c     *Config
}

// key checks one key of the document. Keys are checked in the order they
// appear, so that the first problem reported is the first one in the
// file. A key's parent table is checked with the key, since the library
// does not list tables that were only created implicitly (by [a.b] or
// a.b = 1).
func (p *parser) key(k toml.Key) error {
	tables := schema()
	fields, known := tables[k[0]]
	if !known {
		return p.unknown(k[:1], keysOf(tables))
	}
	table, ok := p.doc[k[0]].(map[string]any)
	if !ok {
		return p.errf(k[:1], "expected a table, got %s", describe(p.doc[k[0]]))
	}
	if len(k) == 1 {
		return nil
	}
	j := slices.IndexFunc(fields, func(f field) bool { return f.name == k[1] })
	if j < 0 {
		var names []string
		for _, f := range fields {
			names = append(names, f.name)
		}
		return p.unknown(k[:2], names)
	}
	if err := fields[j].set(p, k[:2], table[k[1]]); err != nil {
		return err
	}
	if len(k) > 2 {
		// Every leaf refuses tables and arrays of tables, so keys below
		// one never get here; refuse them anyway rather than ignore them.
		return p.errf(k, "unknown key")
	}
	return nil
}

func (p *parser) errf(k toml.Key, format string, args ...any) error {
	return &Error{Path: p.path, Line: p.line(k), Key: k.String(), Msg: fmt.Sprintf(format, args...)}
}

// unknown reports an unknown key, suggesting the nearest known sibling
// when the key looks like a typo of it.
func (p *parser) unknown(k toml.Key, siblings []string) error {
	msg := "unknown key"
	last := k[len(k)-1]
	best, bestD := "", 3
	for _, s := range siblings {
		if d := distance(last, s); d < bestD && d < len(s) {
			best, bestD = s, d
		}
	}
	if best != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", append(k[:len(k)-1:len(k)-1], best))
	}
	return &Error{Path: p.path, Line: p.line(k), Key: k.String(), Msg: msg}
}

// line is the line where k, or failing that its nearest parent, is first
// defined; 0 if unknown.
func (p *parser) line(k toml.Key) int {
	for n := len(k); n > 0; n-- {
		if l, ok := p.lines[lineKey(k[:n])]; ok {
			return l
		}
	}
	return 0
}

// onePath checks a single path value: a string that is an absolute path.
func (p *parser) onePath(k toml.Key, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", p.errf(k, "expected a string, got %s", describe(v))
	}
	if msg := checkPath(s, false); msg != "" {
		return "", p.errf(k, "%s", msg)
	}
	return filepath.Clean(s), nil
}

// pathList checks an array of paths, which may start with a placeholder.
func (p *parser) pathList(k toml.Key, v any) ([]string, error) {
	l, err := p.stringList(k, v)
	if err != nil {
		return nil, err
	}
	for i, s := range l {
		if msg := checkPath(s, true); msg != "" {
			return nil, p.errf(k, "element %d: %s", i+1, msg)
		}
		l[i] = cleanPath(s)
	}
	return l, nil
}

func (p *parser) stringList(k toml.Key, v any) ([]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, p.errf(k, "expected an array of strings, got %s", describe(v))
	}
	l := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, p.errf(k, "expected an array of strings, got %s as element %d", describe(e), i+1)
		}
		l = append(l, s)
	}
	return l, nil
}

// checkPath returns why s is not an acceptable path, or "".
func checkPath(s string, placeholders bool) string {
	if strings.ContainsRune(s, 0) {
		return fmt.Sprintf("%q contains a NUL byte", s)
	}
	if placeholders && strings.HasPrefix(s, "{") {
		ph, _, _ := strings.Cut(s, "/")
		if !slices.Contains(pathPlaceholders(), ph) {
			return fmt.Sprintf("%q starts with an unknown placeholder (known: %s)", s, strings.Join(pathPlaceholders(), ", "))
		}
		return ""
	}
	if !filepath.IsAbs(s) {
		return fmt.Sprintf("%q is not an absolute path", s)
	}
	return ""
}

func pathPlaceholders() []string {
	return []string{PlaceholderDockerDataRoot, PlaceholderContainerdRoot, PlaceholderContainerdState}
}

// cleanPath cleans a path that may start with a placeholder, keeping the
// placeholder intact.
func cleanPath(s string) string {
	if !strings.HasPrefix(s, "{") {
		return filepath.Clean(s)
	}
	ph, rest, ok := strings.Cut(s, "/")
	if !ok {
		return ph
	}
	rest = strings.TrimPrefix(filepath.Clean("/"+rest), "/")
	if rest == "" {
		return ph
	}
	return ph + "/" + rest
}

// describe names a decoded TOML value's type, with the value itself when
// it is a scalar, for messages like `got string "yes"`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case time.Time:
		return "a datetime"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func keysOf(m map[string][]field) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	slices.Sort(l)
	return l
}

// distance is the Levenshtein distance of a and b, for typo suggestions.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// RestrictedPaths returns the effective restricted host paths: the
// default list, or Mounts.Restricted when set, plus
// Mounts.ExtraRestricted, with placeholders expanded, cleaned and without
// duplicates.
func (c *Config) RestrictedPaths() []string {
	l := c.Mounts.Restricted
	if l == nil {
		l = DefaultRestricted()
	}
	return c.expandAll(slices.Concat(l, c.Mounts.ExtraRestricted))
}

// RestrictedExceptions returns the patterns of paths under restricted
// ones that are the container's own, with the engine directories
// expanded. {id} and {sandbox} stay for the mount policy to match against
// the container and sandbox IDs; '*' stands for exactly one path element.
func (c *Config) RestrictedExceptions() []string {
	return c.expandAll(defaultExceptions())
}

// AllowedPaths returns Mounts.Allowed with placeholders expanded.
func (c *Config) AllowedPaths() []string {
	return c.expandAll(c.Mounts.Allowed)
}

// EngineSockets returns the engine socket paths that Docker.SocketImages
// applies to.
func (c *Config) EngineSockets() []string {
	return []string{"/run/docker.sock", "/var/run/docker.sock"}
}

func (c *Config) expandAll(l []string) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		s = c.expand(s)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// expand replaces a leading engine-directory placeholder. An empty
// directory (a Config not made by Load or Default) falls back to the
// default rather than turning "{docker_data_root}/x" into "/x".
func (c *Config) expand(s string) string {
	for _, r := range []struct{ ph, val, def string }{
		{PlaceholderDockerDataRoot, c.Docker.DataRoot, DefaultDockerDataRoot},
		{PlaceholderContainerdRoot, c.Containerd.Root, DefaultContainerdRoot},
		{PlaceholderContainerdState, c.Containerd.State, DefaultContainerdState},
	} {
		rest, ok := strings.CutPrefix(s, r.ph)
		if !ok || (rest != "" && rest[0] != '/') {
			continue
		}
		val := r.val
		if val == "" {
			val = r.def
		}
		return filepath.Clean(val + rest)
	}
	if filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return s
}

// lineKey is the map key of lines for a TOML key: its elements joined by
// a byte that cannot appear in a decoded key.
func lineKey(k []string) string { return strings.Join(k, "\x00") }

// keyLines maps every key of src (see lineKey), and every table and
// parent of a dotted key, to the line where it first appears.
//
// The library keeps key positions to itself, so this is a small scanner
// of its own. It only runs on documents the library has parsed, so it can
// be lenient: it follows the structure (table headers, dotted and quoted
// keys, inline tables, arrays, multi-line strings) and skips everything
// else, and it always makes progress, whatever the input.
func keyLines(src string) map[string]int {
	// The library skips a byte order mark; so must the scanner, or it
	// would take the mark for part of the first key.
	src = strings.TrimPrefix(src, "\ufeff")
	sc := &lineScanner{s: src, line: 1, lines: map[string]int{}}
	sc.document()
	return sc.lines
}

type lineScanner struct {
	s     string
	i     int
	line  int
	lines map[string]int
}

func (sc *lineScanner) eof() bool  { return sc.i >= len(sc.s) }
func (sc *lineScanner) peek() byte { return sc.s[sc.i] }

// adv consumes one byte, counting lines.
func (sc *lineScanner) adv() {
	if sc.s[sc.i] == '\n' {
		sc.line++
	}
	sc.i++
}

func (sc *lineScanner) record(k []string, line int) {
	for n := 1; n <= len(k); n++ {
		lk := lineKey(k[:n])
		if _, seen := sc.lines[lk]; !seen {
			sc.lines[lk] = line
		}
	}
}

// blank skips spaces and tabs, and also newlines and comments if nl.
func (sc *lineScanner) blank(nl bool) {
	for !sc.eof() {
		switch c := sc.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			sc.adv()
		case c == '\n' && nl:
			sc.adv()
		case c == '#' && nl:
			for !sc.eof() && sc.peek() != '\n' {
				sc.adv()
			}
		default:
			return
		}
	}
}

func (sc *lineScanner) restOfLine() {
	for !sc.eof() && sc.peek() != '\n' {
		sc.adv()
	}
}

func (sc *lineScanner) document() {
	var table []string
	for {
		sc.blank(true)
		if sc.eof() {
			return
		}
		start := sc.i
		line := sc.line
		if sc.peek() == '[' {
			sc.adv()
			if !sc.eof() && sc.peek() == '[' { // [[array of tables]]
				sc.adv()
			}
			table = sc.key()
			sc.record(table, line)
			sc.restOfLine() // the closing brackets and any comment
		} else {
			k := sc.key()
			full := slices.Concat(table, k)
			if len(k) > 0 {
				sc.record(full, line)
			}
			sc.blank(false)
			if !sc.eof() && sc.peek() == '=' {
				sc.adv()
				sc.value(full)
			}
			sc.restOfLine()
		}
		if sc.i == start {
			sc.adv()
		}
	}
}

// key reads a possibly dotted key: bare, "basic" or 'literal' parts.
func (sc *lineScanner) key() []string {
	var k []string
	for {
		sc.blank(false)
		if sc.eof() {
			return k
		}
		switch sc.peek() {
		case '"':
			k = append(k, sc.basicString())
		case '\'':
			k = append(k, sc.literalString())
		default:
			start := sc.i
			for !sc.eof() && !strings.ContainsRune(" \t\r\n.=[]{},#\"'", rune(sc.peek())) {
				sc.adv()
			}
			if sc.i == start {
				return k
			}
			k = append(k, sc.s[start:sc.i])
		}
		sc.blank(false)
		if sc.eof() || sc.peek() != '.' {
			return k
		}
		sc.adv()
	}
}

// items skips the comma-separated items of an array or inline table,
// from its opening bracket to the closing one, with item for each.
func (sc *lineScanner) items(closing byte, item func()) {
	sc.adv()
	for {
		sc.blank(true)
		if sc.eof() {
			return
		}
		start := sc.i
		switch sc.peek() {
		case closing:
			sc.adv()
			return
		case ',':
			sc.adv()
		default:
			item()
		}
		if sc.i == start {
			sc.adv()
		}
	}
}

// value skips a value; the keys of inline tables in it are recorded
// below k, the way the library names them.
func (sc *lineScanner) value(k []string) {
	sc.blank(false)
	if sc.eof() {
		return
	}
	switch sc.peek() {
	case '"':
		if strings.HasPrefix(sc.s[sc.i:], `"""`) {
			sc.multiline(`"""`, true)
		} else {
			sc.basicString()
		}
	case '\'':
		if strings.HasPrefix(sc.s[sc.i:], `'''`) {
			sc.multiline(`'''`, false)
		} else {
			sc.literalString()
		}
	case '[':
		sc.items(']', func() { sc.value(k) })
	case '{':
		sc.items('}', func() {
			line := sc.line
			sub := slices.Concat(k, sc.key())
			sc.record(sub, line)
			sc.blank(false)
			if !sc.eof() && sc.peek() == '=' {
				sc.adv()
				sc.value(sub)
			}
		})
	default:
		// A number, boolean or datetime (which may contain a space).
		for !sc.eof() && !strings.ContainsRune(",]}\n#", rune(sc.peek())) {
			sc.adv()
		}
	}
}

// basicString reads a "..." string and returns its decoded contents.
func (sc *lineScanner) basicString() string {
	sc.adv()
	var b strings.Builder
	for !sc.eof() {
		c := sc.peek()
		switch {
		case c == '"':
			sc.adv()
			return b.String()
		case c == '\n':
			return b.String() // unterminated; cannot happen after parsing
		case c == '\\' && sc.i+1 < len(sc.s):
			sc.adv()
			b.WriteString(sc.escape())
		default:
			b.WriteByte(c)
			sc.adv()
		}
	}
	return b.String()
}

// escape decodes the escape sequence after a backslash.
func (sc *lineScanner) escape() string {
	c := sc.peek()
	sc.adv()
	switch c {
	case 'b':
		return "\b"
	case 't':
		return "\t"
	case 'n':
		return "\n"
	case 'f':
		return "\f"
	case 'r':
		return "\r"
	case 'e':
		return "\x1b"
	case 'u', 'U', 'x':
		n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		if sc.i+n > len(sc.s) {
			return ""
		}
		var r rune
		if _, err := fmt.Sscanf(sc.s[sc.i:sc.i+n], "%x", &r); err != nil {
			return ""
		}
		sc.i += n
		return string(r)
	default:
		return string(c)
	}
}

func (sc *lineScanner) literalString() string {
	sc.adv()
	start := sc.i
	for !sc.eof() && sc.peek() != '\'' && sc.peek() != '\n' {
		sc.adv()
	}
	s := sc.s[start:sc.i]
	if !sc.eof() && sc.peek() == '\'' {
		sc.adv()
	}
	return s
}

// multiline skips a multi-line string opened by delim; up to two more
// quotes right before the closing delimiter belong to the string.
func (sc *lineScanner) multiline(delim string, escapes bool) {
	for range len(delim) {
		sc.adv()
	}
	for !sc.eof() {
		if escapes && sc.peek() == '\\' {
			sc.adv()
			if !sc.eof() {
				sc.adv()
			}
			continue
		}
		if strings.HasPrefix(sc.s[sc.i:], delim) {
			for range len(delim) {
				sc.adv()
			}
			for n := 0; n < 2 && !sc.eof() && sc.peek() == delim[0]; n++ {
				sc.adv()
			}
			return
		}
		sc.adv()
	}
}
