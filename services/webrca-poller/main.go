// Webrca-poller polls Red Hat's WebRCA incident API and publishes an IncidentObserved for every
// incident that was opened, updated, resolved or reopened since it last looked, once per change.
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
	service.Exit("webrca-poller", err) // status 2 for configuration errors
}

// run is the whole service; tests call it directly with their own context, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var creds credentials
	return service.Run(ctx, service.Spec[rules]{
		Name:          "webrca-poller",
		Version:       version,
		DefaultConfig: defaultRules,
		Env:           creds.read,
		Check: func(cfg rules) error {
			if cfg.Webrca.Enabled {
				return creds.missing()
			}
			return nil
		},
		Streams: []string{events.StreamRaw, events.StreamDeadLetter},
		Start: func(ctx context.Context, d *service.Deps[rules]) error {
			return start(ctx, d, creds)
		},
	}, args, getenv, stdout)
}
