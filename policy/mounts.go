// Package policy owns moat's isolation decisions, as data in and verdict
// out: which host paths a container may mount, which devices it may have,
// which namespaces it may name and whose user namespace it joins, and how
// a spec is rewritten to isolate it (the user namespace and its mapping,
// the sysctls moat writes for it, the mounts of what moat stages). It
// makes no kernel calls of its own (what it must know of the host, such as
// a symlink's target, a device's numbers or a namespace's owner, is given
// to it), so the runtime and the helper share it and it can be fuzzed.
package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// The mount policy decides which host paths a container may bind-mount.
// It is pure logic on paths: the caller opens the source, takes the real
// path of what it opened (Source.Path) and asks Check about that, so a
// symlink swapped after the check changes nothing.

// Policy is the mount policy. Fill in the exported fields and make it
// usable with NewPolicy, which cleans the paths and adds their
// symlink-resolved forms; Check refuses everything on a Policy that did
// not come from NewPolicy.
type Policy struct {
	// Restricted are absolute host paths that may not be bind-mounted: a
	// source equal to one, under one, or containing one (an ancestor such
	// as "/" or "/etc") is refused.
	Restricted []string
	// Exceptions are patterns of paths under Restricted ones that are the
	// container's own (the files the engine made for it, named volumes):
	// a source equal to or under a matching exception escapes the equal
	// and under rule. Elements "{id}" and "{sandbox}" match the
	// container's and the sandbox's ID, "*" matches exactly one element.
	Exceptions []string
	// Strict also requires a source to be equal to or under one of
	// Allowed, or an exception.
	Strict bool
	// Allowed are the host directories allowed in strict mode. Their
	// symlink-resolved forms are allowed too, so they should be paths
	// that only root can change.
	Allowed []string
	// Sockets are the engine sockets that the image allowlist applies
	// to: a restricted socket may be mounted by the images on
	// SocketImages.
	Sockets []string
	// SocketImages are the images allowed to mount one of Sockets:
	// name[:tag], name[:tag]@digest, or an image ID, "sha256:" and 64 hex
	// digits, or a prefix of at least 12 of the digits (with or without
	// "sha256:"). An entry of 12 to 64 hex digits is always taken as an
	// ID prefix.
	SocketImages []string

	prepared   bool
	restricted []string
	exceptions [][]string // patterns split into path elements
	allowed    []string
	sockets    []string
	images     []imageEntry
}

// Image is what the runtime could establish of a container's image.
type Image struct {
	// ID is the image ID, "sha256:" and 64 hex digits; "" if unknown.
	ID string
	// Names are every reference known to point to the image, such as
	// "moat-test/dind:1", "docker.io/library/docker:dind" or
	// "busybox@sha256:...".
	Names []string
}

// Context is what Check knows of the container a mount is for.
type Context struct {
	ContainerID string
	// Joined are the IDs of the containers whose namespaces this one
	// joins (docker's --network=container:X, --ipc=container:X): the
	// engine files it made for them (hosts, resolv.conf, shm) are
	// shared with this container, so "{id}" matches them too.
	Joined    []string
	SandboxID string
	Image     *Image // nil when unknown
}

// Placeholders of Policy.Exceptions.
const (
	exceptionID      = "{id}"
	exceptionSandbox = "{sandbox}"
	exceptionAny     = "*"
)

// NewPolicy returns a usable copy of p. Every path is cleaned and, so that
// the real path of a source is compared with real paths, the
// symlink-resolved form of each Restricted, Allowed and Sockets path and
// of the literal head of each exception is added (for a path that does
// not exist, its deepest existing ancestor is resolved: with /var/run a
// link to /run, /var/run/x adds /run/x).
func NewPolicy(p Policy) (*Policy, error) {
	return newPolicy(p, filepath.EvalSymlinks)
}

