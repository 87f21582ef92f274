// Package service runs what every doraflow binary shares: the standard flags (--config,
// --check-config, --version), environment settings, the logger, the ops server, the NATS connection
// and JetStream topology, the message router, and a graceful shutdown in reverse order.
//
// A service's run function fills in a Spec and calls Run; its Start hook registers handlers and
// background loops on the Deps it is given.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/opsserver"
)

// Spec describes one service.
type Spec[C any] struct {
	Name    string
	Version string
	// DefaultConfig returns the built-in configuration; YAML from --config is decoded over it.
	DefaultConfig func() C
	// Flags registers service-specific flags.
	Flags func(fs *flag.FlagSet)
	// Env reads service-specific environment settings. Problems it records are reported together
	// with the shared ones, before anything connects.
	Env func(env *config.Env)
	// Check validates the loaded configuration against the environment (for example: a source that
	// is enabled but has no credentials). It runs before anything connects, so such a mistake fails
	// at once instead of after the NATS connection is up.
	Check func(cfg C) error
	// Streams are provisioned at start (events.Stream*).
	Streams []string
	// Start wires handlers and background loops. It runs after NATS is connected and the streams
	// exist, and before the router starts.
	Start func(ctx context.Context, d *Deps[C]) error
	// ShutdownGrace bounds the drain of the NATS connection after the router stopped (default 2s).
	ShutdownGrace time.Duration
}

// Deps are what Start gets to wire a service.
type Deps[C any] struct {
	Config    C
	Log       zerolog.Logger
	NATS      *nats.Conn
	JS        jetstream.JetStream
	Topology  messaging.Topology
	Publisher *messaging.Publisher
	Router    *messaging.Router
	Registry  *prometheus.Registry
	Checks    *opsserver.Checks
	// Stdout is where the service writes logs; demos and CLIs may print there too.
	Stdout io.Writer

	loops []func(context.Context) error
}

// Go runs fn in the service's errgroup: ctx is cancelled at shutdown, and fn must then return nil.
// An error from fn stops the whole service.
func (d *Deps[C]) Go(fn func(ctx context.Context) error) { d.loops = append(d.loops, fn) }

