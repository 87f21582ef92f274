// Package servicetest runs a doraflow service's run function in-process for component tests: it
// starts run with a map-backed environment and a free ops port, waits until /readyz answers 200, and
// on Stop cancels the context and requires run to return nil within 10 s (the drain works).
package servicetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/wait"
)

// RunFunc is the signature of every service's run.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Service is a running service.
type Service struct {
	// Ops is the base URL of the ops server, such as http://127.0.0.1:40123.
	Ops    string
	Logs   *Buffer
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned; err holds its result
	err    error
}

// Start runs run with env (OPS_ADDR is set to a free loopback port) and args, and waits for /readyz.
func Start(t testing.TB, run RunFunc, env map[string]string, args ...string) *Service {
	t.Helper()
	addr := FreeAddr(t)
	vars := map[string]string{"OPS_ADDR": addr, "LOG_LEVEL": "debug"}
	for k, v := range env {
		vars[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{Ops: "http://" + addr, Logs: &Buffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = run(ctx, args, func(k string) string { return vars[k] }, s.Logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
		}
	})
	wait.For(t, 20*time.Second, func() error {
		select {
		case <-s.done:
			t.Fatalf("run returned before it was ready: %v\nlogs:\n%s", s.err, s.Logs)
		default:
		}
		code, body, err := s.get(context.Background(), "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return nil
	})
	return s
}

// Get fetches path from the ops server.
func (s *Service) Get(t testing.TB, path string) (int, string) {
	t.Helper()
	code, body, err := s.get(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

func (s *Service) get(ctx context.Context, path string) (int, string, error) {
	return HTTPGet(ctx, s.Ops+path)
}

// HTTPGet fetches url and returns the status code and body.
func HTTPGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Stop cancels the service and requires run to return nil within 10 s.
func (s *Service) Stop(t testing.TB) {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		if s.err != nil {
			t.Fatalf("run returned %v after cancel, want nil\nlogs:\n%s", s.err, s.Logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return within 10s of cancel\nlogs:\n%s", s.Logs)
	}
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	return addr
}

// Logger returns a zerolog logger writing to the buffer, for test helpers that need one.
func (b *Buffer) Logger() zerolog.Logger { return zerolog.New(b) }

// Buffer is a goroutine-safe log sink.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
