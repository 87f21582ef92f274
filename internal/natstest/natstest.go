// Package natstest runs a real NATS server with JetStream in-process for tests, the way httptest runs
// HTTP: natstest.Start(t) gives a fresh server on a random loopback port with its own store, shut
// down when the test ends.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running in-process NATS server.
type Server struct {
	*server.Server
	t        testing.TB
	opts     server.Options
	storeDir string
}

// Start runs a JetStream-enabled server on 127.0.0.1 with a random port and a temporary store.
// Options, when given, adjust the server options first (authentication, limits).
func Start(t testing.TB, options ...func(*server.Options)) *Server {
	t.Helper()
	s := &Server{t: t, storeDir: t.TempDir()}
	s.opts = server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: s.storeDir,
		NoLog: true, NoSigs: true, ServerName: "natstest"}
	for _, o := range options {
		o(&s.opts)
	}
	s.start()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := server.NewServer(&s.opts)
	if err != nil {
		s.t.Fatalf("natstest: new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("natstest: server not ready within 10s")
	}
	s.Server = srv
	// Keep the port for Restart, so clients reconnect to the same URL.
	if a, ok := srv.Addr().(*net.TCPAddr); ok {
		s.opts.Port = a.Port
	}
	s.t.Cleanup(srv.Shutdown)
}

// URL returns the client URL.
func (s *Server) URL() string { return s.ClientURL() }

// Restart shuts the server down and starts it again on the same port with the same store, as a
// NATS server restart in production does. Clients with reconnect enabled reconnect by themselves.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	s.start()
}

// Connect returns a client connection and its JetStream handle, closed when the test ends.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		s.t.Fatalf("natstest: connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
