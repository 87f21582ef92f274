package detect

import (
	"fmt"

	"github.com/distribution/reference"

	"github.com/doraflow/doraflow/pkg/events"
)

// ParseImage splits a container image reference by the OCI distribution grammar
// [host[:port]/]path[:tag][@digest] (argocd.md §6), with github.com/distribution/reference:
//   - a first path component is a registry only if it contains '.' or ':' or is localhost, so
//     registry.local:5000/org/app has no tag and 5000 is a port;
//   - the tag is after the last ':' of the last path segment, before any '@digest';
//   - short Docker Hub names are expanded: nginx is docker.io/library/nginx.
//
// Repository is the registry host and path; Tag and Digest are empty when absent (no implicit
// "latest" is invented).
func ParseImage(ref string) (events.Image, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return events.Image{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	img := events.Image{Ref: ref, Repository: named.Name()}
	if t, ok := named.(reference.Tagged); ok {
		img.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		img.Digest = d.Digest().String()
	}
	return img, nil
}
