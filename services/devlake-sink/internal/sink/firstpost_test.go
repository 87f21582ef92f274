package sink

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

// distinctDeployments returns n deployments routed to project "1" only.
func distinctDeployments(n int) []events.DeploymentEnriched {
	out := make([]events.DeploymentEnriched, n)
	for i := range out {
		out[i] = deploymentEvent(int64(500 + i))
		out[i].Routing.Targets = out[i].Routing.Targets[:1]
	}
	return out
}

// TestConcurrentFirstPostsToAFreshConnectionGoOneAtATime: DevLake creates a connection's board or
// scope in the first write, and concurrent first writes fail there (23505). Until one post to a
// connection succeeded, the sink posts to it one at a time, so a burst of events on a fresh
// connection is posted without a single conflict.
func TestConcurrentFirstPostsToAFreshConnectionGoOneAtATime(t *testing.T) {
	e := newEnv(t)
	e.dl.SetFirstWriteWindow(200 * time.Millisecond)
	evs := distinctDeployments(8)
	errs := make([]error, len(evs))
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Go(func() { _, errs[i] = e.sink.Deployment(context.Background(), ev) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("deployment %d: %v", i, err)
		}
	}
	if n := e.dl.DeploymentCount(e.c1.ID); n != len(evs) {
		t.Errorf("%d deployments stored, want %d", n, len(evs))
	}
	if got := e.dl.StatusCounts(); got[400] != 0 || got[200] != len(evs) {
		t.Errorf("answers = %v, want %d × 200 and no 400 (duplicate key)", got, len(evs))
	}
}

// TestUniqueViolationIsRetriedNotDeadLettered: another replica's first post is still creating the
// connection's scope, so this one's is answered 400 duplicate key (SQLSTATE 23505). That is a
// transient conflict: retried, never dead-lettered, and posted once the scope exists.
func TestUniqueViolationIsRetriedNotDeadLettered(t *testing.T) {
	e := newEnv(t)
	other := New(e.rec, e.store, newObserver(), e.sink.opts) // a second replica
	release := e.dl.HoldFirstPosts()
	defer release()
	evs := distinctDeployments(2)
	first := make(chan error, 1)
	go func() {
		_, err := other.Deployment(context.Background(), evs[0])
		first <- err
	}()
	wait.For(t, 5*time.Second, func() error {
		if n := e.dl.Pending(); n != 1 {
			return fmt.Errorf("%d first posts held, want 1", n)
		}
		return nil
	})
	_, err := e.sink.Deployment(context.Background(), evs[1])
	if err == nil || IsPermanent(err) {
		t.Fatalf("conflicting first post: err = %v, want a retryable error", err)
	}
	if n := e.obs.get(e.obs.posts, fmt.Sprintf("%d/deployments/retryable", e.c1.ID)); n != e.sink.opts.Attempts {
		t.Errorf("retryable answers = %d, want %d (every attempt within the delivery): %v", n, e.sink.opts.Attempts, e.obs.posts)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := e.sink.Deployment(context.Background(), evs[1]); err != nil { // the redelivery
		t.Fatalf("redelivery: %v", err)
	}
	if n := e.dl.Writes(e.c1.ID, devlaketest.KindDeployment, DeploymentID(evs[1].ID, e.c1.ID)); n != 1 {
		t.Errorf("writes = %d, want 1", n)
	}
}
