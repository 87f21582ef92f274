package sink

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

func TestDeploymentIDIsStableUniquePerConnectionAndBounded(t *testing.T) {
	ev := deploymentEvent(318)
	a, b := DeploymentID(ev.ID, 1), DeploymentID(ev.ID, 2)
	if a == b || a != DeploymentID(ev.ID, 1) {
		t.Errorf("ids %q %q: want stable and distinct per connection", a, b)
	}
	long := DeploymentID(strings.Repeat("x", 300), 12345678901)
	odd := DeploymentID("argocd/ns/app 1", 1)
	for _, id := range []string{a, long, odd} {
		if len(id) > maxIDLen || strings.ContainsAny(id, " ") {
			t.Errorf("id %q: want ≤%d characters without spaces", id, maxIDLen)
		}
	}
	if DeploymentID("argocd/ns/app 1", 1) == DeploymentID("argocd/ns/app 2", 1) {
		t.Error("hashed ids collide")
	}
}

func TestBuildDeploymentSkipsWhatDevLakeMustNotCount(t *testing.T) {
	unknown := deploymentEvent(1)
	unknown.Environment = events.EnvironmentUnknown
	redeploy := deploymentEvent(2)
	redeploy.Kind = events.KindRedeploy
	bare := deploymentEvent(3)
	bare.Ranges, bare.AppCommits, bare.Revision = nil, nil, "1.4.2" // a chart version is no commit
	shortSHA := deploymentEvent(4)
	shortSHA.Ranges, shortSHA.AppCommits = nil, []events.CommitRef{{SHA: "3f9a1c0", RepoURL: "https://github.com/o/r"}}
	shortSHA.Sources = nil
	for name, tt := range map[string]struct {
		ev     events.DeploymentEnriched
		gitops bool
		want   string
	}{
		"unknown environment":     {unknown, true, SkipUnknownEnvironment},
		"redeploy":                {redeploy, true, SkipRedeploy},
		"no commit, chart source": {bare, true, SkipNoCommits},
		"short sha only":          {shortSHA, true, SkipNoCommits},
		"gitops fallback off":     {func() events.DeploymentEnriched { e := deploymentEvent(5); e.Ranges, e.AppCommits = nil, nil; return e }(), false, SkipNoCommits},
	} {
		if _, got := BuildDeployment(tt.ev, 1, tt.gitops); got != tt.want {
			t.Errorf("%s: skip = %q, want %q", name, got, tt.want)
		}
	}
	e := newEnv(t)
	if r, err := e.sink.Deployment(context.Background(), unknown); err != nil || r.Skipped != SkipUnknownEnvironment {
		t.Errorf("Deployment(unknown env) = %+v, %v", r, err)
	}
	if n := len(e.rec.bodies()); n != 0 || e.obs.get(e.obs.skipped, "deployments/unknown_environment") != 1 {
		t.Errorf("posted %d, skipped %v", n, e.obs.skipped)
	}
}

func TestCanonicalRepoURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/Org/Repo.git":      "https://github.com/org/repo",
		"http://github.com/org/repo/":          "https://github.com/org/repo",
		"git@github.com:org/repo.git":          "https://github.com/org/repo",
		"ssh://git@GitHub.com/org/repo":        "https://github.com/org/repo",
		"github.com/org/repo":                  "https://github.com/org/repo",
		"https://gitlab.example.com/g/sub/rep": "https://gitlab.example.com/g/sub/rep",
	} {
		if got, err := devlake.CanonicalRepoURL(in); err != nil || got != want {
			t.Errorf("CanonicalRepoURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "quay.io", "oci://quay.io/org/chart", "https://github.com/org"} {
		if got, err := devlake.CanonicalRepoURL(bad); err == nil {
			t.Errorf("CanonicalRepoURL(%q) = %q, want error", bad, got)
		}
	}
}

func TestReplayPostsNothingTwice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	evs := []events.DeploymentEnriched{deploymentEvent(1), deploymentEvent(2), deploymentEvent(3)}
	for range 3 { // the stream replayed twice after the first pass
		for _, ev := range evs {
			if _, err := e.sink.Deployment(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(e.rec.bodies()); n != 6 {
		t.Errorf("posted %d times, want 6 (3 events × 2 connections)", n)
	}
	for _, ev := range evs {
		for _, c := range []uint64{e.c1.ID, e.c2.ID} {
			if n := e.dl.Writes(c, devlaketest.KindDeployment, DeploymentID(ev.ID, c)); n != 1 {
				t.Errorf("connection %d got %s %d times", c, ev.ID, n)
			}
		}
	}
	if got := e.obs.get(e.obs.ledgerSkips, "deployments/duplicate"); got != 12 {
		t.Errorf("ledger skips = %d, want 12", got)
	}
}

func TestFailureOnOneConnectionRetriesOnlyThatOne(t *testing.T) {
	e := newEnv(t)
	ev := deploymentEvent(7)
	e.dl.Reject(e.c2.ID, devlaketest.KindDeployment, DeploymentID(ev.ID, e.c2.ID), "database is locked")
	// 400 is permanent: the error says so and carries DevLake's answer; connection 1 has it.
	_, err := e.sink.Deployment(context.Background(), ev)
	if !IsPermanent(err) || !strings.Contains(err.Error(), "database is locked") || !strings.Contains(err.Error(), "connection 2") {
		t.Fatalf("err = %v, want a permanent error with DevLake's message", err)
	}
	// Now connection 2 is down (retryable), then recovers: connection 1 is never posted again.
	e.dl.Reject(e.c2.ID, devlaketest.KindDeployment, "other", "")
	e.dl.SetDown(503)
	_, err = e.sink.Deployment(context.Background(), ev)
	if err == nil || IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	e.dl.SetDown(0)
	// The test fake still rejects connection 2; lift it by using a fresh id set: re-create the fixture's rule.
	e.dl.Reject(e.c2.ID, devlaketest.KindDeployment, DeploymentID(ev.ID, e.c2.ID), "")
	_, _ = e.sink.Deployment(context.Background(), ev)
	if n := e.dl.Writes(e.c1.ID, devlaketest.KindDeployment, DeploymentID(ev.ID, e.c1.ID)); n != 1 {
		t.Errorf("connection 1 written %d times, want 1", n)
	}
	posts := 0
	for _, s := range e.rec.bodies() {
		if s.conn == e.c1.ID {
			posts++
		}
	}
	if posts != 1 {
		t.Errorf("connection 1 posted %d times, want 1", posts)
	}
}

func TestRetryableFailuresAreRetriedWithinTheDelivery(t *testing.T) {
	e := newEnv(t)
	e.dl.SetFaults(devlaketest.Faults{Seed: 1, ServerErrors: 0.5})
	ok := 0
	for i := range 20 {
		if _, err := e.sink.Deployment(context.Background(), deploymentEvent(int64(100+i))); err == nil {
			ok++
		}
	}
	// With 3 attempts per post and 50% failures most deliveries succeed; the rest are retryable.
	if ok < 12 || e.obs.get(e.obs.posts, "1/deployments/retryable") == 0 {
		t.Errorf("%d of 20 delivered; posts %v", ok, e.obs.posts)
	}
}

func TestUnconfiguredProjectIsPermanentButOthersArePosted(t *testing.T) {
	e := newEnv(t)
	ev := deploymentEvent(9)
	ev.Routing.Targets = append(ev.Routing.Targets, events.Target{Scope: events.ScopeTeam, Team: "ghosts", ProjectID: "77"})
	_, err := e.sink.Deployment(context.Background(), ev)
	if !IsPermanent(err) || !strings.Contains(err.Error(), `project "77"`) {
		t.Fatalf("err = %v", err)
	}
	if len(e.dl.Deployments(e.c1.ID)) != 1 || len(e.dl.Deployments(e.c2.ID)) != 1 {
		t.Error("configured connections must still get the deployment")
	}
}

func TestChangedDeploymentKeepsTheFirstVersion(t *testing.T) {
	e := newEnv(t)
	ev := deploymentEvent(11)
	if _, err := e.sink.Deployment(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	ev.Ranges[0].HeadSHA = apiSHA // re-enriched differently under the same id
	r, err := e.sink.Deployment(context.Background(), ev)
	if err != nil || r.Changed != 2 {
		t.Fatalf("= %+v, %v; want 2 changed", r, err)
	}
	if n := len(e.dl.DeploymentCommits(e.c1.ID)); n != 1 {
		t.Errorf("commit rows = %d, want the first version's 1 (no stale rows)", n)
	}
}

func TestIncidentUpdatesNeverRegress(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 10, 15, 31, 0, 0, time.UTC)
	open := incidentEvent(events.IncidentOpened, "investigating", at)
	resolved := incidentEvent(events.IncidentResolved, "resolved", at.Add(30*time.Minute))
	for _, ev := range []events.IncidentEnriched{open, resolved, open, resolved} { // redelivery of the older one
		if _, err := e.sink.Incident(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []uint64{e.c1.ID, e.c2.ID} {
		iss, _ := e.dl.Issue(c, open.Key)
		if iss.Status != "DONE" || iss.ResolutionDate.IsZero() || iss.LeadTimeMinutes != 45 {
			t.Errorf("connection %d: issue = %+v, want resolved with lead time 45", c, iss)
		}
		if n := e.dl.Writes(c, devlaketest.KindIssue, open.Key); n != 2 {
			t.Errorf("connection %d: %d writes, want 2 (open, resolved)", c, n)
		}
	}
	if e.obs.get(e.obs.ledgerSkips, "issues/stale") != 2 || e.obs.get(e.obs.ledgerSkips, "issues/duplicate") != 2 {
		t.Errorf("ledger skips = %v", e.obs.ledgerSkips)
	}
	// A later re-open is newer and is posted without a resolution date.
	reopened := incidentEvent(events.IncidentReopened, "investigating", at.Add(time.Hour))
	if _, err := e.sink.Incident(ctx, reopened); err != nil {
		t.Fatal(err)
	}
	if iss, _ := e.dl.Issue(e.c1.ID, open.Key); iss.Status != "IN_PROGRESS" || !iss.ResolutionDate.IsZero() {
		t.Errorf("re-opened issue = %+v", iss)
	}
}

// raceSetup returns an environment, an older (open) and a newer (resolved) state of one incident
// routed to one connection, and a second replica sharing the environment's ledger.
func raceSetup(t *testing.T) (e *env, older, newer events.IncidentEnriched, other *Sink) {
	t.Helper()
	e = newEnv(t)
	at := time.Date(2026, 3, 10, 15, 31, 0, 0, time.UTC)
	older = incidentEvent(events.IncidentOpened, "investigating", at)
	newer = incidentEvent(events.IncidentResolved, "resolved", at.Add(time.Hour))
	older.Routing.Targets, newer.Routing.Targets = older.Routing.Targets[:1], newer.Routing.Targets[:1]
	return e, older, newer, New(e.rec, e.store, newObserver(), e.sink.opts)
}

// TestIncidentRaceRestoresTheNewestState interleaves a second replica between this one's post and
// its compare-and-set: the older state loses the race, and DevLake ends with the newer state.
func TestIncidentRaceRestoresTheNewestState(t *testing.T) {
	e, older, newer, other := raceSetup(t)
	ctx := context.Background()
	var raced atomic.Bool
	e.store.beforeUpdate = func(string) {
		if raced.CompareAndSwap(false, true) {
			if _, err := other.Incident(ctx, newer); err != nil {
				t.Error(err)
			}
		}
	}
	// This replica posts the older state after the other one read nothing and posted the newer one.
	if _, err := e.sink.Incident(ctx, older); err != nil {
		t.Fatal(err)
	}
	if iss, _ := e.dl.Issue(e.c1.ID, older.Key); iss.Status != "DONE" || iss.ResolutionDate.IsZero() {
		t.Errorf("DevLake holds %s/%s, want the newer resolved state", iss.Status, iss.OriginalStatus)
	}
	// The older post may have landed after the newer one, so the newer state was posted again.
	if n := e.dl.Writes(e.c1.ID, devlaketest.KindIssue, older.Key); n != 3 {
		t.Errorf("writes = %d, want 3 (newer, older, newer restored)", n)
	}
}

// TestFailedRestoreIsRepeatedByTheNextDelivery: the older state loses the race, and posting the
// newer state again fails. The ledger remembers that a restore is owed, so the redelivery of the
// older state (which alone would be skipped as stale) restores the newer state.
func TestFailedRestoreIsRepeatedByTheNextDelivery(t *testing.T) {
	e, older, newer, other := raceSetup(t)
	ctx := context.Background()
	var raced bool
	e.store.afterGet = func(string) {
		if raced {
			return
		}
		raced = true
		// The other replica posts and records the newer state between this one's read and post,
		// so the older state lands in DevLake last.
		if _, err := other.Incident(ctx, newer); err != nil {
			t.Error(err)
		}
		e.store.beforeUpdate = func(string) {
			e.store.beforeUpdate = nil
			e.dl.SetDown(http.StatusServiceUnavailable) // the restore will fail
		}
	}
	if _, err := e.sink.Incident(ctx, older); err == nil {
		t.Fatal("Incident() = nil while DevLake was down for the restore; want a retryable error")
	}
	if iss, _ := e.dl.Issue(e.c1.ID, older.Key); iss.Status != "IN_PROGRESS" {
		t.Fatalf("before the redelivery DevLake holds %s, want the older IN_PROGRESS state that landed last", iss.Status)
	}
	e.dl.SetDown(0)
	if _, err := e.sink.Incident(ctx, older); err != nil { // the redelivery
		t.Fatal(err)
	}
	if iss, _ := e.dl.Issue(e.c1.ID, older.Key); iss.Status != "DONE" {
		t.Errorf("after the redelivery DevLake holds %s, want the newer DONE state restored", iss.Status)
	}
	// Once restored, the mark is cleared: another stale delivery posts nothing.
	writes := e.dl.Writes(e.c1.ID, devlaketest.KindIssue, older.Key)
	if _, err := e.sink.Incident(ctx, older); err != nil {
		t.Fatal(err)
	}
	if n := e.dl.Writes(e.c1.ID, devlaketest.KindIssue, older.Key); n != writes {
		t.Errorf("a stale delivery after the restore wrote %d more times, want 0", n-writes)
	}
}

// TestConcurrentReplicasConvergeOnTheNewestIncidentState delivers shuffled states of one incident
// from several goroutines sharing one store.
func TestConcurrentReplicasConvergeOnTheNewestIncidentState(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 3, 10, 15, 31, 0, 0, time.UTC)
	var states []events.IncidentEnriched
	for i := range 8 {
		status := "investigating"
		if i%2 == 1 {
			status = "identified"
		}
		states = append(states, incidentEvent(events.IncidentUpdated, status, at.Add(time.Duration(i)*time.Minute)))
	}
	newest := incidentEvent(events.IncidentResolved, "resolved", at.Add(time.Hour))
	states = append(states, newest)
	var wg sync.WaitGroup
	for r := range 4 {
		replica := New(e.rec, e.store, newObserver(), e.sink.opts)
		wg.Go(func() {
			for i := range states {
				ev := states[(i*(r+3))%len(states)] // a different order per replica
				// A retryable error is redelivered in production; here the replica tries again.
				var err error
				for range 5 {
					if _, err = replica.Incident(context.Background(), ev); err == nil {
						break
					}
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, c := range []uint64{e.c1.ID, e.c2.ID} {
		if iss, _ := e.dl.Issue(c, newest.Key); iss.Status != "DONE" || iss.OriginalStatus != "resolved" {
			t.Errorf("connection %d ends at %s/%s, want DONE/resolved", c, iss.Status, iss.OriginalStatus)
		}
	}
}

func TestCircuitPausesADownConnection(t *testing.T) {
	clock := time.Date(2026, 3, 10, 17, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) {
		o.Attempts = 1
		o.Breaker = BreakerConfig{Failures: 2, OpenFor: time.Minute, MaxOpenFor: 4 * time.Minute, ConfigOpenFor: time.Hour}
		o.Now = func() time.Time { return clock }
	})
	ev := deploymentEvent(21)
	ev.Routing.Targets = ev.Routing.Targets[:1]
	e.dl.SetDown(503)
	for range 5 {
		if _, err := e.sink.Deployment(context.Background(), ev); err == nil || IsPermanent(err) {
			t.Fatalf("err = %v, want retryable", err)
		}
	}
	reqs := len(e.dl.Requests())
	if reqs != 2 || e.obs.get(e.obs.posts, "1/deployments/circuit_open") != 3 {
		t.Fatalf("DevLake saw %d requests (want 2, then paused); posts %v", reqs, e.obs.posts)
	}
	if _, err := e.sink.Deployment(context.Background(), ev); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("err = %v, want ErrCircuitOpen", err)
	}
	clock = clock.Add(time.Minute) // one probe; it fails: open for twice as long
	_, _ = e.sink.Deployment(context.Background(), ev)
	clock = clock.Add(time.Minute)
	_, _ = e.sink.Deployment(context.Background(), ev)
	if n := len(e.dl.Requests()); n != 3 {
		t.Errorf("requests = %d, want 3 (one failed probe, then paused for 2m)", n)
	}
	e.dl.SetDown(0)
	clock = clock.Add(time.Minute)
	if _, err := e.sink.Deployment(context.Background(), ev); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if st := e.sink.CircuitStates()[e.c1.ID]; st != StateClosed {
		t.Errorf("state = %s", st)
	}
	want := "1:closed->open 1:open->half_open 1:half_open->open 1:open->half_open 1:half_open->closed"
	if got := strings.Join(e.obs.transitions, " "); got != want {
		t.Errorf("transitions:\n got %s\nwant %s", got, want)
	}
}

func TestConfigErrorsOpenTheCircuitAndAreNotDeadLettered(t *testing.T) {
	clock := time.Date(2026, 3, 10, 17, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) {
		c := o.Connections["1"]
		c.Key = o.Connections["2"].Key // the other connection's key: 403 (out of scope)
		o.Connections["1"] = c
		o.Breaker = BreakerConfig{Failures: 5, OpenFor: time.Second, MaxOpenFor: time.Second, ConfigOpenFor: 5 * time.Minute}
		o.Now = func() time.Time { return clock }
	})
	ev := deploymentEvent(31)
	_, err := e.sink.Deployment(context.Background(), ev)
	if err == nil || IsPermanent(err) || devlake.ClassOf(err) != devlake.ClassConfig {
		t.Fatalf("err = %v, want a retryable configuration error", err)
	}
	if e.obs.get(e.obs.posts, "1/deployments/config_error") != 1 || e.sink.CircuitStates()[e.c1.ID] != StateOpen {
		t.Errorf("posts %v, circuit %v", e.obs.posts, e.sink.CircuitStates())
	}
	if len(e.dl.Deployments(e.c2.ID)) != 1 {
		t.Error("connection 2 must not be held up by connection 1's key")
	}
	// Retried slowly: nothing reaches DevLake on connection 1 until the pause ends.
	before := len(e.dl.Requests())
	_, _ = e.sink.Deployment(context.Background(), ev)
	if len(e.dl.Requests()) != before {
		t.Error("a paused connection was posted to")
	}
}

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	s := New(nil, nil, nil, Options{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, Rand: func() float64 { return 1 }})
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 9: time.Second} {
		if got := s.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempt, got, want)
		}
	}
	s.opts.Rand = func() float64 { return 0 }
	if got := s.backoff(2); got != 100*time.Millisecond {
		t.Errorf("backoff(2) with no jitter = %s, want half of 200ms", got)
	}
}

func TestMixedFailuresAreRetriedUntilOnlyPermanentOnesRemain(t *testing.T) {
	e := newEnv(t)
	ev := deploymentEvent(41)
	e.dl.Reject(e.c2.ID, devlaketest.KindDeployment, DeploymentID(ev.ID, e.c2.ID), "rejected")
	good := e.sink.opts.Connections
	wrong := map[string]Connection{"1": good["1"], "2": good["2"]}
	c := wrong["1"]
	c.Key = good["2"].Key // connection 1 answers 403 (retryable), connection 2 answers 400 (permanent)
	wrong["1"] = c
	opts := e.sink.opts
	opts.Connections = wrong
	_, err := New(e.rec, e.store, e.obs, opts).Deployment(context.Background(), ev)
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("err = %v, want retryable (connection 1 can still succeed) and naming both failures", err)
	}
	_, err = e.sink.Deployment(context.Background(), ev) // the key fixed
	if !IsPermanent(err) || !strings.Contains(err.Error(), "rejected") || strings.Contains(err.Error(), "connection 1") {
		t.Fatalf("err = %v, want only connection 2's rejection, permanent", err)
	}
	if n := e.dl.Writes(e.c1.ID, devlaketest.KindDeployment, DeploymentID(ev.ID, e.c1.ID)); n != 1 {
		t.Errorf("connection 1 writes = %d", n)
	}
}