// newPolicy is NewPolicy with the symlink resolver given, so that tests
// can run without depending on the host's file system.
func newPolicy(p Policy, eval func(string) (string, error)) (*Policy, error) {
	out := Policy{
		Restricted:   slices.Clone(p.Restricted),
		Exceptions:   slices.Clone(p.Exceptions),
		Strict:       p.Strict,
		Allowed:      slices.Clone(p.Allowed),
		Sockets:      slices.Clone(p.Sockets),
		SocketImages: slices.Clone(p.SocketImages),
		prepared:     true,
	}
	var err error
	if out.restricted, err = policyPaths("restricted", p.Restricted, eval); err != nil {
		return nil, err
	}
	if out.allowed, err = policyPaths("allowed", p.Allowed, eval); err != nil {
		return nil, err
	}
	if out.sockets, err = policyPaths("socket", p.Sockets, eval); err != nil {
		return nil, err
	}
	for _, e := range p.Exceptions {
		pats, err := exceptionPatterns(e, eval)
		if err != nil {
			return nil, err
		}
		for _, pat := range pats {
			if !slices.ContainsFunc(out.exceptions, func(q []string) bool { return slices.Equal(q, pat) }) {
				out.exceptions = append(out.exceptions, pat)
			}
		}
	}
	for _, s := range p.SocketImages {
		e, ok := parseImageEntry(s)
		if !ok {
			return nil, fmt.Errorf("mount policy: socket image %q is not an image reference or ID", s)
		}
		out.images = append(out.images, e)
	}
	return &out, nil
}

// policyPaths cleans the absolute paths l and adds their resolved forms,
// each right after its own, so that messages name the configured form
// first.
func policyPaths(what string, l []string, eval func(string) (string, error)) ([]string, error) {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range l {
		if !filepath.IsAbs(s) {
			return nil, fmt.Errorf("mount policy: %s path %q is not absolute", what, s)
		}
		s = filepath.Clean(s)
		add(s)
		r, err := ResolveExisting(s, eval)
		if err != nil {
			return nil, fmt.Errorf("mount policy: %s path: %w", what, err)
		}
		add(r)
	}
	return out, nil
}

// ResolveExisting resolves the symlinks of the clean absolute path, or
// of its deepest existing ancestor if it does not exist.
func ResolveExisting(path string, eval func(string) (string, error)) (string, error) {
	head, tail := path, ""
	for {
		r, err := eval(head)
		if err == nil {
			if !filepath.IsAbs(r) {
				return "", fmt.Errorf("resolve %s: got relative path %q", head, r)
			}
			return filepath.Join(r, tail), nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			// Fail closed: a restricted path moat cannot resolve could be
			// reached through a link it does not know about.
			return "", fmt.Errorf("resolve %s: %w", head, err)
		}
		if head == "/" {
			return path, nil
		}
		tail = filepath.Join(filepath.Base(head), tail)
		head = filepath.Dir(head)
	}
}

// exceptionPatterns checks one exception and returns it split into
// elements, and also with its literal head resolved if that differs.
func exceptionPatterns(e string, eval func(string) (string, error)) ([][]string, error) {
	if !filepath.IsAbs(e) {
		return nil, fmt.Errorf("mount policy: exception %q is not absolute", e)
	}
	elems := pathElems(filepath.Clean(e))
	head := 0
	for head < len(elems) && !isWildcard(elems[head]) {
		head++
	}
	for _, el := range elems {
		if !isWildcard(el) && strings.ContainsAny(el, "{}*") {
			return nil, fmt.Errorf("mount policy: exception %q: %q is neither a path element nor one of %s, %s, %s",
				e, el, exceptionID, exceptionSandbox, exceptionAny)
		}
	}
	if head == 0 {
		// A pattern of wildcards alone would except whole trees such as
		// every /<x>/_data: insist on a fixed place.
		return nil, fmt.Errorf("mount policy: exception %q does not start with a fixed path", e)
	}
	pats := [][]string{elems}
	r, err := ResolveExisting("/"+strings.Join(elems[:head], "/"), eval)
	if err != nil {
		return nil, fmt.Errorf("mount policy: exception %q: %w", e, err)
	}
	if rh := pathElems(r); !slices.Equal(rh, elems[:head]) {
		pats = append(pats, slices.Concat(rh, elems[head:]))
	}
	return pats, nil
}

