package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/pkg/events"
)

var t0 = time.Date(2026, 3, 10, 15, 20, 0, 412733000, time.UTC)

func TestRunDisabledServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-empty.yaml")
	servicetest.AssertStandardEndpoints(t, s, "webrca-poller")
	if !strings.Contains(s.Logs.String(), "WebRCA polling is disabled") {
		t.Errorf("logs do not say polling is disabled:\n%s", s.Logs)
	}
	s.Stop(t)
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "webrca-poller") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }

// fakes are a WebRCA API and SSO with four incidents: two of Konflux (one resolved), one of Quay,
// one invalid Konflux incident.
type fakes struct {
	sso *webrcatest.SSO
	api *webrcatest.API
}

func newFakes(t *testing.T) fakes {
	t.Helper()
	s := webrcatest.NewSSO(t)
	s.AddClient("svc-doraflow", "s3cr3t")
	api := webrcatest.NewAPI(t, s)
	open := webrcatest.NewIncident("0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", "ITN-2026-00317", t0)
	resolved := webrcatest.NewIncident("1c2d3e4f-0000-4000-8000-000000000001", "ITN-2026-00318", t0.Add(time.Hour))
	resolved["products"] = []any{"KONFLUX"}
	resolved["status"] = "resolved"
	resolved["resolved_at"] = t0.Add(2 * time.Hour).Format(time.RFC3339Nano)
	quay := webrcatest.NewIncident("2c2d3e4f-0000-4000-8000-000000000002", "ITN-2026-00319", t0)
	quay["products"] = []any{"Quay"}
	invalid := webrcatest.NewIncident("3c2d3e4f-0000-4000-8000-000000000003", "ITN-2026-00320", t0)
	invalid["invalid"] = true
	api.SetIncidents(open, resolved, quay, invalid)
	return fakes{sso: s, api: api}
}