// Run runs a service until ctx is cancelled (SIGTERM, Ctrl-C) or a part fails. --help, --version and
// --check-config return without connecting to anything.
func Run[C any](ctx context.Context, spec Spec[C], args []string, getenv func(string) string, stdout io.Writer) error {
	started := time.Now()
	env := config.NewEnv(getenv)
	logLevel := env.String("LOG_LEVEL", "info", "log level: trace, debug, info, warn or error")
	opsAddr := env.String("OPS_ADDR", ":8081", "listen address of /healthz, /readyz, /metrics and /")
	pprofAddr := env.String("PPROF_ADDR", "", "listen address of /debug/pprof/ (Go profiles, which hold secrets): empty serves none; use a loopback address such as 127.0.0.1:6060 and kubectl port-forward")
	natsSettings := messaging.SettingsFromEnv(env, spec.Name)
	topology := messaging.TopologyFromEnv(env)
	if spec.Env != nil {
		spec.Env(env)
	}

	flags, err := config.ParseFlags(spec.Name, args, stdout, env.Documented, spec.Flags)
	if errors.Is(err, config.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if flags.Version {
		fmt.Fprintf(stdout, "%s %s %s\n", spec.Name, spec.Version, runtime.Version())
		return nil
	}
	if flags.CheckConfig != "" {
		return checkConfig(flags.CheckConfig, spec.DefaultConfig(), stdout)
	}
	if flags.Reference {
		return reference(spec.Name, env.Documented, spec.DefaultConfig(), stdout)
	}

	// Every problem of the file and of the environment is reported together, in one error.
	cfg := spec.DefaultConfig()
	var problems []error
	if flags.ConfigPath != "" {
		if err := config.LoadFile(flags.ConfigPath, &cfg); err != nil {
			var inv *config.InvalidError
			if !errors.As(err, &inv) {
				return err // unreadable: nothing to check
			}
			problems = append(problems, fmt.Errorf("%s: %w", flags.ConfigPath, inv.Err))
		}
	} else if v, ok := any(&cfg).(config.Validator); ok {
		if err := v.Validate(); err != nil {
			problems = append(problems, fmt.Errorf("built-in configuration: %w", err))
		}
	}
	if err := env.Err(); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return &config.InvalidError{Err: errors.Join(problems...)}
	}
	if spec.Check != nil {
		if err := spec.Check(cfg); err != nil {
			return err
		}
	}
	log, err := logging.New(stdout, logLevel, spec.Name, spec.Version)
	if err != nil {
		return err
	}
	log.Info().Str("config", flags.ConfigPath).Str("ops_addr", opsAddr).Msg("starting")

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "doraflow_build_info",
		Help: "Build information of the running doraflow service; always 1.",
	}, []string{"service", "version", "goversion"})
	buildInfo.WithLabelValues(spec.Name, spec.Version, runtime.Version()).Set(1)
	reg.MustRegister(buildInfo)

	checks := &opsserver.Checks{}
	var startupDone atomic.Bool
	checks.Add("startup", func(context.Context) error {
		if !startupDone.Load() {
			return errors.New("starting")
		}
		return nil
	})
	ops := opsserver.New(opsserver.Options{Addr: opsAddr, Service: spec.Name, Version: spec.Version,
		Registry: reg, Checks: checks, Started: started, PprofAddr: pprofAddr})

	g, gctx := errgroup.WithContext(ctx)
	// The ops server comes up first, so /healthz answers (and /readyz says why not ready) while the
	// service waits for NATS.
	g.Go(func() error { return ops.Serve(gctx) })

	var nc *nats.Conn
	startErr := func() error {
		var err error
		nc, err = messaging.Connect(gctx, natsSettings, log)
		if err != nil {
			return err
		}
		checks.Add("nats", func(context.Context) error {
			if !nc.IsConnected() {
				return fmt.Errorf("NATS connection %s", nc.Status())
			}
			return nil
		})
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("JetStream: %w", err)
		}
		if err := topology.EnsureStreams(gctx, js, spec.Streams...); err != nil {
			return err
		}
		m := messaging.NewMetrics(reg)
		pub, err := messaging.NewPublisher(nc, spec.Name, log, m)
		if err != nil {
			return err
		}
		router, err := messaging.NewRouter(messaging.RouterConfig{Service: spec.Name, Replicas: topology.Replicas}, js, log, m)
		if err != nil {
			return err
		}
		checks.Add("router", router.Ready)
		d := &Deps[C]{Config: cfg, Log: log, NATS: nc, JS: js, Topology: topology, Publisher: pub,
			Router: router, Registry: reg, Checks: checks, Stdout: stdout}
		if spec.Start != nil {
			if err := spec.Start(gctx, d); err != nil {
				return err
			}
		}
		// Cancelling Run's ctx would cut subscriptions at once; Close instead drains in-flight messages.
		g.Go(func() error { return router.Run(context.WithoutCancel(gctx)) })
		g.Go(func() error {
			<-gctx.Done()
			ops.Stopping()
			return router.Close()
		})
		for _, loop := range d.loops {
			g.Go(func() error { return loop(gctx) })
		}
		startupDone.Store(true)
		log.Info().Dur("took", time.Since(started)).Msg("started")
		return nil
	}()
	if startErr != nil {
		// Stop the ops server and anything already started, then report the cause.
		g.Go(func() error { return startErr })
	}
	err = g.Wait()
	if nc != nil {
		drainConn(nc, spec.ShutdownGrace, log)
	}
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // shutdown was asked for; a part noticing it is not a failure
	}
	if err != nil {
		log.Error().Err(err).Msg("stopped with error")
		return err
	}
	log.Info().Dur("uptime", time.Since(started)).Msg("stopped")
	return nil
}

// drainConn drains the main connection last: pending publishes are flushed, then it closes.
func drainConn(nc *nats.Conn, grace time.Duration, log zerolog.Logger) {
	if grace <= 0 {
		grace = 2 * time.Second
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(grace):
		log.Warn().Dur("grace", grace).Msg("NATS drain did not finish; closing")
		nc.Close()
	}
}

// Reference is what --config-reference prints: the service's environment variables and its
// built-in YAML configuration. docs/configuration.md is generated from it (test/e2e).
type Reference struct {
	Service  string          `json:"service"`
	Env      []config.EnvVar `json:"env"`
	Defaults map[string]any  `json:"defaults"`
}

func reference[C any](name string, env []config.EnvVar, cfg C, out io.Writer) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("marshal defaults: %w", err)
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(b, &defaults); err != nil {
		return fmt.Errorf("unmarshal defaults: %w", err)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(Reference{Service: name, Env: env, Defaults: defaults})
}

func checkConfig[C any](path string, cfg C, out io.Writer) error {
	if err := config.LoadFile(path, &cfg); err != nil {
		for _, p := range config.Each(err) {
			fmt.Fprintln(out, p)
		}
		return reported{err}
	}
	fmt.Fprintf(out, "%s: ok\n", path)
	return nil
}

// reported is an error whose problems were already printed (--check-config lists them on stdout),
// so ExitCode's caller does not print them again.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }

// Exit ends the process of a service whose run returned err. It prints err on stderr unless its
// problems were already printed, and exits with status 2 for a configuration error found at start
// (file and environment, every problem listed), 1 for --check-config problems and any other failure.
// A nil err returns.
func Exit(name string, err error) {
	if err == nil {
		return
	}
	var r reported
	if errors.As(err, &r) {
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	if errors.Is(err, config.ErrInvalid) {
		os.Exit(2)
	}
	os.Exit(1)
}
