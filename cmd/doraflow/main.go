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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(os.Stderr, "doraflow: %v\n", err)
		}
		os.Exit(1)
	}
}

// errReported is returned by a command that has already printed its problems (check-config): the
// exit status is 1, and nothing is printed again.
var errReported = errors.New("problems reported")

const usage = `doraflow — operate a doraflow pipeline

Usage:
  doraflow status                       streams, consumers (pending, redelivered) and dead letters
  doraflow dlq list [flags]             dead-lettered messages with their reasons
  doraflow dlq replay [flags]           republish dead letters to their original subjects
  doraflow backfill --instance NAME     ask argocd-watcher to emit an instance's history again
  doraflow dora [flags]                 the DORA table per team, from the metrics exporter
  doraflow check-config FILE            validate every service's section of a config file at once
  doraflow local [flags]                the whole pipeline on an embedded NATS server
  doraflow demo [flags]                 the pipeline fed by a simulated world, then its DORA table
  doraflow version

Finding the pipeline: NATS_URL (and the other NATS_* variables the services use: NATS_USER/
NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE, NATS_CREDS_FILE, NATS_TLS_*) wins; without it,
the state file that a running "doraflow local" or "doraflow demo" writes (` + stateFileHelp + `);
else nats://127.0.0.1:4222. "doraflow dora" finds the exporter the same way (--exporter wins).

Run "doraflow <command> --help" for a command's description, flags and examples.
`

// run dispatches a command; tests call it directly. Results go to stdout; notes that are not the
// result (a stale state file ignored) go to stderr, so --json output stays parseable.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // --help: the usage was printed
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("a command is required")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	p := pipeline{getenv: getenv, stderr: stderr}
	switch cmd {
	case "version", "--version":
		fmt.Fprintf(stdout, "doraflow %s\n", version)
		return nil
	case "status":
		return status(ctx, rest, p, stdout)
	case "dlq":
		return dlq(ctx, rest, p, stdout)
	case "dora":
		return dora(ctx, rest, p, stdout)
	case "backfill":
		return backfill(ctx, rest, p, stdout)
	case "check-config":
		return checkConfig(ctx, rest, stdout)
	case "local":
		return local(ctx, rest, getenv, stdout)
	case "demo":
		return demo(ctx, rest, getenv, stdout)
	default:
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// withNATS connects with the services' NATS settings (the URL from NATS_URL, else the state file
// of a running local pipeline) and calls fn.
func (p pipeline) withNATS(ctx context.Context, fn func(nc *nats.Conn, js jetstream.JetStream) error) error {
	url, from := p.natsURL()
	env := config.NewEnv(func(k string) string {
		if k == "NATS_URL" {
			return url
		}
		return p.getenv(k)
	})
	settings := messaging.SettingsFromEnv(env, "doraflow-cli")
	if err := env.Err(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nc, err := messaging.Connect(cctx, settings, zerolog.Nop())
	if err != nil {
		return fmt.Errorf("%w (NATS URL %s)", err, from)
	}
	defer drain(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return fn(nc, js)
}

func drain(nc *nats.Conn) {
	if err := nc.Drain(); err != nil {
		nc.Close()
	}
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }
