package sink

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

// posterFunc is a Poster from a function.
type posterFunc func(kind devlake.Kind, conn uint64) error

func (f posterFunc) Post(_ context.Context, kind devlake.Kind, conn uint64, _ config.Secret, _ []byte) error {
	return f(kind, conn)
}

// TestConfigFaultsAreReportedUntilAProbeSucceeds: a configuration fault pauses its connection and
// makes Ready name it with the answer and what to check, from the first answer (Since) to a
// successful probe; the other connection posts on and is not named.
func TestConfigFaultsAreReportedUntilAProbeSucceeds(t *testing.T) {
	tests := []struct {
		name  string
		fault *devlake.Error
		hint  string
	}{
		{"404 HTML from an ingress",
			&devlake.Error{Class: devlake.ClassConfig, Kind: devlake.KindDeployments, Status: 404, Message: devlake.NotDevLake + ` (text/html): "<html>"`},
			"check integration.devlake.base_url"},
		{"200 web page", &devlake.Error{Class: devlake.ClassConfig, Kind: devlake.KindDeployments, Status: 200, Message: devlake.NotDevLake + ` (text/html): "<!doctype html>"`},
			"the answer is not DevLake's"},
		{"deleted webhook connection", &devlake.Error{Class: devlake.ClassConfig, Kind: devlake.KindDeployments, Status: 404, Message: "record not found"},
			"DevLake has no webhook connection 1"},
		{"pull requests on DevLake before v1.0.3", &devlake.Error{Class: devlake.ClassConfig, Kind: devlake.KindPullRequests, Status: 404, Message: "404 page not found"},
			"devlake_sink.pull_requests: false"},
		{"403", &devlake.Error{Class: devlake.ClassConfig, Kind: devlake.KindIssues, Status: 403, Message: "api key is invalid"},
			"check the API key of connection 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := time.Date(2026, 3, 10, 17, 0, 0, 0, time.UTC)
			broken := true
			s := New(posterFunc(func(kind devlake.Kind, conn uint64) error {
				if conn == 1 && broken {
					return tt.fault
				}
				return nil
			}), newMemStore(), newObserver(), Options{
				Connections: map[string]Connection{"1": {ProjectID: "1", ID: 1}, "2": {ProjectID: "team-a", ID: 2}},
				Attempts:    3, Breaker: BreakerConfig{Failures: 5, OpenFor: time.Second, MaxOpenFor: time.Second, ConfigOpenFor: 5 * time.Minute},
				GitOpsFallback: true, Now: func() time.Time { return clock }, Rand: func() float64 { return 0 },
			})
			ev := deploymentEvent(41)
			if _, err := s.Deployment(context.Background(), ev); err == nil || IsPermanent(err) {
				t.Fatalf("err = %v, want a retryable error", err)
			}
			clock = clock.Add(5 * time.Minute) // the pause ends: one probe, refused again
			if _, err := s.Deployment(context.Background(), ev); err == nil || IsPermanent(err) {
				t.Fatalf("err = %v, want a retryable error", err)
			}
			want := []ConfigFault{{Connection: 1, Cause: tt.fault, Since: clock.Add(-5 * time.Minute), NextProbe: clock.Add(5 * time.Minute)}}
			if diff := cmp.Diff(want, s.ConfigFaults(), cmp.Comparer(func(a, b error) bool { return a.Error() == b.Error() })); diff != "" {
				t.Errorf("ConfigFaults (-want +got):\n%s", diff)
			}
			err := s.Ready()
			for _, w := range []string{"connection 1 (project 1)", "since 2026-03-10T17:00:00Z", "next probe 2026-03-10T17:10:00Z", tt.fault.Error(), tt.hint} {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Ready() = %v, want it to contain %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "connection 2") {
				t.Errorf("Ready() names the healthy connection: %v", err)
			}

			broken = false
			clock = clock.Add(5 * time.Minute)
			if _, err := s.Deployment(context.Background(), ev); err != nil {
				t.Fatalf("after the fix: %v", err)
			}
			if f := s.ConfigFaults(); len(f) != 0 || s.Ready() != nil {
				t.Errorf("after a successful probe: faults %v, ready %v", f, s.Ready())
			}
		})
	}
}