func isWildcard(el string) bool {
	return el == exceptionID || el == exceptionSandbox || el == exceptionAny
}

// pathElems splits a clean absolute path into its elements; "/" has none.
func pathElems(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(p, "/"), "/")
}

// PathWithin reports whether the clean absolute path p is base or under
// it, on path-element boundaries ("/etc/dockerfile" is not under
// "/etc/docker"; everything is under "/").
func PathWithin(p, base string) bool {
	if base == "/" {
		return true
	}
	return p == base || (strings.HasPrefix(p, base) && p[len(base)] == '/')
}

// RefusedError is a mount the policy refuses. Its message is meant for
// the user who asked for the mount (docker shows it after "OCI runtime
// create failed: ..."). Source can be set to the path as the user gave
// it before the error is shown.
type RefusedError struct {
	Source   string
	Contains string // the restricted path under Source, for an ancestor
	// Via is the path the mount was asked for when Source is where that
	// path really leads (see Source.Origins); "" when it is Source.
	Via   string
	kind  refusal
	image string // the image named, for a socket
}

type refusal int

const (
	refusedRestricted refusal = iota
	refusedAncestor
	refusedStrict
	refusedSocketImage
	refusedSocketUnknown
)

func (e *RefusedError) Error() string {
	if e.Via != "" {
		return e.message() + " (reached through " + e.Via + ")"
	}
	return e.message()
}

func (e *RefusedError) message() string {
	const restricted = "because it's configured as a restricted host mount"
	switch e.kind {
	case refusedAncestor:
		return fmt.Sprintf("can't mount %s because it contains %s, which is configured as a restricted host mount", e.Source, e.Contains)
	case refusedStrict:
		return fmt.Sprintf("can't mount %s because it's not among the host directories allowed in strict mode (mounts.allowed)", e.Source)
	case refusedSocketImage:
		return fmt.Sprintf("can't mount %s %s (image %s is not in docker.socket_images)", e.Source, restricted, e.image)
	case refusedSocketUnknown:
		return fmt.Sprintf("can't mount %s %s (the container's image could not be established)", e.Source, restricted)
	default:
		return fmt.Sprintf("can't mount %s %s", e.Source, restricted)
	}
}

// Check returns nil if a container described by c may bind-mount source,
// the real (absolute, clean, symlink-free) path of the object to mount,
// and a *RefusedError if the policy forbids it. Any other error means
// Check could not decide, and the mount must not happen either.
func (p *Policy) Check(source string, c Context) error {
	if p == nil || !p.prepared {
		return errors.New("mount policy: not made by NewPolicy")
	}
	if !filepath.IsAbs(source) || filepath.Clean(source) != source {
		return fmt.Errorf("mount policy: source %q is not an absolute clean path", source)
	}
	excepted := p.excepted(source, c)
	under := !excepted && slices.ContainsFunc(p.restricted, func(r string) bool { return PathWithin(source, r) })
	if under {
		if !slices.Contains(p.sockets, source) {
			return &RefusedError{Source: source, kind: refusedRestricted}
		}
		if err := p.checkSocketImage(source, c.Image); err != nil {
			return err
		}
	}
	// Exceptions do not help an ancestor: mounting it shows all of the
	// restricted path, not only the container's part of it.
	for _, r := range p.restricted {
		if r != source && PathWithin(r, source) {
			return &RefusedError{Source: source, Contains: r, kind: refusedAncestor}
		}
	}
	if under {
		return nil // an engine socket the image may mount
	}
	if p.Strict && !excepted && !slices.ContainsFunc(p.allowed, func(a string) bool { return PathWithin(source, a) }) {
		return &RefusedError{Source: source, kind: refusedStrict}
	}
	return nil
}

// excepted reports whether source is equal to or under an exception
// that matches the container.
func (p *Policy) excepted(source string, c Context) bool {
	elems := pathElems(source)
	for _, pat := range p.exceptions {
		if len(elems) >= len(pat) && patternMatches(pat, elems[:len(pat)], c) {
			return true
		}
	}
	return false
}

