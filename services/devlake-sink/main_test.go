package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

func TestRunServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL(), "DEVLAKE_WEBHOOK_TOKEN": "seed-token"},
		"--config", "testdata/config/valid-seed.yaml")
	servicetest.AssertStandardEndpoints(t, s, "devlake-sink")
	if strings.Contains(s.Logs.String(), "seed-token") {
		t.Error("the token reached the log")
	}
	s.Stop(t)
}

func TestRunRequiresTheKeysItUses(t *testing.T) {
	srv := natstest.Start(t)
	err := run(context.Background(), []string{"--config", "testdata/config/valid-connections.yaml"},
		func(k string) string { return map[string]string{"NATS_URL": srv.URL(), "OPS_ADDR": "127.0.0.1:0"}[k] }, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "DEVLAKE_TOKEN_GLOBAL or DEVLAKE_TOKEN_GLOBAL_FILE is required") ||
		!strings.Contains(err.Error(), "DEVLAKE_TOKEN_PAYMENTS") {
		t.Fatalf("err = %v, want every missing key named", err)
	}
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "devlake-sink") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }

// harness is a sink under test: JetStream, a fake DevLake with connections 1 (project 1, global)
// and 2 (project 2, team payments), and the sink's configuration.
type harness struct {
	nats   *natstest.Server
	js     jetstream.JetStream
	dl     *devlaketest.DevLake
	c1, c2 devlaketest.Connection
	env    map[string]string
	config string
}

func newHarness(t *testing.T, baseURL string, dl *devlaketest.DevLake, extra string) *harness {
	t.Helper()
	h := &harness{nats: natstest.Start(t), dl: dl, c1: dl.AddConnection("global"), c2: dl.AddConnection("payments")}
	_, h.js = h.nats.Connect()
	if baseURL == "" {
		baseURL = dl.URL
	}
	yaml := fmt.Sprintf(`integration:
  devlake:
    enabled: true
    base_url: %s
    project_id: "1"
    teams:
      - name: payments
        project_id: "2"
devlake_sink:
  connections:
    - {project_id: "1", connection_id: %d, token_env: DEVLAKE_TOKEN_GLOBAL}
    - {project_id: "2", connection_id: %d, token_env: DEVLAKE_TOKEN_PAYMENTS}
  timeout: 300ms
  attempts: 3
  backoff: 20ms
  max_backoff: 100ms
  ack_wait: 5s
%s`, baseURL, h.c1.ID, h.c2.ID, extra)
	if !strings.Contains(extra, "breaker:") {
		yaml += "  breaker: {failures: 8, open_for: 200ms, max_open_for: 1s, config_error_open_for: 1s}\n"
	}
	h.config = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(h.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	h.env = map[string]string{"NATS_URL": h.nats.URL(), "DEVLAKE_TOKEN_GLOBAL": h.c1.APIKey,
		"DEVLAKE_TOKEN_PAYMENTS": h.c2.APIKey, "JETSTREAM_DUPLICATE_WINDOW": "1m"}
	return h
}

func (h *harness) start(t *testing.T) *servicetest.Service {
	t.Helper()
	s := servicetest.Start(t, run, h.env, "--config", h.config)
	t.Cleanup(func() {
		if t.Failed() {
			logs := s.Logs.String()
			t.Logf("sink logs (last 6000 bytes):\n%s", logs[max(0, len(logs)-6000):])
			if dir := os.Getenv("DEVLAKE_SINK_TEST_LOGS"); dir != "" {
				_ = os.WriteFile(filepath.Join(dir, t.Name()+".log"), []byte(logs), 0o600)
			}
		}
	})
	return s
}

func (h *harness) publish(t *testing.T, evs ...events.Event) {
	t.Helper()
	for _, ev := range evs {
		m := ev.Meta()
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data = b
		for k, v := range events.Headers(m, "enricher", "") {
			msg.Header.Set(k, v)
		}
		if _, err := h.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatalf("publish %s: %v", m.ID, err)
		}
	}
}

