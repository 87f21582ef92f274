// Package opsserver serves every doraflow service's operational endpoints on one port: /healthz,
// /readyz, /metrics (a private registry, OpenMetrics for exemplars), GET / (service, version,
// endpoints) and GET /api/v1/health (status, uptime, version and the state of every readiness check:
// ok, failing with its error, or disabled with the reason). Go profiles (/debug/pprof/) are off
// unless PprofAddr is set, and then served on a listener of their own (loopback by default), since a
// heap dump holds the service's tokens.
package opsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Checks is a set of named readiness checks. /readyz runs them all; /api/v1/health lists each with
// its state, the disabled ones included.
type Checks struct {
	mu       sync.Mutex
	checks   map[string]Check
	disabled map[string]string // name → why it is disabled
}

// States of a check in /api/v1/health.
const (
	StateOK       = "ok"
	StateFailing  = "failing"
	StateDisabled = "disabled"
)

// CheckState is one check's entry in /api/v1/health.
type CheckState struct {
	State  string `json:"state"`            // ok, failing or disabled
	Detail string `json:"detail,omitempty"` // the error of a failing check, the reason of a disabled one
}

// Add registers a named check, replacing one of the same name (a disabled one too).
func (c *Checks) Add(name string, fn Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]Check{}
	}
	c.checks[name] = fn
	delete(c.disabled, name)
}

// Disable records a named check as disabled, with the reason (a source that is not configured): it
// is never run, does not hold readiness back, and /api/v1/health lists it as "disabled".
func (c *Checks) Disable(name, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disabled == nil {
		c.disabled = map[string]string{}
	}
	c.disabled[name] = reason
	delete(c.checks, name)
}

// Run runs every check and returns the failures by name; an empty map means ready.
func (c *Checks) Run(ctx context.Context) map[string]string {
	failed := map[string]string{}
	for name, st := range c.States(ctx) {
		if st.State == StateFailing {
			failed[name] = st.Detail
		}
	}
	return failed
}

// States runs every check and returns the state of each, the disabled ones included.
func (c *Checks) States(ctx context.Context) map[string]CheckState {
	c.mu.Lock()
	names := make([]string, 0, len(c.checks))
	fns := make([]Check, 0, len(c.checks))
	for n, fn := range c.checks {
		names = append(names, n)
		fns = append(fns, fn)
	}
	states := make(map[string]CheckState, len(c.checks)+len(c.disabled))
	for n, reason := range c.disabled {
		states[n] = CheckState{State: StateDisabled, Detail: reason}
	}
	c.mu.Unlock()
	for i, fn := range fns {
		if err := fn(ctx); err != nil {
			states[names[i]] = CheckState{State: StateFailing, Detail: err.Error()}
		} else {
			states[names[i]] = CheckState{State: StateOK}
		}
	}
	return states
}

// Options configure the server.
type Options struct {
	Addr     string
	Service  string
	Version  string
	Registry *prometheus.Registry
	Checks   *Checks
	// Started is the process start time, for uptime.
	Started time.Time
	// Listening, when set, receives the bound address once the listener is open (tests use ":0").
	Listening func(addr string)
	// PprofAddr, when set, serves /debug/pprof/ on its own listener at this address (PPROF_ADDR,
	// 127.0.0.1:6060 for example); empty serves no profiles at all.
	PprofAddr string
	// PprofListening, when set, receives the pprof listener's bound address.
	PprofListening func(addr string)
}

// Limits of the ops server: a slow or hostile client cannot hold a connection or memory for long.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// pprofWriteTimeout leaves room for /debug/pprof/profile?seconds=60.
	pprofWriteTimeout = 90 * time.Second
)

// Server is the ops HTTP server.
type Server struct {
	o        Options
	stopping atomic.Bool
	srv      *http.Server
	pprof    *http.Server // nil unless Options.PprofAddr is set
}

// New returns a server; Serve starts it.
func New(o Options) *Server {
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	if o.Checks == nil {
		o.Checks = &Checks{}
	}
	s := &Server{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true, // exemplars are only exposed in OpenMetrics
		Registry:          o.Registry,
	}))
	mux.HandleFunc("GET /api/v1/health", s.health)
	mux.HandleFunc("GET /{$}", s.index)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	if o.PprofAddr != "" {
		pm := http.NewServeMux()
		pm.HandleFunc("GET /debug/pprof/", pprof.Index)
		pm.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		pm.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		pm.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		pm.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		s.pprof = &http.Server{Handler: pm, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
			WriteTimeout: pprofWriteTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	}
	return s
}

// Stopping marks the server as shutting down: /readyz answers 503 from now on.
func (s *Server) Stopping() { s.stopping.Store(true) }

// Serve listens on Options.Addr and serves until ctx is done, then marks itself not ready and shuts
// down within 5 s.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("listen on OPS_ADDR %s: %w", s.o.Addr, err)
	}
	var pln net.Listener
	if s.pprof != nil {
		if pln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", s.o.PprofAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on PPROF_ADDR %s: %w", s.o.PprofAddr, err)
		}
		if s.o.PprofListening != nil {
			s.o.PprofListening(pln.Addr().String())
		}
	}
	if s.o.Listening != nil {
		s.o.Listening(ln.Addr().String())
	}
	errc := make(chan error, 2)
	go func() { errc <- s.srv.Serve(ln) }()
	servers := []*http.Server{s.srv}
	if s.pprof != nil {
		go func() { errc <- s.pprof.Serve(pln) }()
		servers = append(servers, s.pprof)
	}
	var failed error
	select {
	case err := <-errc:
		failed = fmt.Errorf("ops server: %w", err)
	case <-ctx.Done():
	}
	s.Stopping()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil && failed == nil {
			failed = fmt.Errorf("shut down ops server: %w", err)
		}
	}
	if failed != nil {
		return failed
	}
	for range servers {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("ops server: %w", err)
		}
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	failed := s.o.Checks.Run(ctx)
	if len(failed) == 0 {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	names := make([]string, 0, len(failed))
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s: %s\n", n, failed[n])
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"service": s.o.Service,
		"version": s.o.Version,
		"endpoints": map[string]string{
			"/":              "this document",
			"/healthz":       "liveness: the process serves HTTP",
			"/readyz":        "readiness: NATS, consumers and sources are ready",
			"/metrics":       "Prometheus metrics (OpenMetrics with exemplars when asked for)",
			"/api/v1/health": "status, uptime, version and every readiness check's state (ok, failing, disabled)",
		},
	})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := s.o.Checks.States(ctx)
	status, code := "healthy", http.StatusOK
	if s.stopping.Load() {
		status, code = "unhealthy", http.StatusServiceUnavailable
	}
	for _, c := range checks {
		if c.State == StateFailing {
			status, code = "unhealthy", http.StatusServiceUnavailable
		}
	}
	up := time.Since(s.o.Started).Round(time.Second)
	writeJSON(w, code, map[string]any{
		"status":         status,
		"service":        s.o.Service,
		"version":        s.o.Version,
		"uptime":         up.String(),
		"uptime_seconds": int64(up.Seconds()),
		"checks":         checks,
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