// writeConfig writes a config pointing at the fakes; extra lines are appended under webrca.
func writeConfig(t *testing.T, f fakes, extra ...string) string {
	t.Helper()
	body := fmt.Sprintf("webrca:\n  enabled: true\n  base_url: %s\n  token_url: %s\n  interval: 10s\n  products: [konflux]\n  retry_backoff: 100ms\n",
		f.api.URL(), f.sso.URL())
	for _, e := range extra {
		body += "  " + e + "\n"
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func clientEnv(natsURL string) map[string]string {
	return map[string]string{"NATS_URL": natsURL, "WEBRCA_CLIENT_ID": "svc-doraflow", "WEBRCA_CLIENT_SECRET": "s3cr3t"}
}

// streamMessages returns the messages on the incident subject, in order.
func streamMessages(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := t.Context()
	st, err := js.Stream(ctx, events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == events.SubjectIncidentObserved {
			out = append(out, m)
		}
	}
	return out
}

func metricLine(t *testing.T, s *servicetest.Service, line string) error {
	t.Helper()
	_, body := s.Get(t, "/metrics")
	if !strings.Contains(body, line+"\n") {
		return fmt.Errorf("/metrics has no line %q", line)
	}
	return nil
}

// TestRunPublishesIncidents runs the service against the fakes: the two valid Konflux incidents
// appear on doraflow.webrca.incident.observed with CloudEvents headers. A second run() against the
// same JetStream polls successfully and publishes nothing new.
func TestRunPublishesIncidents(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	f := newFakes(t)
	cfg := writeConfig(t, f)

	s := servicetest.Start(t, run, clientEnv(srv.URL()), "--config", cfg)
	var msgs []*jetstream.RawStreamMsg
	wait.For(t, 10*time.Second, func() error {
		msgs = streamMessages(t, js)
		if len(msgs) < 2 {
			return fmt.Errorf("%d messages on %s, want 2", len(msgs), events.SubjectIncidentObserved)
		}
		return metricLine(t, s, `doraflow_webrca_poller_polls_total{outcome="ok"} 1`)
	})
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	byKey := map[string]events.IncidentObserved{}
	for _, m := range msgs {
		var ev events.IncidentObserved
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("body: %v", err)
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("published event invalid: %v", err)
		}
		byKey[ev.Key] = ev
		for h, want := range map[string]string{
			events.HeaderSpecVersion: "1.0", events.HeaderID: ev.ID, events.HeaderMsgID: ev.ID,
			events.HeaderType: events.TypeIncidentObserved, events.HeaderSource: events.SourceOf("webrca-poller"),
			events.HeaderSubject: ev.Key, events.HeaderContentType: events.ContentTypeJSON,
			events.HeaderTime: ev.ObservedAt.UTC().Format(time.RFC3339Nano),
		} {
			if got := m.Header.Get(h); got != want {
				t.Errorf("%s header %s = %q, want %q", ev.Key, h, got, want)
			}
		}
	}
	open, resolved := byKey["ITN-2026-00317"], byKey["ITN-2026-00318"]
	if open.Change != events.IncidentOpened || open.Resolved || open.Status != "investigating" ||
		open.URL != "https://web-rca.devshift.net/incident/ITN-2026-00317" || fmt.Sprint(open.Products) != "[konflux]" {
		t.Errorf("open incident: %+v", open)
	}
	if resolved.Change != events.IncidentOpened || !resolved.Resolved || !resolved.ResolvedAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("resolved incident: %+v", resolved)
	}
	for _, line := range []string{
		`doraflow_webrca_poller_events_published_total{change="opened"} 2`,
		`doraflow_webrca_poller_incidents{result="matched"} 2`,
		`doraflow_webrca_poller_incidents{result="other_product"} 1`,
		`doraflow_webrca_poller_incidents{result="invalid"} 1`,
		`doraflow_webrca_poller_token_refreshes_total{grant="client_credentials",outcome="ok"} 1`,
		`doraflow_webrca_poller_sso_credentials_rejected 0`,
	} {
		if err := metricLine(t, s, line); err != nil {
			t.Error(err)
		}
	}
	if _, body := s.Get(t, "/metrics"); strings.Contains(body, "s3cr3t") || strings.Contains(s.Logs.String(), "s3cr3t") {
		t.Error("the client secret appears in /metrics or the logs")
	}
	s.Stop(t)

	// Restart: the state in KV says everything was published.
	s2 := servicetest.Start(t, run, clientEnv(srv.URL()), "--config", cfg)
	wait.For(t, 10*time.Second, func() error {
		return metricLine(t, s2, `doraflow_webrca_poller_polls_total{outcome="ok"} 1`)
	})
	if n := len(streamMessages(t, js)); n != 2 {
		t.Errorf("after a restart the stream holds %d incident events, want still 2", n)
	}
	if err := metricLine(t, s2, `doraflow_webrca_poller_events_published_total{change="opened"} 0`); err != nil {
		t.Error(err)
	}
	s2.Stop(t)
}

