// Package argocdtest provides Argo CD's Application CRD to tests and the demo that start a real
// kube-apiserver (envtest), without importing Argo CD.
package argocdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Module is the Argo CD release whose Application CRD is installed. It is downloaded (from the
// module cache or the proxy), never imported.
const Module = "github.com/argoproj/argo-cd/v2@v2.14.21"

// ApplicationCRD downloads Module if needed and returns the path of its Application CRD manifest.
func ApplicationCRD(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s (for its Application CRD): %w", Module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s printed no directory", Module)
	}
	path := filepath.Join(mod.Dir, "manifests", "crds", "application-crd.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s has no Application CRD: %w", Module, err)
	}
	return path, nil
}
