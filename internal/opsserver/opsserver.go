// Package opsserver serves every doraflow service's operational endpoints on one port: /healthz,
// /readyz, /metrics (a private registry, OpenMetrics for exemplars), GET / (service, version,
// endpoints), GET /api/v1/health (status, uptime, version) and /debug/pprof.
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

// Checks is a set of named readiness checks. /readyz runs them all.
type Checks struct {
	mu     sync.Mutex
	checks map[string]Check
}

// Add registers a named check, replacing one of the same name.
func (c *Checks) Add(name string, fn Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]Check{}
	}
	c.checks[name] = fn
}

// Run runs every check and returns the failures by name; an empty map means ready.
func (c *Checks) Run(ctx context.Context) map[string]string {
	c.mu.Lock()
	names := make([]string, 0, len(c.checks))
	fns := make([]Check, 0, len(c.checks))
	for n, fn := range c.checks {
		names = append(names, n)
		fns = append(fns, fn)
	}
	c.mu.Unlock()
	failed := map[string]string{}
	for i, fn := range fns {
		if err := fn(ctx); err != nil {
			failed[names[i]] = err.Error()
		}
	}
	return failed
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
}

// Server is the ops HTTP server.
type Server struct {
	o        Options
	stopping atomic.Bool
	srv      *http.Server
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
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", s.index)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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
	if s.o.Listening != nil {
		s.o.Listening(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ops server: %w", err)
	case <-ctx.Done():
	}
	s.Stopping()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down ops server: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops server: %w", err)
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
			"/api/v1/health": "status, uptime and version",
			"/debug/pprof/":  "Go profiles",
		},
	})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	failed := s.o.Checks.Run(ctx)
	status, code := "healthy", http.StatusOK
	if len(failed) > 0 || s.stopping.Load() {
		status, code = "unhealthy", http.StatusServiceUnavailable
	}
	up := time.Since(s.o.Started).Round(time.Second)
	writeJSON(w, code, map[string]any{
		"status":         status,
		"service":        s.o.Service,
		"version":        s.o.Version,
		"uptime":         up.String(),
		"uptime_seconds": int64(up.Seconds()),
		"checks":         failed,
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