func TestRunWithoutCredentialsFailsFast(t *testing.T) {
	srv := natstest.Start(t)
	f := newFakes(t)
	err := run(t.Context(), []string{"--config", writeConfig(t, f)},
		func(k string) string { return map[string]string{"NATS_URL": srv.URL(), "OPS_ADDR": "127.0.0.1:0"}[k] }, io.Discard)
	if err == nil {
		t.Fatal("run without credentials succeeded")
	}
	for _, want := range []string{"WEBRCA_CLIENT_ID", "WEBRCA_CLIENT_SECRET", "OFFLINE_TOKEN", "OFFLINE_TOKEN_FILE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestRunHalfAServiceAccountIsAnEnvironmentError(t *testing.T) {
	err := run(t.Context(), nil, func(k string) string { return map[string]string{"WEBRCA_CLIENT_ID": "svc"}[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "WEBRCA_CLIENT_ID and WEBRCA_CLIENT_SECRET must be set together") {
		t.Fatalf("run = %v, want the pairing problem", err)
	}
}

// TestRunUnready starts the service in situations where /readyz must turn 503, and checks it says
// why and that run still drains cleanly.
func TestRunUnready(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		setup   func(f fakes)
		extra   []string
		want    string
		metrics []string
	}{
		{
			name: "SSO rejects the offline token",
			env:  map[string]string{"OFFLINE_TOKEN": "revoked-offline-token"},
			want: "SSO credentials rejected",
			metrics: []string{
				`doraflow_webrca_poller_sso_credentials_rejected 1`,
				`doraflow_webrca_poller_token_refreshes_total{grant="refresh_token",outcome="rejected"} 1`,
				`doraflow_webrca_poller_polls_total{outcome="token_rejected"} 1`,
			},
		},
		{
			name: "WebRCA keeps failing",
			env:  map[string]string{"WEBRCA_CLIENT_ID": "svc-doraflow", "WEBRCA_CLIENT_SECRET": "s3cr3t"},
			setup: func(f fakes) {
				f.api.Intercept(func(w http.ResponseWriter, _ *http.Request, _ webrcatest.Request) bool {
					w.WriteHeader(http.StatusServiceUnavailable)
					return true
				})
			},
			extra:   []string{"unready_after: 1s"},
			want:    "polling WebRCA has failed for",
			metrics: []string{`doraflow_webrca_poller_last_success_timestamp_seconds 0`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t)
			f := newFakes(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			env := map[string]string{"NATS_URL": srv.URL()}
			maps.Copy(env, tt.env)
			u := startUnready(t, env, writeConfig(t, f, tt.extra...))
			get := u.get
			wait.For(t, 15*time.Second, func() error {
				u.running(t)
				code, body, err := get("/readyz")
				if err != nil {
					return err
				}
				if code != http.StatusServiceUnavailable || !strings.Contains(body, tt.want) {
					return fmt.Errorf("/readyz %d %q, want 503 mentioning %q", code, body, tt.want)
				}
				return nil
			})
			_, body, err := get("/metrics")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range tt.metrics {
				if !strings.Contains(body, line+"\n") {
					t.Errorf("/metrics has no line %q", line)
				}
			}
			if strings.Contains(u.logs.String(), "revoked-offline-token") || strings.Contains(body, "revoked-offline-token") {
				t.Error("the offline token appears in the logs or metrics")
			}
			u.stop(t)
		})
	}
}

// unready is a service started without waiting for /readyz (servicetest.Start waits for it).
type unready struct {
	addr   string
	logs   *servicetest.Buffer
	cancel context.CancelFunc
	done   chan error
}

func startUnready(t *testing.T, env map[string]string, config string) *unready {
	t.Helper()
	u := &unready{addr: servicetest.FreeAddr(t), logs: &servicetest.Buffer{}, done: make(chan error, 1)}
	vars := map[string]string{"OPS_ADDR": u.addr}
	maps.Copy(vars, env)
	var ctx context.Context
	ctx, u.cancel = context.WithCancel(t.Context())
	go func() {
		u.done <- run(ctx, []string{"--config", config}, func(k string) string { return vars[k] }, u.logs)
	}()
	return u
}

func (u *unready) get(path string) (int, string, error) {
	return servicetest.HTTPGet(context.Background(), "http://"+u.addr+path)
}

// running fails the test when run returned (a crash) before it was stopped.
func (u *unready) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-u.done:
		t.Fatalf("run returned early: %v\n%s", err, u.logs)
	default:
	}
}

