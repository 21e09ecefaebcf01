// Package engine owns what moat knows of the engines that drive it and
// reads without asking them: docker's files under its data root (a
// container's config.v2.json, the image reference store) and the
// annotations containerd's CRI plugin puts on a pod's containers.
package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations containerd's CRI plugin puts on a pod's containers.
const (
	// CRIImageName is the image reference the pod asked for.
	CRIImageName = "io.kubernetes.cri.image-name"
	// CRISandboxID is the ID of the pod's sandbox container.
	CRISandboxID = "io.kubernetes.cri.sandbox-id"
)

// Image is what the engines tell of a container's image.
type Image struct {
	// ID is the image ID, "sha256:" and 64 hex digits; "" if unknown.
	ID string
	// Names are the references known to point to the image.
	Names []string
}

// ImageOf establishes the image container id runs. config.json carries no
// image name, so it is read from what the engine wrote before create:
// docker's config.v2.json under its data root (never docker's API, since
// dockerd holds the container's lock during create), or containerd CRI's
// annotation. It returns nil when neither tells.
func ImageOf(spec *specs.Spec, id, dockerRoot string) (*Image, error) {
	img, err := dockerImage(dockerRoot, id)
	if err != nil || img != nil {
		return img, err
	}
	if name := spec.Annotations[CRIImageName]; name != "" {
		return &Image{Names: []string{name}}, nil
	}
	return nil, nil
}

// dockerImage reads <data-root>/containers/<id>/config.v2.json, and docker's
// reference store for the other names of the same image ID (tags and repo
// digests). It returns nil if id is not a docker container.
func dockerImage(root, id string) (*Image, error) {
	if root == "" {
		return nil, nil
	}
	path := filepath.Join(root, "containers", id, "config.v2.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read docker's container config: %w", err)
	}
	var c struct {
		Image  string
		Config struct{ Image string }
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("docker's container config %s: %w", path, err)
	}
	if c.Image == "" && c.Config.Image == "" {
		return nil, nil
	}
	img := &Image{ID: c.Image}
	if c.Config.Image != "" {
		img.Names = append(img.Names, c.Config.Image)
	}
	if c.Image == "" {
		return img, nil
	}
	// The store is per storage driver: image/<driver>/repositories.json.
	stores, _ := filepath.Glob(filepath.Join(root, "image", "*", "repositories.json"))
	for _, s := range stores {
		names, err := referencesTo(s, c.Image)
		if err != nil {
			return nil, err
		}
		img.Names = append(img.Names, names...)
	}
	return img, nil
}

// referencesTo lists the references in docker's reference store that point
// to image id.
func referencesTo(store, id string) ([]string, error) {
	data, err := os.ReadFile(store)
	if err != nil {
		return nil, fmt.Errorf("read docker's image references: %w", err)
	}
	var refs struct {
		Repositories map[string]map[string]string
	}
	if err := json.Unmarshal(data, &refs); err != nil {
		return nil, fmt.Errorf("docker's image references %s: %w", store, err)
	}
	var names []string
	for _, repo := range refs.Repositories {
		for ref, target := range repo {
			if target == id {
				names = append(names, ref)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
