package main

import (
	"context"

	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/internal/service"
)

// start wires the sink. Posting arrives with the devlake-sink issue; until then the service runs its
// ops endpoints and says where it would post.
func start(_ context.Context, d *service.Deps[rules]) error {
	if !d.Config.Integration.Devlake.Enabled {
		d.Log.Info().Msg("DevLake posting is disabled (integration.devlake.enabled: false); nothing to do")
		return nil
	}
	d.Log.Info().Str("base_url", logging.RedactURL(d.Config.Integration.Devlake.BaseURL)).
		Msg("DevLake posting is configured but not implemented in this build")
	return nil
}
