package main

import (
	"context"

	"github.com/doraflow/doraflow/internal/service"
)

// start wires the poller. Polling arrives with the webrca-poller issue; until then the service runs
// its ops endpoints and says what it would poll.
func start(_ context.Context, d *service.Deps[rules]) error {
	if !d.Config.Webrca.Enabled {
		d.Log.Info().Msg("WebRCA polling is disabled (webrca.enabled: false); nothing to do")
		return nil
	}
	d.Log.Info().Str("base_url", d.Config.Webrca.BaseURL).Dur("interval", d.Config.Webrca.Interval).
		Msg("WebRCA polling is configured but not implemented in this build")
	return nil
}