func (u *unready) stop(t *testing.T) {
	t.Helper()
	u.cancel()
	select {
	case err := <-u.done:
		if err != nil {
			t.Fatalf("run = %v after cancel, want nil\n%s", err, u.logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}

func TestMetricsLint(t *testing.T) {
	reg := newTestRegistry()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestRunConfigFaultsAreRetriedUntilFixed: a wrong base URL (404 HTML), a token WebRCA refuses
// (401) and an expired offline token (SSO rejects it) are configuration faults: /readyz says so at
// once with what to check, config_errors_total counts each poll and config_fault is 1, polls are
// retried with backoff (several within seconds, with a 10s interval) instead of crashing or
// waiting, and once the fault is fixed the incidents are published and the service is ready.
func TestRunConfigFaultsAreRetriedUntilFixed(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		// status, ctype and body are what WebRCA answers until the fix; status 0 answers normally.
		status      int
		ctype, body string
		fix         func(f fakes)
		ready       []string
		series      string
	}{
		{name: "WebRCA answers 404 HTML: a wrong base URL", env: map[string]string{"WEBRCA_CLIENT_ID": "svc-doraflow", "WEBRCA_CLIENT_SECRET": "s3cr3t"},
			status: http.StatusNotFound, ctype: "text/html", body: "<html><head><title>404 Not Found</title></head><body>nginx</body></html>",
			ready:  []string{"WebRCA configuration fault", "HTTP 404", `body starts "<html><head><title>404 Not Found`, "webrca.base_url"},
			series: `doraflow_webrca_poller_config_errors_total{source="webrca",status="404"}`},
		{name: "WebRCA refuses every token with 401", env: map[string]string{"WEBRCA_CLIENT_ID": "svc-doraflow", "WEBRCA_CLIENT_SECRET": "s3cr3t"},
			status: http.StatusUnauthorized, ctype: "application/json",
			body:   `{"kind":"Error","id":"401","code":"WEBRCA-401","reason":"Account authentication could not be verified"}`,
			ready:  []string{"WebRCA configuration fault", "HTTP 401", "could not be verified", "access to WebRCA"},
			series: `doraflow_webrca_poller_config_errors_total{source="webrca",status="401"}`},
		{name: "SSO rejects the expired offline token", env: map[string]string{"OFFLINE_TOKEN": "expired-offline-token"},
			fix:    func(f fakes) { f.sso.AddOfflineToken("expired-offline-token") }, // a new session for the token
			ready:  []string{"SSO credentials rejected", "invalid_grant", "OFFLINE_TOKEN"},
			series: `doraflow_webrca_poller_config_errors_total{source="sso",status="400"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t)
			_, js := srv.Connect()
			f := newFakes(t)
			var broken atomic.Bool
			broken.Store(true)
			f.api.Intercept(func(w http.ResponseWriter, _ *http.Request, _ webrcatest.Request) bool {
				if tt.status == 0 || !broken.Load() {
					return false
				}
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
				return true
			})
			env := map[string]string{"NATS_URL": srv.URL()}
			maps.Copy(env, tt.env)
			u := startUnready(t, env, writeConfig(t, f))
			get := func(path string) (int, string) {
				code, body, err := u.get(path)
				if err != nil {
					return 0, err.Error() // not listening yet
				}
				return code, body
			}
			wait.For(t, 8*time.Second, func() error {
				u.running(t)
				code, body := get("/readyz")
				for _, w := range tt.ready {
					if code != http.StatusServiceUnavailable || !strings.Contains(body, w) {
						return fmt.Errorf("/readyz %d lacks %q:\n%s", code, w, body)
					}
				}
				_, m := get("/metrics")
				if v := metricValue(m, tt.series); v < 3 {
					return fmt.Errorf("%s = %v, want 3 polls retried with backoff within seconds", tt.series, v)
				}
				if !strings.Contains(m, "doraflow_webrca_poller_config_fault 1\n") {
					return errors.New("config_fault is not 1")
				}
				return nil
			})
			if n := len(streamMessages(t, js)); n != 0 {
				t.Fatalf("%d incident events published while misconfigured", n)
			}

			broken.Store(false)
			if tt.fix != nil {
				tt.fix(f)
			}
			wait.For(t, 15*time.Second, func() error {
				if n := len(streamMessages(t, js)); n != 2 {
					return fmt.Errorf("%d incident events, want 2", n)
				}
				if code, body := get("/readyz"); code != http.StatusOK {
					return fmt.Errorf("/readyz %d: %s", code, body)
				}
				if _, m := get("/metrics"); !strings.Contains(m, "doraflow_webrca_poller_config_fault 0\n") {
					return errors.New("config_fault is not 0")
				}
				return nil
			})
			if strings.Contains(u.logs.String(), "expired-offline-token") {
				t.Error("the offline token reached the log")
			}
			u.stop(t)
		})
	}
}

// metricValue returns the value of one series in an exposition, or -1 when it is absent.
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			if f, err := strconv.ParseFloat(strings.Fields(v)[0], 64); err == nil {
				return f
			}
		}
	}
	return -1
}
