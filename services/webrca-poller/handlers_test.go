package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/poll"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/webrca"
)

type memStore struct {
	mu sync.Mutex
	m  map[string]poll.State
}

func (s *memStore) Get(_ context.Context, id string) (poll.State, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[id]
	return st, ok, nil
}

func (s *memStore) Put(_ context.Context, id string, st poll.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = st
	return nil
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, events.IncidentObserved) error { return nil }

type noTokenErr struct{}

func (noTokenErr) Err() error { return nil }

// TestPollLoopReadinessAndBackoff: failures turn readiness off only after unready_after, a success
// turns it back on, and the waits follow the schedule.
func TestPollLoopReadinessAndBackoff(t *testing.T) {
	now := t0
	var listErr error
	lister := listerFunc(func(context.Context) ([]webrca.Incident, error) {
		if listErr != nil {
			return nil, listErr
		}
		return []webrca.Incident{{ID: "a", IncidentID: "ITN-1", Summary: "s", Status: "open", CreatedAt: t0}}, nil
	})
	reg := prometheus.NewRegistry()
	l := &pollLoop{
		poller:       poll.New(poll.Config{}, lister, &memStore{m: map[string]poll.State{}}, nopPublisher{}, func() time.Time { return now }),
		schedule:     poll.Schedule{Interval: 10 * time.Minute, Backoff: 10 * time.Second},
		unreadyAfter: time.Minute,
		tokens:       noTokenErr{},
		m:            newMetrics(reg, func() bool { return false }),
		log:          zerolog.Nop(),
		now:          func() time.Time { return now },
	}
	listErr = &webrca.Error{Kind: webrca.KindServer, Op: "GET incidents page 1", Status: 503, Err: errors.New("down")}
	if w := l.once(t.Context()); w < 5*time.Second || w > 10*time.Second {
		t.Errorf("wait after the first failure = %s, want 5–10s", w)
	}
	now = now.Add(59 * time.Second)
	if err := l.ready(t.Context()); err != nil {
		t.Errorf("ready after 59s of failures = %v, want nil", err)
	}
	if w := l.once(t.Context()); w < 10*time.Second || w > 20*time.Second {
		t.Errorf("wait after the second failure = %s, want 10–20s", w)
	}
	now = now.Add(time.Second)
	if err := l.ready(t.Context()); err == nil || !strings.Contains(err.Error(), "has failed for 1m0s (2 attempts)") {
		t.Errorf("ready after 60s of failures = %v, want unready", err)
	}
	if v := testutil.ToFloat64(l.m.polls.WithLabelValues("server_error")); v != 2 {
		t.Errorf("server_error polls = %v, want 2", v)
	}
	listErr = &webrca.Error{Kind: webrca.KindSchema, Op: "GET incidents page 1", Err: errors.New("drift")}
	if w := l.once(t.Context()); w != 10*time.Minute {
		t.Errorf("wait after a schema failure = %s, want the interval", w)
	}
	listErr = nil
	if w := l.once(t.Context()); w != 10*time.Minute {
		t.Errorf("wait after a success = %s, want the interval", w)
	}
	if err := l.ready(t.Context()); err != nil {
		t.Errorf("ready after a success = %v", err)
	}
	if v := testutil.ToFloat64(l.m.lastSuccess); v != float64(now.UnixMilli())/1000 {
		t.Errorf("last success = %v, want %v", v, now.Unix())
	}
	if v := testutil.ToFloat64(l.m.published.WithLabelValues("opened")); v != 1 {
		t.Errorf("opened = %v, want 1", v)
	}
}

func TestOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                     "ok",
		&webrca.Error{Kind: webrca.KindTimeout}: "timeout",
		errors.Join(poll.ErrPublish, errors.New("x")): "publish_error",
		errors.Join(poll.ErrState, errors.New("x")):   "state_error",
		errors.New("other"):                           "error",
	} {
		if got := outcome(err); got != want {
			t.Errorf("outcome(%v) = %s, want %s", err, got, want)
		}
	}
}
