// Metrics-exporter computes the five DORA metrics from the enriched event history and serves them to
// Prometheus on /metrics.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/pkg/events"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	service.Exit("metrics-exporter", err) // status 2 for configuration errors
}

// run is the whole service; tests call it directly with their own context, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return service.Run(ctx, service.Spec[rules]{
		Name:          "metrics-exporter",
		Version:       version,
		DefaultConfig: defaultRules,
		Streams:       []string{events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter},
		Start:         start,
	}, args, getenv, stdout)
}
