package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Reference is an image name as Docker resolves it: a short name like
// "busybox" means "docker.io/library/busybox:latest".
type Reference struct {
	// Registry is the registry host ("docker.io" for Docker Hub).
	Registry string
	// Repository is the full repository name, registry included
	// ("docker.io/library/busybox").
	Repository string
	// Tag and Digest: exactly one is set.
	Tag    string
	Digest string
}

// ParseReference parses and normalizes an image reference.
func ParseReference(s string) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("invalid reference format: empty name")
	}
	if strings.HasPrefix(s, "sha256:") {
		return Reference{}, fmt.Errorf("invalid reference format: %q is an ID, not a name", s)
	}
	ref, err := name.ParseReference(s, name.WithDefaultRegistry("docker.io"))
	if err != nil {
		return Reference{}, fmt.Errorf("invalid reference format %q: %w", s, err)
	}
	reg := ref.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	r := Reference{Registry: reg, Repository: reg + "/" + ref.Context().RepositoryStr()}
	switch v := ref.(type) {
	case name.Tag:
		r.Tag = v.TagStr()
	case name.Digest:
		r.Digest = v.DigestStr()
	}
	return r, nil
}

// String is the full form, "docker.io/library/busybox:latest".
func (r Reference) String() string {
	if r.Digest != "" {
		return r.Repository + "@" + r.Digest
	}
	return r.Repository + ":" + r.Tag
}

// FamiliarRepository is the repository as Docker prints it
// ("busybox", "user/app", "example.com/app").
func (r Reference) FamiliarRepository() string {
	repo := r.Repository
	if rest, ok := strings.CutPrefix(repo, "docker.io/"); ok {
		repo = strings.TrimPrefix(rest, "library/")
	}
	return repo
}

// Familiar is the reference as Docker prints it ("busybox:latest").
func (r Reference) Familiar() string {
	if r.Digest != "" {
		return r.FamiliarRepository() + "@" + r.Digest
	}
	return r.FamiliarRepository() + ":" + r.Tag
}

// Familiar turns a stored full reference into Docker's short form; a
// string that does not parse is returned as it is.
func Familiar(full string) string {
	r, err := ParseReference(full)
	if err != nil {
		return full
	}
	return r.Familiar()
}

// remoteName is the reference as go-containerregistry wants it (Docker Hub
// as index.docker.io).
func (r Reference) remoteName(insecure bool) (name.Reference, error) {
	opts := []name.Option{name.WithDefaultRegistry("index.docker.io")}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	s := r.String()
	if r.Registry == "docker.io" {
		s = strings.Replace(s, "docker.io/", "index.docker.io/", 1)
	}
	return name.ParseReference(s, opts...)
}
