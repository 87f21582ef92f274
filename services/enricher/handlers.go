package main

import (
	"context"

	"github.com/doraflow/doraflow/internal/service"
)

// start wires the enricher. Enrichment arrives with the enricher issue; until then the service runs
// its ops endpoints and reports its routing.
func start(_ context.Context, d *service.Deps[rules]) error {
	d.Log.Info().Str("global_project", d.Config.Integration.Devlake.ProjectID).
		Int("teams", len(d.Config.Integration.Devlake.Teams)).
		Msg("enrichment is configured but not implemented in this build")
	return nil
}
