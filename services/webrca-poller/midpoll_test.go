package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/pkg/events"
)

// TestRunStoppedMidPoll stops the poller while a poll is half read (page size 1: the first page is
// answered, the second hangs until the process is gone), changes an incident while it is down, and
// starts it again. Every incident state is published exactly once: the half poll lost nothing and
// the restart repeats nothing.
func TestRunStoppedMidPoll(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	f := newFakes(t)
	cfg := writeConfig(t, f, "page_size: 1")

	var mu sync.Mutex
	hang := true
	inFlight := make(chan struct{}, 1)
	f.api.Intercept(func(w http.ResponseWriter, r *http.Request, req webrcatest.Request) bool {
		mu.Lock()
		h := hang
		mu.Unlock()
		if !h || req.Page < 2 {
			return false
		}
		select {
		case inFlight <- struct{}{}:
		default:
		}
		<-r.Context().Done() // the poller gives up the request when it stops
		return true
	})

	s := servicetest.Start(t, run, clientEnv(srv.URL()), "--config", cfg)
	select {
	case <-inFlight:
	case <-time.After(15 * time.Second):
		t.Fatalf("the poll never reached its second page\nlogs:\n%s", s.Logs)
	}
	s.Stop(t)
	before := len(streamMessages(t, js))

	// While it is down, the open incident is resolved.
	f.api.Update("0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", func(inc webrcatest.Incident) {
		inc["status"] = "resolved"
		inc["resolved_at"] = t0.Add(3 * time.Hour).Format(time.RFC3339Nano)
	})
	mu.Lock()
	hang = false
	mu.Unlock()

	s2 := servicetest.Start(t, run, clientEnv(srv.URL()), "--config", cfg)
	wait.For(t, 15*time.Second, func() error {
		return metricLine(t, s2, `doraflow_webrca_poller_polls_total{outcome="ok"} 1`)
	})
	s2.Stop(t)

	ids := map[string]int{}
	states := map[string]bool{}
	for _, m := range streamMessages(t, js) {
		var ev events.IncidentObserved
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		ids[ev.ID]++
		states[fmt.Sprintf("%s resolved=%t", ev.Key, ev.Resolved)] = true
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	// Both Konflux incidents, each in its final state (the open one resolved while we were down).
	for _, want := range []string{"ITN-2026-00317 resolved=true", "ITN-2026-00318 resolved=true"} {
		if !states[want] {
			t.Errorf("no event for %s; events: %v (before the stop: %d)", want, states, before)
		}
	}
	t.Logf("%d incident events before the stop, %d after the restart", before, len(ids))
}
