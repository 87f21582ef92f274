package main

import (
	"context"

	"github.com/doraflow/doraflow/internal/service"
)

// start wires the exporter. The DORA state and collector arrive with the metrics-exporter issue;
// until then the service serves its operational metrics.
func start(_ context.Context, d *service.Deps[rules]) error {
	d.Log.Info().Str("benchmark", d.Config.Metrics.Benchmark).
		Msg("DORA metrics are configured but not implemented in this build")
	return nil
}