func patternMatches(pat, elems []string, c Context) bool {
	for i, pe := range pat {
		var ok bool
		switch pe {
		case exceptionAny:
			ok = true // a clean path has no empty, "." or ".." elements
		case exceptionID:
			// An empty or odd ID ("..", "a/b") never equals an element.
			ok = c.ContainerID != "" && elems[i] == c.ContainerID ||
				elems[i] != "" && slices.Contains(c.Joined, elems[i])
		case exceptionSandbox:
			ok = c.SandboxID != "" && elems[i] == c.SandboxID
		default:
			ok = elems[i] == pe
		}
		if !ok {
			return false
		}
	}
	return true
}

func (p *Policy) checkSocketImage(source string, img *Image) error {
	if img == nil || (img.ID == "" && len(img.Names) == 0) {
		return &RefusedError{Source: source, kind: refusedSocketUnknown}
	}
	for _, e := range p.images {
		if e.matches(img) {
			return nil
		}
	}
	name := img.ID
	if len(img.Names) > 0 {
		name = img.Names[0]
	}
	return &RefusedError{Source: source, kind: refusedSocketImage, image: name}
}

// imageEntry is one entry of SocketImages: an ID (prefix) or a
// normalised reference.
type imageEntry struct {
	idPrefix string // lower-case hex digits, 12 to 64 of them
	ref      imageRef
}

// imageRef is a reference normalised the way docker does:
// "busybox" is docker.io/library/busybox:latest.
type imageRef struct {
	repo, tag, digest string
}

func parseImageEntry(s string) (imageEntry, bool) {
	if h, ok := idHex(s); ok {
		return imageEntry{idPrefix: h}, true
	}
	if strings.HasPrefix(s, "sha256:") {
		return imageEntry{}, false // an ID that is not one
	}
	r, ok := parseImageRef(s)
	return imageEntry{ref: r}, ok
}

// idHex returns the hex digits of s if s is an image ID or a prefix of
// one: 12 to 64 hex digits, optionally after "sha256:".
func idHex(s string) (string, bool) {
	h := strings.ToLower(strings.TrimPrefix(s, "sha256:"))
	if len(h) < 12 || len(h) > 64 {
		return "", false
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return h, true
}

// parseImageRef normalises a reference as docker does, by hand: docker's
// reference library compiles its regular expressions when the package is
// initialised, which cost every moat process (twice per container: moat
// and the container's init) about 3 ms. name[:tag][@digest], where a name
// without a registry is on docker.io and a one-element docker.io name is
// in library/. A name with neither tag nor digest is ":latest".
func parseImageRef(s string) (imageRef, bool) {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return imageRef{}, false
	}
	name, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest && digest == "" {
		return imageRef{}, false
	}
	var tag string
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
		if tag == "" {
			return imageRef{}, false
		}
	}
	if name == "" {
		return imageRef{}, false
	}
	domain, path := "docker.io", name
	// Like docker: the first element is a registry if it has a dot or a
	// port, is localhost, or has upper case (which a repository cannot).
	if first, rest, ok := strings.Cut(name, "/"); ok &&
		(strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first) {
		domain, path = first, rest
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	if domain == "docker.io" && !strings.Contains(path, "/") {
		path = "library/" + path
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	return imageRef{repo: domain + "/" + path, tag: tag, digest: digest}, true
}

// matches reports whether img is the image the entry allows. Names that
// look like IDs are ignored, so that a repository called "sha256" cannot
// pass for an allowed ID.
func (e imageEntry) matches(img *Image) bool {
	if e.idPrefix != "" {
		h, ok := idHex(img.ID)
		return ok && len(h) == 64 && strings.HasPrefix(h, e.idPrefix)
	}
	for _, n := range img.Names {
		if _, isID := idHex(n); isID || strings.HasPrefix(n, "sha256:") {
			continue
		}
		r, ok := parseImageRef(n)
		if !ok || r.repo != e.ref.repo {
			continue
		}
		if e.ref.digest != "" {
			// A digest pins the content; the tag beside it says nothing.
			if r.digest == e.ref.digest {
				return true
			}
			continue
		}
		if r.tag != "" && r.tag == e.ref.tag {
			return true
		}
	}
	return false
}
