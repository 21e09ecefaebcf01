package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestImageOf(t *testing.T) {
	const (
		dind  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		other = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	)
	root := t.TempDir()
	write := func(path, data string) {
		t.Helper()
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("containers/c1/config.v2.json", `{"ID":"c1","Image":"`+dind+`","Config":{"Image":"docker:dind"}}`)
	write("containers/c2/config.v2.json", `{"ID":"c2","Image":"`+other+`","Config":{"Image":"busybox"}}`)
	write("containers/bad/config.v2.json", `{`)
	write("image/overlay2/repositories.json", `{"Repositories":{
		"docker":{"docker:dind":"`+dind+`","docker@sha256:abcd":"`+dind+`","docker:cli":"`+other+`"},
		"moat/dind":{"moat/dind:1":"`+dind+`"}}}`)
	cri := &specs.Spec{Annotations: map[string]string{CRIImageName: "docker.io/library/docker:dind"}}
	tests := []struct {
		name    string
		spec    *specs.Spec
		id      string
		want    *Image
		wantErr bool
	}{
		{"docker, all names of the ID", &specs.Spec{}, "c1", &Image{ID: dind, Names: []string{"docker:dind", "docker:dind", "docker@sha256:abcd", "moat/dind:1"}}, false},
		{"docker, name as run", &specs.Spec{}, "c2", &Image{ID: other, Names: []string{"busybox", "docker:cli"}}, false},
		{"docker wins over an annotation", cri, "c2", &Image{ID: other, Names: []string{"busybox", "docker:cli"}}, false},
		{"cri annotation", cri, "pod-ctr", &Image{Names: []string{"docker.io/library/docker:dind"}}, false},
		{"unknown", &specs.Spec{}, "nothing", nil, false},
		{"broken config", &specs.Spec{}, "bad", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImageOf(tt.spec, tt.id, root)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %t", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
