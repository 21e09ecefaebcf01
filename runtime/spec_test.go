package runtime

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestLoadSpecErrors(t *testing.T) {
	tests := []struct {
		name    string
		config  *string // nil: no config.json
		bundle  string  // overrides the made bundle
		wantErr string
	}{
		{name: "missing bundle", bundle: "/nonexistent/moat-bundle", wantErr: "bundle /nonexistent/moat-bundle does not exist"},
		{name: "no config", wantErr: "has no config.json"},
		{name: "syntax", config: ptr("{\n\"process\": {\n}}}"), wantErr: "line 3"},
		{name: "type", config: ptr(`{"process": {"args": "sh"}}`), wantErr: "line 1"},
		{name: "no root", config: ptr(`{"process":{"args":["sh"],"cwd":"/"},"linux":{}}`), wantErr: "root.path is required"},
		{name: "no linux", config: ptr(`{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"}}`), wantErr: "linux section is required"},
		{name: "no process", config: ptr(`{"root":{"path":"r"},"linux":{}}`), wantErr: "process is required"},
		{name: "relative cwd", config: ptr(`{"process":{"args":["sh"],"cwd":"tmp"},"root":{"path":"r"},"linux":{}}`), wantErr: "must be an absolute path"},
		{name: "ok", config: ptr(`{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"linux":{}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != nil {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(*tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.bundle != "" {
				dir = tt.bundle
			}
			_, err := LoadSpec(dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to say %q", err, tt.wantErr)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"abc": true, "a.b-c_d+e": true, "4f2c9e": true,
		"...": true, "-": true,
		"": false, ".": false, "..": false, "../x": false, "a/b": false, "a b": false,
		"é": false, "a\x00b": false, "a\nb": false, "a:b": false,
	} {
		if err := checkID(id); (err == nil) != ok {
			t.Errorf("checkID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

// FuzzValidID holds the hand-written check to the rule it replaced.
func FuzzValidID(f *testing.F) {
	rule := regexp.MustCompile(`^[\w+\-.]+$`)
	for _, id := range []string{"abc", "a.b", "..", "a/b", "é", "a\n"} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := rule.MatchString(id) && id != "." && id != ".."
		if got := validID(id); got != want {
			t.Fatalf("validID(%q) = %v, want %v", id, got, want)
		}
	})
}
