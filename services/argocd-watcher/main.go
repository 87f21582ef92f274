// Argocd-watcher watches Argo CD Applications and publishes a DeploymentObserved for every real
// deployment (a new status.history entry or a failed sync), and a ChangeFailureSignal for rollbacks and
// post-deploy degradation, exactly once per event.
package main

import (
	"context"
	"fmt"
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
	if err != nil {
		fmt.Fprintf(os.Stderr, "argocd-watcher: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole service; tests call it directly with their own context, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return service.Run(ctx, service.Spec[rules]{
		Name:          "argocd-watcher",
		Version:       version,
		DefaultConfig: defaultRules,
		Streams:       []string{events.StreamRaw, events.StreamDeadLetter},
		Start:         start,
	}, args, getenv, stdout)
}
