package sink

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

// overlappingPoster holds each incident post until the next one starts (or a short bound passes),
// so that the deliveries of consecutive states overlap the way concurrent handlers make them.
type overlappingPoster struct {
	next    Poster
	started chan struct{}
	mu      sync.Mutex
	waiting []chan struct{}
	bodies  []string
}

func (p *overlappingPoster) Post(ctx context.Context, kind devlake.Kind, conn uint64, key config.Secret, body []byte) error {
	if kind != devlake.KindIssues {
		return p.next.Post(ctx, kind, conn, key, body)
	}
	mine := make(chan struct{})
	p.mu.Lock()
	for _, w := range p.waiting {
		close(w) // a later post started: the earlier ones may finish now
	}
	p.waiting = []chan struct{}{mine}
	var is struct{ OriginalStatus, UpdatedDate string }
	_ = json.Unmarshal(body, &is)
	p.bodies = append(p.bodies, is.OriginalStatus+"@"+is.UpdatedDate)
	p.mu.Unlock()
	p.started <- struct{}{}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-mine:
	case <-t.C:
	case <-ctx.Done():
	}
	return p.next.Post(ctx, kind, conn, key, body)
}

// TestRacingIncidentStatesArePostedOncePerState: seven states of one incident (opened, resolved,
// re-opened, …) are handled concurrently, each delivery starting while the previous one is still
// posting. Each state is posted exactly once, in order, and DevLake ends with the newest; before,
// every lost compare-and-set re-posted a state (13 posts for 7 states).
func TestRacingIncidentStatesArePostedOncePerState(t *testing.T) {
	e := newEnv(t)
	p := &overlappingPoster{next: e.rec, started: make(chan struct{}, 64)}
	sk := New(p, e.store, e.obs, e.sink.opts)
	at := time.Date(2026, 3, 10, 15, 31, 0, 0, time.UTC)
	statuses := []string{"investigating", "resolved", "investigating", "resolved", "investigating", "monitoring", "resolved"}
	var states []events.IncidentEnriched
	var want []string
	for i, st := range statuses {
		change := events.IncidentReopened
		switch {
		case i == 0:
			change = events.IncidentOpened
		case st == "resolved":
			change = events.IncidentResolved
		case st == "monitoring":
			change = events.IncidentUpdated
		}
		ev := incidentEvent(change, st, at.Add(time.Duration(i)*10*time.Minute))
		ev.Routing.Targets = ev.Routing.Targets[:1]
		mustValid(t, ev)
		states = append(states, ev)
		want = append(want, st+"@"+devlake.At(ev.UpdatedAt).String())
	}
	var wg sync.WaitGroup
	for _, ev := range states {
		wg.Go(func() {
			if _, err := sk.Incident(context.Background(), ev); err != nil {
				t.Error(err)
			}
		})
		<-p.started // the next state's delivery starts while this one is posting
	}
	wg.Wait()
	p.mu.Lock()
	got := p.bodies
	p.mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("posted states (-want +got), %d posts for %d states:\n%s", len(got), len(want), diff)
	}
	if iss, _ := e.dl.Issue(e.c1.ID, states[0].Key); iss.Status != "DONE" || iss.ResolutionDate.IsZero() {
		t.Errorf("DevLake holds %s/%s, want the newest (resolved) state", iss.Status, iss.OriginalStatus)
	}
}
