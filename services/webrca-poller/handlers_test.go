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
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
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

type tokenErr struct{ err error }

func (e *tokenErr) Err() error { return e.err }

// TestPollLoopConfigFaults: a configuration fault (WebRCA 401/403/404, a web page at the base URL,
// SSO rejecting the credentials) turns readiness off at once with the reason and what to check,
// is counted by source and status, and is retried with backoff, not after the full interval; a
// success clears it. Server errors and Retry-After keep their meaning.
func TestPollLoopConfigFaults(t *testing.T) {
	rejected := &sso.RejectedError{Grant: sso.GrantRefreshToken, Status: 400, Code: "invalid_grant", Description: "Offline user session not found"}
	tests := []struct {
		name     string
		err      error
		tokenErr error
		ready    []string // substrings of the readiness error; none: ready
		series   []string // config_errors_total label values, source then status
		minWait  time.Duration
		maxWait  time.Duration
	}{
		{"WebRCA 404: a wrong base URL", &webrca.Error{Kind: webrca.KindClient, Op: "GET incidents page 1", Status: 404, Err: errors.New(`body starts "<html>"`)},
			nil, []string{"WebRCA configuration fault", "HTTP 404", "webrca.base_url"}, []string{"webrca", "404"}, 5 * time.Second, 10 * time.Second},
		{"WebRCA 401 after a fresh token", &webrca.Error{Kind: webrca.KindUnauthorized, Op: "GET incidents page 1", Status: 401, Err: errors.New("WEBRCA-401")},
			nil, []string{"WebRCA configuration fault", "HTTP 401", "access to WebRCA"}, []string{"webrca", "401"}, 5 * time.Second, 10 * time.Second},
		{"a web page at the base URL", &webrca.Error{Kind: webrca.KindNotAPI, Op: "GET incidents page 1", Status: 200, Err: errors.New(`content type "text/html" is not JSON`)},
			nil, []string{"WebRCA configuration fault", "webrca.base_url"}, []string{"webrca", "200"}, 5 * time.Second, 10 * time.Second},
		{"SSO rejects an expired offline token", &webrca.Error{Kind: webrca.KindToken, Op: "GET incidents page 1", Err: rejected},
			rejected, []string{"SSO credentials rejected", "Offline user session not found", "OFFLINE_TOKEN"}, []string{"sso", "400"}, 5 * time.Second, 10 * time.Second},
		{"503 with Retry-After", &webrca.Error{Kind: webrca.KindServer, Op: "GET incidents page 1", Status: 503, RetryAfter: 3 * time.Minute, Err: errors.New("down")},
			nil, nil, nil, 3 * time.Minute, 3 * time.Minute},
		{"SSO busy with Retry-After", &webrca.Error{Kind: webrca.KindToken, Op: "GET incidents page 1", RetryAfter: 2 * time.Minute,
			Err: &sso.TransientError{Grant: sso.GrantRefreshToken, Attempts: 1, RetryAfter: 2 * time.Minute, Err: errors.New("429")}},
			nil, nil, nil, 2 * time.Minute, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			listErr := tt.err
			lister := listerFunc(func(context.Context) ([]webrca.Incident, error) {
				if listErr != nil {
					return nil, listErr
				}
				return []webrca.Incident{{ID: "a", IncidentID: "ITN-1", Summary: "s", Status: "open", CreatedAt: t0}}, nil
			})
			tokens := &tokenErr{err: tt.tokenErr}
			reg := prometheus.NewRegistry()
			l := &pollLoop{
				poller:       poll.New(poll.Config{}, lister, &memStore{m: map[string]poll.State{}}, nopPublisher{}, func() time.Time { return now }),
				schedule:     poll.Schedule{Interval: 10 * time.Minute, Backoff: 10 * time.Second},
				unreadyAfter: time.Hour,
				tokens:       tokens,
				m:            newMetrics(reg, func() bool { return tokens.err != nil }),
				log:          zerolog.Nop(),
				now:          func() time.Time { return now },
			}
			if w := l.once(t.Context()); w < tt.minWait || w > tt.maxWait {
				t.Errorf("wait after the first failure = %s, want %s–%s", w, tt.minWait, tt.maxWait)
			}
			err := l.ready(t.Context())
			switch {
			case len(tt.ready) == 0 && err != nil:
				t.Errorf("ready = %v, want nil: not a configuration fault", err)
			case len(tt.ready) > 0 && err == nil:
				t.Errorf("ready = nil, want a configuration fault at once")
			}
			for _, w := range tt.ready {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("ready = %v, want it to contain %q", err, w)
				}
			}
			fault := 0.0
			if tt.series != nil {
				fault = 1
				if v := testutil.ToFloat64(l.m.configErrors.WithLabelValues(tt.series...)); v != 1 {
					t.Errorf("config_errors_total%v = %v, want 1", tt.series, v)
				}
				if w := l.once(t.Context()); w < 10*time.Second || w > 20*time.Second {
					t.Errorf("wait after the second failure = %s, want the backoff doubled (10–20s), not the interval", w)
				}
			}
			if v := testutil.ToFloat64(l.m.configFault); v != fault {
				t.Errorf("config_fault = %v, want %v", v, fault)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("lint: %v %v", err, problems)
			}

			listErr, tokens.err = nil, nil // fixed
			if w := l.once(t.Context()); w != 10*time.Minute {
				t.Errorf("wait after a success = %s, want the interval", w)
			}
			if err := l.ready(t.Context()); err != nil {
				t.Errorf("ready after the fix = %v", err)
			}
			if v := testutil.ToFloat64(l.m.configFault); v != 0 {
				t.Errorf("config_fault after the fix = %v", v)
			}
		})
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
