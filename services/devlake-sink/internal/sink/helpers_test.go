package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

// memStore is a Store with JetStream KV's compare-and-set semantics.
type memStore struct {
	mu   sync.Mutex
	rev  uint64
	vals map[string]memEntry
	// beforeUpdate, when set, runs before each Update/Create (to interleave another writer).
	beforeUpdate func(key string)
	// afterGet, when set, runs after each Get has read (to interleave another writer).
	afterGet func(key string)
}

type memEntry struct {
	val []byte
	rev uint64
}

func newMemStore() *memStore { return &memStore{vals: map[string]memEntry{}} }

func (m *memStore) Get(_ context.Context, key string) ([]byte, uint64, error) {
	if m.afterGet != nil {
		defer m.afterGet(key)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.vals[key]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return append([]byte(nil), e.val...), e.rev, nil
}

func (m *memStore) Create(_ context.Context, key string, value []byte) (uint64, error) {
	if m.beforeUpdate != nil {
		m.beforeUpdate(key)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[key]; ok {
		return 0, ErrExists
	}
	m.rev++
	m.vals[key] = memEntry{val: append([]byte(nil), value...), rev: m.rev}
	return m.rev, nil
}

func (m *memStore) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if m.beforeUpdate != nil {
		m.beforeUpdate(key)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.vals[key]; !ok || e.rev != rev {
		return 0, ErrConflict
	}
	m.rev++
	m.vals[key] = memEntry{val: append([]byte(nil), value...), rev: m.rev}
	return m.rev, nil
}

// countingObserver records what the sink reported.
type countingObserver struct {
	mu          sync.Mutex
	posts       map[string]int // "<conn>/<kind>/<outcome>"
	ledgerSkips map[string]int // "<kind>/<reason>"
	skipped     map[string]int
	transitions []string
}

func newObserver() *countingObserver {
	return &countingObserver{posts: map[string]int{}, ledgerSkips: map[string]int{}, skipped: map[string]int{}}
}

func (o *countingObserver) Posted(conn uint64, kind devlake.Kind, outcome string, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.posts[fmt.Sprintf("%d/%s/%s", conn, kind, outcome)]++
}

func (o *countingObserver) LedgerSkip(kind devlake.Kind, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ledgerSkips[string(kind)+"/"+reason]++
}

func (o *countingObserver) Skipped(kind devlake.Kind, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.skipped[string(kind)+"/"+reason]++
}

func (o *countingObserver) CircuitChanged(conn uint64, from, to State, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.transitions = append(o.transitions, fmt.Sprintf("%d:%s->%s", conn, from, to))
}

func (o *countingObserver) get(m map[string]int, k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[k]
}

// recordingPoster records the exact bytes posted and forwards them to next.
type recordingPoster struct {
	next Poster
	mu   sync.Mutex
	sent []sent
}

type sent struct {
	conn uint64
	kind devlake.Kind
	body []byte
}

func (r *recordingPoster) Post(ctx context.Context, kind devlake.Kind, conn uint64, key config.Secret, body []byte) error {
	r.mu.Lock()
	r.sent = append(r.sent, sent{conn: conn, kind: kind, body: append([]byte(nil), body...)})
	r.mu.Unlock()
	return r.next.Post(ctx, kind, conn, key, body)
}

func (r *recordingPoster) bodies() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.sent...)
}

// env is a sink wired to a fake DevLake with two connections: project "1" (global) → connection 1
// and project "2" (team payments) → connection 2.
type env struct {
	dl     *devlaketest.DevLake
	c1, c2 devlaketest.Connection
	store  *memStore
	obs    *countingObserver
	rec    *recordingPoster
	sink   *Sink
	now    time.Time
}

