// Argocd-watcher watches Argo CD Applications and publishes a DeploymentObserved for every real
// deployment (a new status.history entry or a failed sync), and a ChangeFailureSignal for rollbacks and
// post-deploy degradation, exactly once per event.
package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/pkg/events"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	service.Exit("argocd-watcher", err) // status 2 for configuration errors
}

// watcherFlags are the watcher's own flags and environment. Go's flag package accepts -name and
// --name alike, so the seed's -kubeconfig and -namespace keep working.
type watcherFlags struct {
	kubeconfig    string
	envKubeconfig string
	context       string
	namespaces    string
	backfill      bool
}

func (f *watcherFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` of the Argo CD cluster (default: $KUBECONFIG, else in-cluster)")
	fs.StringVar(&f.context, "context", "", "kubeconfig `context` to use (default: the file's current context)")
	fs.StringVar(&f.namespaces, "namespace", "", "comma-separated `namespaces` to watch, overriding argocd.namespaces (the seed's flag)")
	fs.BoolVar(&f.backfill, "backfill", false, "emit the existing history of Applications seen for the first time (marked backfill)")
}

// run is the whole service; tests call it directly with their own context, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	f := &watcherFlags{}
	return service.Run(ctx, service.Spec[rules]{
		Name:          "argocd-watcher",
		Version:       version,
		DefaultConfig: defaultRules,
		Flags:         f.register,
		Env: func(env *config.Env) {
			f.envKubeconfig = env.String("KUBECONFIG", "", "kubeconfig file of the Argo CD cluster, when --kubeconfig is not given")
		},
		Streams: []string{events.StreamRaw, events.StreamDeadLetter},
		Start:   func(ctx context.Context, d *service.Deps[rules]) error { return start(ctx, d, f) },
	}, args, getenv, stdout)
}
