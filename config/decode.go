package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pelletier/go-toml/v2"
)

// problem is something wrong with one key of the document. Where the key
// is comes from the document's key positions, so that every problem is
// reported at the line where its key first appears.
type problem struct {
	key []string
	msg string
}

// parse decodes src, the contents of the file at path, into a Config with
// the defaults of the keys it does not set.
//
// Of all the problems found, the first in the file is reported, the way a
// user reading the file from the top expects. The decoder's own errors
// cannot say which that is: it stops at the first value of the wrong type,
// matches keys regardless of case ([Mounts] would pass) and names the keys
// of an inline table without their parent. So the document's keys are
// checked against Config first (keyProblem), and the decoder's errors only
// back that up.
func parse(path string, src []byte) (*Config, error) {
	// Some editors start a file with a byte order mark, which the library
	// takes for part of the first key.
	src = bytes.TrimPrefix(src, []byte("\ufeff"))

	// A plain map first: what makes the file invalid TOML whatever the
	// schema (syntax, duplicate keys) is reported wherever it is, and the
	// map has the values that type errors describe.
	var doc map[string]any
	if err := toml.Unmarshal(src, &doc); err != nil {
		return nil, libraryError(path, "invalid TOML: ", err)
	}
	keys := keyPositions(src)

	var probs []problem
	if p, ok := keyProblem(doc, keys); ok {
		probs = append(probs, p)
	}
	c := Default()
	c.Path = path
	if err := toml.NewDecoder(bytes.NewReader(src)).DisallowUnknownFields().Decode(c); err != nil && len(probs) == 0 {
		// keyProblem missed what the decoder refuses: report it as the
		// library words it rather than accept the file.
		return nil, libraryError(path, "", err)
	}
	// Keys after a type error were not decoded and keep their (valid)
	// defaults; those before it are checked, so that the first problem in
	// the file still wins.
	probs = append(probs, validate(c)...)
	if len(probs) > 0 {
		return nil, firstProblem(path, keys, probs)
	}
	c.clean()
	return c, nil
}

// libraryError is err as the library words it, with the line it gives
// (for a StrictMissingError, that of its first key).
func libraryError(path, prefix string, err error) *Error {
	e := &Error{Path: path, Msg: prefix + strings.TrimPrefix(err.Error(), "toml: "), Err: err}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		e.Line, _ = de.Position()
		e.Msg = prefix + strings.TrimPrefix(de.Error(), "toml: ")
	}
	return e
}

// firstProblem reports the problem whose key appears first in the file.
// On a tie (a list with both a wrong element and a bad path) the earlier
// problem in probs wins, so type errors go before value checks.
func firstProblem(path string, keys []keyPos, probs []problem) *Error {
	start := func(p problem) int {
		if k, ok := firstPos(keys, p.key); ok {
			return k.start
		}
		return math.MaxInt
	}
	p := slices.MinFunc(probs, func(a, b problem) int { return cmp.Compare(start(a), start(b)) })
	k, _ := firstPos(keys, p.key)
	return &Error{Path: path, Line: k.line, Key: keyString(p.key), Msg: p.msg}
}

// keyProblem returns the first key of the document, in document order,
// that names no field of Config or whose value does not fit its field.
func keyProblem(doc map[string]any, keys []keyPos) (problem, bool) {
	for _, k := range keys {
		n, t, unknown := field(k.key)
		if unknown {
			key := k.key[:n+1]
			msg := "unknown key"
			if s := suggest(key[n], slices.Sorted(maps.Keys(fieldsOf(t)))); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", keyString(append(slices.Clone(key[:n]), s)))
			}
			return problem{key: key, msg: msg}, true
		}
		// A key below a field that is not a table makes that field's
		// value a table.
		key := k.key[:n]
		if msg := mismatch(t, lookup(doc, key), k.arrayTable && n == len(k.key)); msg != "" {
			return problem{key: key, msg: msg}, true
		}
	}
	return problem{}, false
}

// mismatch says what a field of type t takes and what the file has, v, if
// v does not fit; "" if it does.
func mismatch(t reflect.Type, v any, arrayTable bool) string {
	want := typeName(t)
	if arrayTable {
		return fmt.Sprintf("expected %s, got an array of tables", want)
	}
	if a, ok := v.([]any); ok && t.Kind() == reflect.Slice {
		for i, e := range a {
			if !fits(t.Elem(), e) {
				return fmt.Sprintf("expected %s, got %s as element %d", want, describe(e), i+1)
			}
		}
	}
	if fits(t, v) {
		return ""
	}
	return fmt.Sprintf("expected %s, got %s", want, describe(v))
}

