package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

type testConfig struct {
	Metrics struct {
		Benchmark string `yaml:"benchmark"`
	} `yaml:"metrics"`
}

func (c *testConfig) Validate() error {
	if c.Metrics.Benchmark == "" {
		return errors.New("metrics.benchmark: required")
	}
	return nil
}

// relay is a minimal service: it enriches every observed deployment by republishing it as enriched.
func relay(handled *atomic.Int32, extraEnv func(*config.Env)) RunFunc {
	return func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
		return Run(ctx, Spec[testConfig]{
			Name:    "relay",
			Version: "test",
			DefaultConfig: func() testConfig {
				var c testConfig
				c.Metrics.Benchmark = "dora2023"
				return c
			},
			Env:     extraEnv,
			Streams: []string{events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter},
			Start: func(ctx context.Context, d *Deps[testConfig]) error {
				d.Router.Add(messaging.Handler{Name: "relay-deployment-on-observed", Stream: events.StreamRaw,
					Subject: events.SubjectDeploymentObserved},
					messaging.Handle(func(ctx context.Context, in events.DeploymentObserved) error {
						handled.Add(1)
						out := events.DeploymentEnriched{DeploymentObserved: in,
							Routing: events.Routing{Targets: []events.Target{{Scope: events.ScopeGlobal, ProjectID: "1"}}}}
						return d.Publisher.Publish(ctx, out)
					}))
				return nil
			},
		}, args, getenv, stdout)
	}
}

// RunFunc matches servicetest.RunFunc.
type RunFunc = servicetest.RunFunc

func deployment(n int) events.DeploymentObserved {
	return events.DeploymentObserved{ID: events.DeploymentID("hub", "uid", int64(n)), Source: "argocd",
		Application: "app", Component: "app", Environment: events.EnvironmentProduction, Kind: events.KindDeploy,
		Result: events.ResultSuccess, FinishedAt: time.Date(2026, 3, 10, 14, 0, n, 0, time.UTC)}
}

func TestRunWiresHandlersAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	var handled atomic.Int32
	s := servicetest.Start(t, relay(&handled, nil), map[string]string{"NATS_URL": srv.URL()})
	servicetest.AssertStandardEndpoints(t, s, "relay")

	nc, js := srv.Connect()
	pub, err := messaging.NewPublisher(nc, "test", s.Logs.Logger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 3; n++ {
		if err := pub.Publish(t.Context(), deployment(n)); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 10*time.Second, func() error {
		st, err := js.Stream(t.Context(), events.StreamEnriched)
		if err != nil {
			return err
		}
		info, err := st.Info(t.Context())
		if err != nil {
			return err
		}
		if info.State.Msgs != 3 {
			return fmt.Errorf("%d enriched messages, want 3", info.State.Msgs)
		}
		return nil
	})
	// The enriched event carries the observed event's ID as its correlation ID.
	st, _ := js.Stream(t.Context(), events.StreamEnriched)
	m, err := st.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Header.Get(events.HeaderCorrelationID), deployment(1).ID; got != want {
		t.Errorf("correlation id = %q, want %q", got, want)
	}
	if got := m.Header.Get(events.HeaderSource); got != "/doraflow/relay" {
		t.Errorf("source = %q", got)
	}
	code, body := s.Get(t, "/metrics")
	if code != 200 || !strings.Contains(body, `doraflow_messaging_messages_handled_total{handler="relay-relay-deployment-on-observed",result="ok"} 3`) {
		t.Errorf("/metrics lacks the handled count:\n%.2000s", body)
	}
	s.Stop(t)
	if handled.Load() != 3 {
		t.Errorf("handled %d, want 3", handled.Load())
	}
}

func TestReadinessFollowsNATS(t *testing.T) {
	srv := natstest.Start(t)
	var handled atomic.Int32
	s := servicetest.Start(t, relay(&handled, nil), map[string]string{"NATS_URL": srv.URL()})

	srv.Shutdown()
	srv.WaitForShutdown()
	wait.For(t, 10*time.Second, func() error {
		code, body := s.Get(t, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "nats:") {
			return fmt.Errorf("/readyz = %d %q while NATS is down", code, body)
		}
		return nil
	})
	if code, _ := s.Get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d while NATS is down; liveness must not depend on NATS", code)
	}
	srv.Restart()
	wait.For(t, 15*time.Second, func() error {
		if code, body := s.Get(t, "/readyz"); code != 200 {
			return fmt.Errorf("/readyz = %d %q after NATS came back", code, body)
		}
		return nil
	})
	s.Stop(t)
}

func TestRunReportsEveryEnvironmentProblemBeforeConnecting(t *testing.T) {
	var handled atomic.Int32
	run := relay(&handled, func(e *config.Env) { e.Secret("GITHUB_TOKEN", true, "GitHub token") })
	env := map[string]string{"JETSTREAM_REPLICAS": "0", "OPS_ADDR": "127.0.0.1:0", "NATS_URL": "nats://127.0.0.1:1"}
	var out bytes.Buffer
	err := run(t.Context(), nil, func(k string) string { return env[k] }, &out)
	if err == nil {
		t.Fatal("run with a bad environment succeeded")
	}
	for _, want := range []string{`JETSTREAM_REPLICAS="0" is not an integer from 1 to 5`, "GITHUB_TOKEN or GITHUB_TOKEN_FILE is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error misses %q: %v", want, err)
		}
	}
}

func TestCheckConfigAndVersionNeedNothing(t *testing.T) {
	var handled atomic.Int32
	run := relay(&handled, func(e *config.Env) { e.Secret("GITHUB_TOKEN", true, "GitHub token") })
	servicetest.AssertVersion(t, run, "relay")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("--help = %v", err)
	}
	for _, want := range []string{"-check-config", "NATS_URL (default nats://127.0.0.1:4222)", "GITHUB_TOKEN (required)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help misses %q:\n%s", want, out.String())
		}
	}
}