func newEnv(t testing.TB, mod ...func(*Options)) *env {
	t.Helper()
	dl := devlaketest.Start(t)
	e := &env{dl: dl, c1: dl.AddConnection("global"), c2: dl.AddConnection("payments"), store: newMemStore(),
		obs: newObserver(), now: time.Date(2026, 3, 10, 17, 0, 0, 0, time.UTC)}
	client, err := devlake.New(dl.URL, 2*time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.rec = &recordingPoster{next: client}
	opts := Options{
		Connections: map[string]Connection{
			"1": {ProjectID: "1", ID: e.c1.ID, Key: config.NewSecret(e.c1.APIKey)},
			"2": {ProjectID: "2", ID: e.c2.ID, Key: config.NewSecret(e.c2.APIKey)},
		},
		Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, RequestTimeout: 2 * time.Second,
		Breaker:        BreakerConfig{Failures: 100, OpenFor: time.Second, MaxOpenFor: time.Second, ConfigOpenFor: time.Second},
		GitOpsFallback: true, Now: func() time.Time { return e.now }, Rand: func() float64 { return 0.5 },
	}
	for _, m := range mod {
		m(&opts)
	}
	e.sink = New(e.rec, e.store, e.obs, opts)
	return e
}

var (
	t0 = time.Date(2026, 3, 10, 14, 2, 11, 0, time.UTC)
	t1 = time.Date(2026, 3, 10, 14, 4, 57, 0, time.UTC)
)

const (
	appSHA    = "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d"
	gitopsSHA = "b7e2d94a0c1f3e5a7c9b1d3f5e7a9c1b3d5f7a90"
	apiSHA    = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
)

var bothTargets = events.Routing{Teams: []string{"payments"}, Targets: []events.Target{
	{Scope: events.ScopeGlobal, ProjectID: "1"}, {Scope: events.ScopeTeam, Team: "payments", ProjectID: "2"}}}

func deploymentEvent(history int64) events.DeploymentEnriched {
	uid := "3b0c3a4e-93a1-4f0e-8a55-1a6f2b7d9e10"
	return events.DeploymentEnriched{
		DeploymentObserved: events.DeploymentObserved{
			ID: events.DeploymentID("argocd-hub", uid, history), Source: "argocd", Instance: "argocd-hub",
			Cluster: "prod-eu-west-1", Namespace: "argocd", Application: "checkout-api-prod-eu-west-1",
			Component: "checkout-api", Environment: events.EnvironmentProduction, OriginalEnvironment: "prod-eu-west-1",
			Kind: events.KindDeploy, Result: events.ResultSuccess, Revision: gitopsSHA,
			Sources:    []events.Source{{RepoURL: "https://github.com/example-org/gitops.git", TargetRevision: "main"}},
			AppCommits: []events.CommitRef{{SHA: appSHA, RepoURL: "https://github.com/Example-Org/checkout-api", Via: "image_tag"}},
			// A local zone and nanoseconds: the wire form must still be UTC seconds with Z.
			StartedAt:  t0.In(time.FixedZone("CET", 3600)).Add(123456789),
			FinishedAt: t1.Add(987654321),
			ArgoCD:     &events.ArgoCDRef{UID: uid, HistoryID: history, OperationStartedAt: t0},
		},
		Commits: []events.Commit{{SHA: appSHA, RepoURL: "https://github.com/example-org/checkout-api", Title: "Cache tax rules per region"}},
		Ranges: []events.CommitRange{{RepoURL: "https://github.com/example-org/checkout-api", BaseSHA: apiSHA,
			HeadSHA: appSHA, Status: events.CompareAhead, Commits: 1}},
		Routing: bothTargets,
	}
}

func incidentEvent(change events.IncidentChange, status string, observed time.Time) events.IncidentEnriched {
	created := time.Date(2026, 3, 10, 15, 20, 0, 412733000, time.UTC)
	ev := events.IncidentEnriched{
		IncidentObserved: events.IncidentObserved{
			Source: "webrca", IncidentID: "0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", Key: "ITN-2026-00317",
			Change: change, Title: "Checkout latency above SLO in eu-west-1", Status: status, Severity: "2",
			Products: []string{"konflux"}, URL: "https://web-rca.devshift.net/incident/ITN-2026-00317",
			CreatedAt: created, UpdatedAt: observed.Add(-30 * time.Second), ObservedAt: observed, Fingerprint: status + observed.Format("1504"),
		},
		Routing:    bothTargets,
		Components: []string{"checkout-api"},
	}
	if status == "resolved" {
		ev.Resolved = true
		ev.ResolvedAt = time.Date(2026, 3, 10, 16, 5, 0, 301877000, time.UTC)
	}
	ev.ID = events.IncidentEventID("webrca", ev.IncidentID, change, ev.Fingerprint)
	return ev
}

// mustValid fails the test when a sample event does not validate (the router would dead-letter it).
func mustValid(t *testing.T, ev interface{ Validate() error }) {
	t.Helper()
	if err := ev.Validate(); err != nil {
		t.Fatalf("sample event invalid: %v", err)
	}
}

func pretty(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}