// publishDeployments publishes deployments 1 to n.
func (h *harness) publishDeployments(t *testing.T, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		h.publish(t, deployment(i))
	}
}

// settled waits until both handlers' consumers have nothing pending or unacknowledged.
func (h *harness) settled(t *testing.T, timeout time.Duration) {
	t.Helper()
	wait.For(t, timeout, func() error {
		for _, name := range []string{handlerDeployment, handlerIncident} {
			c, err := h.js.Consumer(context.Background(), events.StreamEnriched, "devlake-sink-"+name)
			if err != nil {
				return err
			}
			info, err := c.Info(context.Background())
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("%s: %d pending, %d unacknowledged", name, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
}

// deliveredExactlyOnce checks that DevLake got each deployment once per connection, in exactly 2n
// requests, and that nothing was dead-lettered.
func (h *harness) deliveredExactlyOnce(t *testing.T, n int) {
	t.Helper()
	for _, c := range []uint64{h.c1.ID, h.c2.ID} {
		for id, w := range h.dl.WriteCounts(c, devlaketest.KindDeployment) {
			if w != 1 {
				t.Errorf("connection %d: %s written %d times", c, id, w)
			}
		}
	}
	if got := len(h.dl.Requests()); got != 2*n {
		t.Errorf("DevLake got %d requests, want exactly %d", got, 2*n)
	}
	if d := h.deadLetters(t); len(d) != 0 {
		t.Errorf("%d dead letters", len(d))
	}
}

func (h *harness) deadLetters(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	st, err := h.js.Stream(context.Background(), events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

var targets = events.Routing{Teams: []string{"payments"}, Targets: []events.Target{
	{Scope: events.ScopeGlobal, ProjectID: "1"}, {Scope: events.ScopeTeam, Team: "payments", ProjectID: "2"}}}

func deployment(i int) events.DeploymentEnriched {
	uid := "3b0c3a4e-93a1-4f0e-8a55-1a6f2b7d9e10"
	sha := fmt.Sprintf("%040x", 0xabc000+i)
	fin := time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	return events.DeploymentEnriched{
		DeploymentObserved: events.DeploymentObserved{
			ID: events.DeploymentID("argocd-hub", uid, int64(i)), Source: "argocd", Instance: "argocd-hub",
			Cluster: "prod-eu-west-1", Namespace: "argocd", Application: "checkout-api", Component: "checkout-api",
			Environment: events.EnvironmentProduction, Kind: events.KindDeploy, Result: events.ResultSuccess,
			AppCommits: []events.CommitRef{{SHA: sha, RepoURL: "https://github.com/example-org/checkout-api", Via: "image_tag"}},
			StartedAt:  fin.Add(-time.Minute), FinishedAt: fin,
			ArgoCD: &events.ArgoCDRef{UID: uid, HistoryID: int64(i)},
		},
		Commits: []events.Commit{},
		Ranges:  []events.CommitRange{{RepoURL: "https://github.com/example-org/checkout-api", HeadSHA: sha, Status: events.CompareFirst}},
		Routing: targets,
	}
}

func incident(i int, resolved bool) events.IncidentEnriched {
	created := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	ev := events.IncidentEnriched{
		IncidentObserved: events.IncidentObserved{
			Source: "webrca", IncidentID: fmt.Sprintf("uuid-%d", i), Key: fmt.Sprintf("ITN-2026-%05d", i),
			Change: events.IncidentOpened, Title: "Checkout latency", Status: "investigating",
			CreatedAt: created, ObservedAt: created.Add(time.Minute), Fingerprint: "open",
		},
		Routing: targets,
	}
	if resolved {
		ev.Change, ev.Status, ev.Resolved, ev.Fingerprint = events.IncidentResolved, "resolved", true, "resolved"
		ev.ResolvedAt, ev.ObservedAt = created.Add(45*time.Minute), created.Add(50*time.Minute)
	}
	ev.ID = events.IncidentEventID("webrca", ev.IncidentID, ev.Change, ev.Fingerprint)
	return ev
}

// TestFaultyDevLakeGetsEverythingExactlyOnce: 30% of requests answer 500, 10% stall past the
// client's timeout, and connection 2 rejects one deployment with a 400. Every other event reaches
// every connection exactly once, and the rejected one is dead-lettered with DevLake's answer.
func TestFaultyDevLakeGetsEverythingExactlyOnce(t *testing.T) {
	dl := devlaketest.Start(t)
	h := newHarness(t, "", dl, "")
	dl.SetFaults(devlaketest.Faults{Seed: 42, ServerErrors: 0.3, Stalls: 0.1, StallFor: 5 * time.Second})
	const n, bad = 30, 13
	dl.Reject(h.c2.ID, devlaketest.KindDeployment, sink.DeploymentID(deployment(bad).ID, h.c2.ID), "input json error: rejected by the test")
	s := h.start(t)
	var evs []events.Event
	for i := 1; i <= n; i++ {
		evs = append(evs, deployment(i))
	}
	for i := 1; i <= 5; i++ {
		evs = append(evs, incident(i, false), incident(i, true))
	}
	h.publish(t, evs...)

	wait.For(t, 60*time.Second, func() error {
		for i := 1; i <= n; i++ {
			for _, c := range []uint64{h.c1.ID, h.c2.ID} {
				if i == bad && c == h.c2.ID {
					continue
				}
				if dl.Writes(c, devlaketest.KindDeployment, sink.DeploymentID(deployment(i).ID, c)) == 0 {
					return fmt.Errorf("deployment %d not yet on connection %d", i, c)
				}
			}
		}
		for i := 1; i <= 5; i++ {
			for _, c := range []uint64{h.c1.ID, h.c2.ID} {
				if iss, _ := dl.Issue(c, incident(i, true).Key); iss.Status != "DONE" {
					return fmt.Errorf("incident %d on connection %d: %q", i, c, iss.Status)
				}
			}
		}
		if got := len(h.deadLetters(t)); got != 1 {
			return fmt.Errorf("%d dead letters", got)
		}
		return nil
	})
	h.settled(t, 30*time.Second)

	for _, c := range []uint64{h.c1.ID, h.c2.ID} {
		for id, w := range dl.WriteCounts(c, devlaketest.KindDeployment) {
			if w != 1 {
				t.Errorf("connection %d: deployment %s written %d times", c, id, w)
			}
		}
		if got, want := len(dl.WriteCounts(c, devlaketest.KindDeployment)), n-map[bool]int{true: 1}[c == h.c2.ID]; got != want {
			t.Errorf("connection %d: %d deployments, want %d", c, got, want)
		}
		// Incidents are states, not rows: their write counts are not bounded. With events posted
		// concurrently an open state can land after the resolved one (the ledger then posts the
		// resolved state again), or be skipped as stale. The end state, checked above, is the contract.
	}
	dead := h.deadLetters(t)[0]
	var got events.DeploymentEnriched
	if err := json.Unmarshal(dead.Data, &got); err != nil || got.ID != deployment(bad).ID {
		t.Errorf("dead letter holds %s (%v), want deployment %d", got.ID, err, bad)
	}
	if r := dead.Header.Get(events.HeaderDeadReason); !strings.Contains(r, "rejected by the test") || !strings.Contains(r, "DevLake answered 400") {
		t.Errorf("dead-letter reason = %q", r)
	}
	codes := dl.StatusCounts()
	if codes[500] == 0 || codes[0] == 0 {
		t.Errorf("the faults did not strike: %v", codes)
	}
	_, metrics := s.Get(t, "/metrics")
	for _, want := range []string{`doraflow_devlake_sink_posts_total{connection="1",kind="deployments",outcome="retryable"}`,
		`doraflow_devlake_sink_posts_total{connection="2",kind="deployments",outcome="permanent"}`,
		`doraflow_devlake_sink_connection_info{connection="2",project_id="2"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, key := range []string{h.c1.APIKey, h.c2.APIKey} {
		if strings.Contains(s.Logs.String(), key) {
			t.Error("an API key reached the log")
		}
	}
	s.Stop(t)
}

// TestStoppedMidStreamAndRestartedDeliversTheRest stops the sink while it works through a backlog
// and starts it again: every deployment reaches every connection exactly once, with no extra post.
func TestStoppedMidStreamAndRestartedDeliversTheRest(t *testing.T) {
	dl := devlaketest.New()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // DevLake's latency, so the stop lands mid-stream
		case <-time.After(15 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		dl.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	h := newHarness(t, slow.URL, dl, "")
	const n = 40
	var evs []events.Event
	for i := 1; i <= n; i++ {
		evs = append(evs, deployment(i))
	}
	first := h.start(t)
	h.publish(t, evs...)
	wait.For(t, 20*time.Second, func() error {
		if got := len(dl.Deployments(h.c1.ID)); got < 8 {
			return fmt.Errorf("%d delivered", got)
		}
		return nil
	})
	first.Stop(t)
	before := len(dl.Deployments(h.c1.ID))
	if before >= n {
		t.Fatalf("all %d delivered before the stop; the test did not stop mid-stream", before)
	}

	second := h.start(t)
	wait.For(t, 30*time.Second, func() error {
		if a, b := len(dl.Deployments(h.c1.ID)), len(dl.Deployments(h.c2.ID)); a != n || b != n {
			return fmt.Errorf("%d and %d of %d delivered", a, b, n)
		}
		return nil
	})
	h.settled(t, 10*time.Second)
	h.deliveredExactlyOnce(t, n)
	t.Logf("stopped after %d of %d deployments", before, n)
	second.Stop(t)
}

// TestDevLakeDownPausesWithoutDeadLettering: while every post fails, the circuit opens, messages
// wait (unlimited deliveries, growing delays) and nothing is dead-lettered; after recovery all
// arrive.
func TestDevLakeDownPausesWithoutDeadLettering(t *testing.T) {
	dl := devlaketest.Start(t)
	h := newHarness(t, "", dl, "  breaker: {failures: 2, open_for: 300ms, max_open_for: 600ms, config_error_open_for: 1s}\n")
	dl.SetDown(http.StatusServiceUnavailable)
	s := h.start(t)
	const n = 5
	h.publishDeployments(t, n)
	wait.For(t, 20*time.Second, func() error {
		_, m := s.Get(t, "/metrics")
		for _, want := range []string{`doraflow_devlake_sink_circuit_state{connection="1"} 2`, `outcome="circuit_open"`} {
			if !strings.Contains(m, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		return nil
	})
	if d := h.deadLetters(t); len(d) != 0 {
		t.Fatalf("%d dead letters while DevLake was down", len(d))
	}
	dl.SetDown(0)
	wait.For(t, 30*time.Second, func() error {
		if a, b := len(dl.Deployments(h.c1.ID)), len(dl.Deployments(h.c2.ID)); a != n || b != n {
			return fmt.Errorf("%d and %d of %d delivered", a, b, n)
		}
		return nil
	})
	// A message nacked during the outage may wait out its delay (up to a minute) before its last,
	// ledger-only, delivery.
	h.settled(t, 65*time.Second)
	if d := h.deadLetters(t); len(d) != 0 {
		t.Errorf("%d dead letters", len(d))
	}
	s.Stop(t)
}

// TestMisroutedDevLakePausesUntilFixed: an ingress answers 404 with an HTML page (a wrong base_url
// or path prefix) for a while. That is a configuration fault of every connection, not of the
// messages: nothing is dead-lettered, /readyz names each connection and the answer, the
// config_errors_total{status="404"} series count it and config_fault is 1; once DevLake answers
// again, the circuits' probes resume delivery by themselves and every deployment arrives exactly once.
func TestMisroutedDevLakePausesUntilFixed(t *testing.T) {
	dl := devlaketest.New()
	var misrouted atomic.Bool
	misrouted.Store(true)
	var answered404 atomic.Int64
	ingress := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if misrouted.Load() {
			answered404.Add(1)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
			return
		}
		dl.ServeHTTP(w, r)
	}))
	t.Cleanup(ingress.Close)
	h := newHarness(t, ingress.URL, dl, "")
	s := h.start(t)
	const n = 10
	h.publishDeployments(t, n)

	wait.For(t, 20*time.Second, func() error {
		code, body := s.Get(t, "/readyz")
		for _, want := range []string{"connection 1 (project 1)", "connection 2 (project 2)", "DevLake answered 404",
			`not DevLake's JSON (text/html): "<html> <head><title>404 Not Found</title>`, "base_url"} {
			if code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
				return fmt.Errorf("/readyz %d lacks %q:\n%s", code, want, body)
			}
		}
		_, m := s.Get(t, "/metrics")
		for _, want := range []string{`doraflow_devlake_sink_config_fault{connection="1"} 1`, `doraflow_devlake_sink_config_fault{connection="2"} 1`,
			`doraflow_devlake_sink_circuit_state{connection="1"} 2`, `outcome="circuit_open"`} {
			if !strings.Contains(m, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		for _, c := range []string{"1", "2"} {
			if v := metricValue(m, `doraflow_devlake_sink_config_errors_total{connection="`+c+`",status="404"}`); v < 1 {
				return fmt.Errorf("config_errors_total of connection %s: %v", c, v)
			}
		}
		return nil
	})
	if d := h.deadLetters(t); len(d) != 0 {
		t.Fatalf("%d dead letters while the ingress answered 404", len(d))
	}
	if got := len(dl.Requests()); got != 0 {
		t.Fatalf("%d requests reached DevLake", got)
	}

	misrouted.Store(false) // the operator fixed the ingress
	wait.For(t, 60*time.Second, func() error {
		if a, b := len(dl.Deployments(h.c1.ID)), len(dl.Deployments(h.c2.ID)); a != n || b != n {
			return fmt.Errorf("%d and %d of %d delivered", a, b, n)
		}
		if code, body := s.Get(t, "/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return nil
	})
	h.settled(t, 65*time.Second)
	h.deliveredExactlyOnce(t, n)
	_, m := s.Get(t, "/metrics")
	for _, want := range []string{`doraflow_devlake_sink_config_fault{connection="1"} 0`, `doraflow_devlake_sink_circuit_state{connection="1"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s after the fix", want)
		}
	}
	t.Logf("the ingress answered 404 %d times", answered404.Load())
	s.Stop(t)
}

// metricValue returns the value of one series in an exposition, or -1 when it is absent.
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestRetryAfterIsHonoured: DevLake answers 429 with Retry-After: 2 (longer than max_backoff,
// 100ms). The sink neither retries sooner in the delivery nor in a redelivery: the post is repeated
// no earlier than two seconds later, once, and nothing is dead-lettered.
func TestRetryAfterIsHonoured(t *testing.T) {
	dl := devlaketest.New()
	var mu sync.Mutex
	var at []time.Time
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		first := len(at) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"success":false,"message":"too many requests"}`)
			return
		}
		dl.ServeHTTP(w, r)
	}))
	t.Cleanup(limited.Close)
	h := newHarness(t, limited.URL, dl, "")
	s := h.start(t)
	ev := deployment(1)
	ev.Routing = events.Routing{Targets: targets.Targets[:1]} // connection 1 only
	h.publish(t, ev)
	wait.For(t, 20*time.Second, func() error {
		if n := len(dl.Deployments(h.c1.ID)); n != 1 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})
	h.settled(t, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 2 {
		t.Fatalf("%d posts, want 2 (the 429, then one after Retry-After)", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < 2*time.Second {
		t.Errorf("the post was repeated %s after the 429, want at least Retry-After (2s)", gap)
	}
	if d := h.deadLetters(t); len(d) != 0 {
		t.Errorf("%d dead letters", len(d))
	}
	s.Stop(t)
}
