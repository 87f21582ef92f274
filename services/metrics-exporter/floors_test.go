package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

// publish publishes evs as the test producer, logging to s.
func publish(t *testing.T, nc *nats.Conn, s *servicetest.Service, evs ...events.Event) {
	t.Helper()
	pub, err := messaging.NewPublisher(nc, "test", s.Logs.Logger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if err := pub.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// counters keeps the counter and histogram series of a scrape.
func counters(want exposition, values map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range values {
		if want.counter(k) {
			out[k] = v
		}
	}
	return out
}

// TestRetentionKeepsTotals: the exporter rebuilds the golden scenario from the streams, stops
// (saving its counter floors in KV), the stream's oldest messages are deleted as retention would,
// and the restarted exporter serves the same totals: no counter or histogram series is lower than
// before, and the series held above their exact value are counted.
func TestRetentionKeepsTotals(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect()
	env := map[string]string{"NATS_URL": srv.URL(), "LOG_LEVEL": "info"}
	args := []string{"--config", "testdata/config/valid-scenario.yaml"}
	s := servicetest.Start(t, run, env, args...) // creates the streams
	s.Stop(t)
	// Published before the exporter starts, the scenario is rebuilt by replay: labels follow the
	// whole history (live, they are fixed in arrival order; dora.TestCountersNeverGoDown).
	publish(t, nc, s, doratest.Scenario()...)
	s = servicetest.Start(t, run, env, args...)
	want := readExposition(t, goldenScenario)
	wait.For(t, 10*time.Second, func() error {
		if diff := cmp.Diff(want.values, scrape(t, s, want)); diff != "" {
			return fmt.Errorf("exposition differs from %s (-want +got):\n%s", goldenScenario, diff)
		}
		return nil
	})
	before := counters(want, scrape(t, s, want))
	s.Stop(t)

	stream, err := js.Stream(t.Context(), events.StreamEnriched)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(t.Context(), jetstream.WithPurgeSequence(8)); err != nil { // the 7 oldest: retention expired them
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != 8 {
		t.Fatalf("stream starts at %d after the purge, want 8", info.State.FirstSeq)
	}

	s = servicetest.Start(t, run, env, args...)
	code, body := s.Get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics answered %d", code)
	}
	after := counters(want, parseExposition(t, body, &want).values)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("totals changed across the restart after retention (-before +after):\n%s", diff)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	held := parseExposition(t, body, nil).values["doraflow_metrics_exporter_series_held"]
	if held == 0 {
		t.Errorf("no series held above its exact value, though history was deleted")
	}
	// The exact values moved: the windowed gauges count only what the stream still holds.
	if got := parseExposition(t, body, nil).values[`dora_window_deployments{component="",environment="production",scope="organization",team="",window="90d"}`]; got >= 14 {
		t.Errorf("dora_window_deployments (90d) = %v, want fewer than before the purge", got)
	}
	s.Stop(t)
}

// TestInferredChangeFailuresAreRead: the enricher's inferred reverts (DORAFLOW_ENRICHED) are
// replayed and followed like signals, and the rebuild waits for their subject too.
func TestInferredChangeFailuresAreRead(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect()
	env := map[string]string{"NATS_URL": srv.URL()}
	args := []string{"--config", "testdata/config/valid-scenario.yaml"}
	s := servicetest.Start(t, run, env, args...)
	publish(t, nc, s, doratest.L1.Event(), doratest.L2.Event(), doratest.Inferred(doratest.L1, doratest.L2.Finished, doratest.L2.ID()))
	lines := []string{
		`dora_change_failures_total{component="login",detection="revert",environment="production",team="identity"} 1`,
		`dora_rework_deployments_total{component="login",environment="production",reason="revert",team="identity"} 1`,
		`doraflow_metrics_exporter_events_total{result="applied",subject="doraflow.enricher.changefailure.inferred"} 1`,
	}
	check := func(s *servicetest.Service) error {
		_, body := s.Get(t, "/metrics")
		for _, l := range lines {
			if !strings.Contains(body, l) {
				return fmt.Errorf("/metrics lacks %s", l)
			}
		}
		return nil
	}
	wait.For(t, 10*time.Second, func() error { return check(s) })
	s.Stop(t)
	s = servicetest.Start(t, run, env, args...) // ready only once the inferred subject was replayed too
	if err := check(s); err != nil {
		t.Error(err)
	}
	s.Stop(t)
}

// TestNoDoraSeriesWhileRebuilding scrapes /metrics as fast as it can while the exporter replays
// 2,000 deployments: every scrape carries either no dora_* series at all or the complete total,
// never a partial one that Prometheus would read as a counter reset.
func TestNoDoraSeriesWhileRebuilding(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect()
	env := map[string]string{"NATS_URL": srv.URL(), "LOG_LEVEL": "info"}
	args := []string{"--config", "testdata/config/valid-scenario.yaml"}
	s := servicetest.Start(t, run, env, args...)
	s.Stop(t)
	const n = 2000
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = doratest.Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: events.EnvironmentProduction,
			History: int64(100 + i), Finished: doratest.Mar(1, 0, 0).Add(time.Duration(i) * time.Minute)}.Event()
	}
	publish(t, nc, s, evs...)

	addr := servicetest.FreeAddr(t)
	vars := map[string]string{"NATS_URL": srv.URL(), "LOG_LEVEL": "info", "OPS_ADDR": addr}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(k string) string { return vars[k] }, io.Discard) }()
	series := `dora_deployments_total{component="checkout-api",environment="production",kind="deploy",result="success",team="payments"}`
	var empty, full int
	wait.For(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body := string(b)
		switch v, ok := parseExposition(t, body, nil).values[series]; {
		case !ok && !strings.Contains(body, "\ndora_"):
			empty++
		case ok && v == n:
			full++
			return nil
		default:
			t.Fatalf("a scrape during the rebuild served %s = %v (present %v), want nothing or %d", series, v, ok, n)
		}
		return fmt.Errorf("still rebuilding")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d scrapes while rebuilding served no dora_* series, then the total", empty)
}
