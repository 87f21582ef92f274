// Enricher joins observed deployments with the exact set of commits they shipped (from GitHub) and
// the teams that own them, links incidents to the deployments that may have caused them, and
// publishes the enriched events, each once.
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
	service.Exit("enricher", err) // status 2 for configuration errors
}

// run is the whole service; tests call it directly with their own context, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var creds credentials
	return service.Run(ctx, service.Spec[rules]{
		Name:          "enricher",
		Version:       version,
		DefaultConfig: defaultRules,
		Env:           creds.read,
		Streams:       []string{events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter},
		Start: func(ctx context.Context, d *service.Deps[rules]) error {
			return start(ctx, d, creds)
		},
	}, args, getenv, stdout)
}
