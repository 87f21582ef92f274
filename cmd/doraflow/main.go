// Doraflow is the operator's command line for a running doraflow pipeline: it shows the state of
// streams and consumers, lists and replays dead letters, prints the DORA table the exporter
// serves, and runs the whole pipeline locally on an embedded NATS server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/messaging"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "doraflow: %v\n", err)
		os.Exit(1)
	}
}

const usage = `doraflow — operate a doraflow pipeline

Usage:
  doraflow status                       streams, consumers (pending, redelivered) and dead letters
  doraflow dlq list [flags]             dead-lettered messages with their reasons
  doraflow dlq replay [flags]           republish dead letters to their original subjects
  doraflow backfill --instance NAME     ask argocd-watcher to emit an instance's history again
  doraflow dora [flags]                 the DORA table, as the metrics exporter serves it
  doraflow local [flags]                the whole pipeline on an embedded NATS server
  doraflow demo [flags]                 the pipeline fed by a simulated world, then its DORA table
  doraflow version

NATS is reached with the same environment as the services: NATS_URL (default
nats://127.0.0.1:4222), NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE,
NATS_CREDS_FILE, NATS_TLS_*. Run "doraflow <command> --help" for a command's flags.
`

// run dispatches a command; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("a command is required")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintf(stdout, "doraflow %s\n", version)
		return nil
	case "status":
		return withNATS(ctx, getenv, func(js jetstream.JetStream) error { return status(ctx, js, stdout) })
	case "dlq":
		return dlq(ctx, rest, getenv, stdout)
	case "dora":
		return dora(ctx, rest, stdout)
	case "backfill":
		return backfill(ctx, rest, getenv, stdout)
	case "local":
		return local(ctx, rest, getenv, stdout)
	case "demo":
		return demo(ctx, rest, getenv, stdout)
	default:
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// withNATS connects with the services' NATS settings and calls fn.
func withNATS(ctx context.Context, getenv func(string) string, fn func(js jetstream.JetStream) error) error {
	env := config.NewEnv(getenv)
	settings := messaging.SettingsFromEnv(env, "doraflow-cli")
	if err := env.Err(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nc, err := messaging.Connect(cctx, settings, zerolog.Nop())
	if err != nil {
		return err
	}
	defer drain(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return fn(js)
}

func drain(nc *nats.Conn) {
	if err := nc.Drain(); err != nil {
		nc.Close()
	}
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }
