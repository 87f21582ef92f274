package main

import (
	"context"

	"github.com/doraflow/doraflow/internal/service"
)

// start wires the watcher. Detection and the informer arrive with the argocd-watcher issue; until
// then the service runs its ops endpoints and says what it would watch.
func start(_ context.Context, d *service.Deps[rules]) error {
	if !d.Config.Argocd.Enabled {
		d.Log.Info().Msg("Argo CD watching is disabled (argocd.enabled: false); nothing to do")
		return nil
	}
	d.Log.Info().Str("instance", d.Config.Argocd.Instance).Strs("namespaces", d.Config.Argocd.Namespaces).
		Msg("Argo CD watching is configured but not implemented in this build")
	return nil
}