// fits reports whether a value of the decoded document decodes into a
// field of type t, the way moat has always read them: no conversions.
func fits(t reflect.Type, v any) bool {
	switch t.Kind() {
	case reflect.Struct:
		_, ok := v.(map[string]any)
		return ok
	case reflect.Slice:
		a, ok := v.([]any)
		return ok && !slices.ContainsFunc(a, func(e any) bool { return !fits(t.Elem(), e) })
	case reflect.Int:
		_, ok := v.(int64)
		return ok
	default:
		return v != nil && reflect.TypeOf(v) == t
	}
}

// typeName names what a field of type t takes, in the file's terms.
func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int:
		return "an integer"
	case reflect.Struct:
		return "a table"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
	}
	return t.String()
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
	case time.Time, toml.LocalDate, toml.LocalTime, toml.LocalDateTime:
		return "a datetime"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// lookup returns the value of key in a decoded document, nil if none.
func lookup(doc map[string]any, key []string) any {
	var v any = doc
	for _, k := range key {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// validate checks what the types alone do not. It checks decoded values:
// a key the file does not set has its default, which passes.
func validate(c *Config) []problem {
	var probs []problem
	check := func(msg string, key ...string) {
		if msg != "" {
			probs = append(probs, problem{key: key, msg: msg})
		}
	}
	check(checkPaths(c.Mounts.Restricted), "mounts", "restricted")
	check(checkPaths(c.Mounts.ExtraRestricted), "mounts", "extra_restricted")
	check(checkPaths(c.Mounts.Allowed), "mounts", "allowed")
	check(checkPath(c.Docker.DataRoot, false), "docker", "data_root")
	check(checkImages(c.Docker.SocketImages), "docker", "socket_images")
	check(checkPath(c.Containerd.Root, false), "containerd", "root")
	check(checkPath(c.Containerd.State, false), "containerd", "state")
	check(checkSubIDUser(c.IDs.SubIDUser), "ids", "subid_user")
	if n := c.IDs.Containers; n < 1 || n > MaxContainers {
		check(fmt.Sprintf("%d is out of range (1 to %d)", n, MaxContainers), "ids", "containers")
	}
	check(checkPaths(c.Devices.Allowed), "devices", "allowed")
	return probs
}

// clean cleans the paths of a valid Config, keeping placeholders.
func (c *Config) clean() {
	for _, l := range [][]string{c.Mounts.Restricted, c.Mounts.ExtraRestricted, c.Mounts.Allowed, c.Devices.Allowed} {
		for i, s := range l {
			l[i] = cleanPath(s)
		}
	}
	for _, s := range []*string{&c.Docker.DataRoot, &c.Containerd.Root, &c.Containerd.State} {
		*s = cleanPath(*s)
	}
}

// checkPaths checks a list of paths, which may start with a placeholder.
func checkPaths(l []string) string {
	for i, s := range l {
		if msg := checkPath(s, true); msg != "" {
			return fmt.Sprintf("element %d: %s", i+1, msg)
		}
	}
	return ""
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

func checkImages(l []string) string {
	for i, s := range l {
		if s == "" || strings.IndexFunc(s, unicode.IsSpace) >= 0 {
			return fmt.Sprintf("element %d: %q is not an image reference or ID", i+1, s)
		}
	}
	return ""
}

func checkSubIDUser(s string) string {
	if s == "" {
		return "must not be empty"
	}
	// The name is a field of the colon-separated, line-based /etc/subuid:
	// anything else would corrupt the file.
	if strings.IndexFunc(s, func(r rune) bool {
		return r == ':' || unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		return fmt.Sprintf("%q must not contain ':', whitespace or control characters", s)
	}
	return ""
}

// suggest returns the name of names nearest to a mistyped key, when the
// key looks like a typo of it; "" otherwise. Of equally near names the
// first wins.
func suggest(key string, names []string) string {
	best, bestD := "", 3
	for _, s := range names {
		if d := distance(key, s); d < bestD && d < len(s) {
			best, bestD = s, d
		}
	}
	return best
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

// keyString writes a key the way TOML does: elements that are not bare
// keys are quoted.
func keyString(key []string) string {
	var b strings.Builder
	for i, k := range key {
		if i > 0 {
			b.WriteByte('.')
		}
		if k != "" && strings.IndexFunc(k, notBare) < 0 {
			b.WriteString(k)
			continue
		}
		b.WriteByte('"')
		for _, r := range k {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\b', r == '\t', r == '\n', r == '\f', r == '\r':
				b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}

func notBare(r rune) bool {
	return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
}
