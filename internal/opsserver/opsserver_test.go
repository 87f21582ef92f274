package opsserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func start(t *testing.T, checks *Checks) (base string, cancel context.CancelFunc, done chan error) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "doraflow_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Inc()
	addr := make(chan string, 1)
	s := New(Options{Addr: "127.0.0.1:0", Service: "enricher", Version: "v9", Registry: reg, Checks: checks,
		Started: time.Now().Add(-90 * time.Second), Listening: func(a string) { addr <- a }})
	ctx, cancel := context.WithCancel(t.Context())
	done = make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	select {
	case a := <-addr:
		return "http://" + a, cancel, done
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	return "", cancel, done
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	checks := &Checks{}
	var natsDown bool
	checks.Add("nats", func(context.Context) error {
		if natsDown {
			return errors.New("NATS connection RECONNECTING")
		}
		return nil
	})
	base, cancel, done := start(t, checks)

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
	natsDown = true
	if code, body := get(t, base+"/readyz"); code != 503 || body != "nats: NATS connection RECONNECTING\n" {
		t.Errorf("/readyz with NATS down = %d %q", code, body)
	}
	code, body := get(t, base+"/api/v1/health")
	var h map[string]any
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/api/v1/health is not JSON: %v\n%s", err, body)
	}
	if uptime, _ := h["uptime_seconds"].(float64); code != 503 || h["status"] != "unhealthy" || h["version"] != "v9" || uptime < 90 {
		t.Errorf("/api/v1/health = %d %s", code, body)
	}
	natsDown = false
	code, body = get(t, base+"/")
	if code != 200 || !strings.Contains(body, `"service": "enricher"`) || !strings.Contains(body, `"/metrics"`) {
		t.Errorf("/ = %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "doraflow_test_things_total 1") {
		t.Errorf("/metrics = %d %s", code, body)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
}

func TestStoppingTurnsReadinessOff(t *testing.T) {
	s := New(Options{Registry: prometheus.NewRegistry()})
	s.Stopping()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "/readyz", nil)
	rec := &recorder{header: http.Header{}}
	s.srv.Handler.ServeHTTP(rec, req)
	if rec.code != 503 || rec.body.String() != "shutting down\n" {
		t.Errorf("/readyz while stopping = %d %q", rec.code, rec.body.String())
	}
}

func TestListenErrorNamesTheSetting(t *testing.T) {
	s := New(Options{Addr: "256.0.0.1:1", Registry: prometheus.NewRegistry()})
	if err := s.Serve(t.Context()); err == nil || !strings.Contains(err.Error(), "OPS_ADDR") {
		t.Fatalf("Serve = %v", err)
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// Go profiles hold the process's memory, tokens included: none on the ops port, ever; on a listener
// of their own only when PprofAddr asks for one.
func TestPprofIsOffByDefaultAndOnItsOwnListenerWhenEnabled(t *testing.T) {
	base, cancel, done := start(t, nil)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		if code, _ := get(t, base+p); code != http.StatusNotFound {
			t.Errorf("ops port %s = %d, want 404", p, code)
		}
	}
	if _, body := get(t, base+"/"); strings.Contains(body, "pprof") {
		t.Errorf("GET / lists pprof although it is off:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	addr, paddr := make(chan string, 1), make(chan string, 1)
	s := New(Options{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), PprofAddr: "127.0.0.1:0",
		Listening: func(a string) { addr <- a }, PprofListening: func(a string) { paddr <- a }})
	ctx, stop := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	opsBase, pprofBase := "http://"+<-addr, "http://"+<-paddr
	if code, body := get(t, pprofBase+"/debug/pprof/"); code != 200 || !strings.Contains(body, "heap") {
		t.Errorf("pprof listener /debug/pprof/ = %d", code)
	}
	if code, _ := get(t, opsBase+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("ops port serves pprof while it has its own listener: %d", code)
	}
	if code, _ := get(t, pprofBase+"/metrics"); code != http.StatusNotFound {
		t.Errorf("pprof listener serves /metrics: %d", code)
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("Serve after cancel = %v", err)
	}
}

func TestServerLimits(t *testing.T) {
	s := New(Options{Registry: prometheus.NewRegistry(), PprofAddr: "127.0.0.1:0"})
	for _, srv := range []*http.Server{s.srv, s.pprof} {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
			t.Errorf("server limits: read header %v, read %v, write %v, idle %v, max header %d bytes",
				srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
		}
	}
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	base, cancel, done := start(t, nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 1<<20))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("1 MiB header = %d, want 431", resp.StatusCode)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHealthListsEveryCheckWithItsState: /api/v1/health names every readiness check, passing ones
// included, and a disabled source as "disabled" with its reason (issue 19 item 12: it showed
// `"checks": {}` on a healthy service).
func TestHealthListsEveryCheckWithItsState(t *testing.T) {
	checks := &Checks{}
	checks.Add("nats", func(context.Context) error { return nil })
	checks.Add("router", func(context.Context) error { return errors.New("consumer deployments not bound") })
	checks.Disable("argocd", "argocd.enabled: false")
	base, cancel, done := start(t, checks)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	code, body := get(t, base+"/api/v1/health")
	var h struct {
		Status string                `json:"status"`
		Checks map[string]CheckState `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/api/v1/health is not JSON: %v\n%s", err, body)
	}
	want := map[string]CheckState{
		"nats":   {State: StateOK},
		"router": {State: StateFailing, Detail: "consumer deployments not bound"},
		"argocd": {State: StateDisabled, Detail: "argocd.enabled: false"},
	}
	if code != 503 || h.Status != "unhealthy" || len(h.Checks) != len(want) {
		t.Fatalf("/api/v1/health = %d %s", code, body)
	}
	for name, w := range want {
		if h.Checks[name] != w {
			t.Errorf("check %s = %+v, want %+v", name, h.Checks[name], w)
		}
	}

	// A disabled source is not a readiness failure.
	checks.Add("router", func(context.Context) error { return nil })
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz with a disabled source = %d %q, want 200", code, body)
	}
	if code, body := get(t, base+"/api/v1/health"); code != 200 || !strings.Contains(body, `"status": "healthy"`) {
		t.Errorf("/api/v1/health when ready = %d %s", code, body)
	}
}
