package poll

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/webrca"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 3, 10, 15, 20, 0, 412733000, time.UTC)

// lister returns incs, or err.
type lister struct {
	incs []webrca.Incident
	err  error
}

func (l *lister) List(context.Context) ([]webrca.Incident, error) {
	if l.err != nil {
		return nil, l.err
	}
	return append([]webrca.Incident(nil), l.incs...), nil
}

// store is an in-memory Store counting writes.
type store struct {
	m      map[string]State
	puts   int
	putErr error
}

func (s *store) Get(_ context.Context, id string) (State, bool, error) {
	st, ok := s.m[id]
	return st, ok, nil
}

func (s *store) Put(_ context.Context, id string, st State) error {
	if s.putErr != nil {
		return s.putErr
	}
	s.m[id] = st
	s.puts++
	return nil
}

// publisher records events; failAt makes the n-th publish (1-based) fail once.
type publisher struct {
	got    []events.IncidentObserved
	calls  int
	failAt int
}

func (p *publisher) Publish(_ context.Context, ev events.IncidentObserved) error {
	p.calls++
	if p.calls == p.failAt {
		return errors.New("nats: timeout")
	}
	p.got = append(p.got, ev)
	return nil
}

type harness struct {
	l   *lister
	s   *store
	p   *publisher
	now time.Time
	pl  *Poller
}

func newHarness(products ...string) *harness {
	h := &harness{l: &lister{}, s: &store{m: map[string]State{}}, p: &publisher{}, now: t0}
	h.pl = New(Config{Products: products}, h.l, h.s, h.p, func() time.Time { return h.now })
	return h
}

func (h *harness) poll(t *testing.T) Result {
	t.Helper()
	res, err := h.pl.Poll(t.Context())
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	return res
}

func incident(id, key string) webrca.Incident {
	return webrca.Incident{ID: id, IncidentID: key, Summary: "Checkout latency above SLO", Description: "p99 up",
		Status: "investigating", Severity: "2", Products: []string{"Konflux"}, CreatedAt: t0,
		UpdatedAt: t0, LastChangedAt: t0}
}

// TestLifecycleGolden runs an incident through open → (no change) → update → resolve → (background
// updated_at bump) → reopen → resolve again, and pins every published event.
func TestLifecycleGolden(t *testing.T) {
	h := newHarness("konflux")
	inc := incident("0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", "ITN-2026-00317")
	step := func(d time.Duration, mutate func(*webrca.Incident), wantChanges ...events.IncidentChange) {
		t.Helper()
		h.now = h.now.Add(d)
		mutate(&inc)
		h.l.incs = []webrca.Incident{inc}
		before := len(h.p.got)
		h.poll(t)
		var got []events.IncidentChange
		for _, ev := range h.p.got[before:] {
			got = append(got, ev.Change)
		}
		if diff := cmp.Diff(wantChanges, got); diff != "" {
			t.Fatalf("at %s: changes (-want +got)\n%s", h.now.Format(time.RFC3339), diff)
		}
	}
	step(0, func(*webrca.Incident) {}, events.IncidentOpened)
	step(time.Minute, func(*webrca.Incident) {})
	step(time.Minute, func(i *webrca.Incident) {
		i.Severity, i.LastChangedAt = "1", t0.Add(90*time.Second)
	}, events.IncidentUpdated)
	step(time.Minute, func(i *webrca.Incident) {
		i.Status, i.ResolvedAt, i.LastChangedAt = "resolved", t0.Add(150*time.Second), t0.Add(150*time.Second)
	}, events.IncidentResolved)
	step(time.Minute, func(i *webrca.Incident) { i.UpdatedAt = t0.Add(time.Hour) }) // not a change
	step(time.Minute, func(i *webrca.Incident) {
		i.Status, i.ResolvedAt, i.ReopenCounter, i.LastChangedAt = "investigating", time.Time{}, 1, t0.Add(5*time.Minute)
	}, events.IncidentReopened)
	step(time.Minute, func(i *webrca.Incident) {
		i.Status, i.ClosedAt, i.LastChangedAt = "closed", t0.Add(6*time.Minute), t0.Add(6*time.Minute)
	}, events.IncidentResolved)
	step(time.Minute, func(*webrca.Incident) {})

	ids := map[string]bool{}
	for _, ev := range h.p.got {
		if err := ev.Validate(); err != nil {
			t.Errorf("published an invalid event: %v", err)
		}
		if ids[ev.ID] {
			t.Errorf("event id %s published twice", ev.ID)
		}
		ids[ev.ID] = true
	}
	golden(t, "lifecycle.golden.json", h.p.got)

	// A restart with the same store publishes nothing.
	p2 := New(Config{Products: []string{"konflux"}}, h.l, h.s, h.p, func() time.Time { return h.now.Add(time.Hour) })
	before := len(h.p.got)
	if _, err := p2.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.p.got) - before; n != 0 {
		t.Errorf("a restarted poller published %d events, want 0", n)
	}
}

func TestProductFiltering(t *testing.T) {
	mk := func(id string, products ...string) webrca.Incident {
		inc := incident(id, "ITN-"+id)
		inc.Products = products
		return inc
	}
	incs := []webrca.Incident{
		mk("a", "Konflux"),
		mk("b", "  KONFLUX  "),
		mk("c", "quay"),
		mk("d", "Quay", "konflux", "Konflux"),
		mk("e"),
		mk("f", "Konflux-CI"),
	}
	tests := []struct {
		name         string
		products     []string
		want         map[string][]string // incident → products in its event
		otherProduct int
	}{
		{"one product, case and space ignored", []string{"konflux"},
			map[string][]string{"a": {"konflux"}, "b": {"konflux"}, "d": {"konflux"}}, 3},
		{"two products, configured spelling kept", []string{" Quay ", "Konflux"},
			map[string][]string{"a": {"Konflux"}, "b": {"Konflux"}, "c": {"Quay"}, "d": {"Konflux", "Quay"}}, 2},
		{"none configured keeps every incident", nil,
			map[string][]string{"a": {"Konflux"}, "b": {"KONFLUX"}, "c": {"quay"}, "d": {"Quay", "konflux"}, "e": nil, "f": {"Konflux-CI"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(tt.products...)
			h.l.incs = incs
			res := h.poll(t)
			got := map[string][]string{}
			for _, ev := range h.p.got {
				got[ev.IncidentID] = ev.Products
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("published (-want +got)\n%s", diff)
			}
			if res.OtherProduct != tt.otherProduct || res.Matched != len(tt.want) || res.Listed != len(incs) {
				t.Errorf("result %+v, want %d matched, %d other", res, len(tt.want), tt.otherProduct)
			}
		})
	}
}

func TestResolution(t *testing.T) {
	created := t0
	at := func(m int) time.Time { return created.Add(time.Duration(m) * time.Minute) }
	tests := []struct {
		name         string
		mutate       func(*webrca.Incident)
		wantResolved bool
		wantAt       time.Time
		wantInferred bool
		wantClamped  bool
	}{
		{"zero resolved_at and an open status: unresolved", func(*webrca.Incident) {}, false, time.Time{}, false, false},
		{"unknown status: unresolved", func(i *webrca.Incident) { i.Status = "Mitigating-Now" }, false, time.Time{}, false, false},
		{"resolved_at set with an open status: resolved", func(i *webrca.Incident) { i.ResolvedAt = at(10) }, true, at(10), false, false},
		{"resolved_at wins over closed_at", func(i *webrca.Incident) {
			i.Status, i.ResolvedAt, i.ClosedAt = "closed", at(10), at(20)
		}, true, at(10), false, false},
		{"closed: closed_at", func(i *webrca.Incident) { i.Status, i.ClosedAt = "Closed", at(20) }, true, at(20), false, false},
		{"resolved: last_changed_at, never updated_at", func(i *webrca.Incident) {
			i.Status, i.LastChangedAt, i.UpdatedAt = "RESOLVED", at(30), at(99)
		}, true, at(30), false, false},
		{"resolved with no time: first seen resolved", func(i *webrca.Incident) {
			i.Status, i.LastChangedAt, i.UpdatedAt = "resolved", time.Time{}, at(99)
		}, true, t0.Add(time.Hour), true, false},
		{"resolved before created: clamped", func(i *webrca.Incident) {
			i.ResolvedAt = created.Add(-time.Hour)
		}, true, created, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inc := incident("x", "ITN-1")
			tt.mutate(&inc)
			d := Decide(DefaultUIBase, inc, []string{"Konflux"}, State{}, t0.Add(time.Hour))
			ev := d.Event
			if ev == nil {
				t.Fatal("no event for a new incident")
			}
			if ev.Resolved != tt.wantResolved || !ev.ResolvedAt.Equal(tt.wantAt) || ev.ResolvedAtInferred != tt.wantInferred || d.Clamped != tt.wantClamped {
				t.Errorf("resolved %v at %v inferred %v clamped %v; want %v at %v inferred %v clamped %v",
					ev.Resolved, ev.ResolvedAt, ev.ResolvedAtInferred, d.Clamped, tt.wantResolved, tt.wantAt, tt.wantInferred, tt.wantClamped)
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("event invalid: %v", err)
			}
		})
	}
}

func TestMapping(t *testing.T) {
	inc := incident("0b9d6f52", "ITN-2026-00317")
	inc.Status, inc.Summary, inc.Severity = "", "  ", " 3 "
	d := Decide(DefaultUIBase, inc, []string{"Konflux"}, State{}, t0.Add(time.Hour))
	ev := *d.Event
	want := events.IncidentObserved{ID: ev.ID, Source: "webrca", IncidentID: "0b9d6f52", Key: "ITN-2026-00317",
		Change: events.IncidentOpened, Title: "ITN-2026-00317", Description: "p99 up", Status: "unknown",
		Severity: "3", Products: []string{"Konflux"}, URL: "https://web-rca.devshift.net/incident/ITN-2026-00317",
		CreatedAt: t0, UpdatedAt: t0, ObservedAt: t0.Add(time.Hour), Fingerprint: ev.Fingerprint}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if ev.ID != events.IncidentEventID("webrca", "0b9d6f52", events.IncidentOpened, ev.Fingerprint) {
		t.Errorf("id %s is not IncidentEventID(source, uuid, change, fingerprint)", ev.ID)
	}
}

// TestFingerprint checks every mapped field moves the fingerprint, and ObservedAt and updated_at
// do not.
func TestFingerprint(t *testing.T) {
	base := incident("x", "ITN-1")
	fp := func(mutate func(*webrca.Incident), now time.Time) string {
		inc := base
		mutate(&inc)
		return Decide(DefaultUIBase, inc, inc.Products, State{}, now).Event.Fingerprint
	}
	ref := fp(func(*webrca.Incident) {}, t0)
	same := map[string]func(*webrca.Incident){
		"updated_at":  func(i *webrca.Incident) { i.UpdatedAt = t0.Add(time.Hour) },
		"status case": func(i *webrca.Incident) { i.Status = "Investigating" },
		"private":     func(i *webrca.Incident) { i.Private = true },
	}
	for name, m := range same {
		if got := fp(m, t0.Add(time.Hour)); got != ref {
			t.Errorf("%s changed the fingerprint", name)
		}
	}
	differ := map[string]func(*webrca.Incident){
		"status":          func(i *webrca.Incident) { i.Status = "pending_customer" },
		"severity":        func(i *webrca.Incident) { i.Severity = "1" },
		"summary":         func(i *webrca.Incident) { i.Summary = "other" },
		"description":     func(i *webrca.Incident) { i.Description = "other" },
		"last_changed_at": func(i *webrca.Incident) { i.LastChangedAt = t0.Add(time.Second) },
		"resolved_at":     func(i *webrca.Incident) { i.ResolvedAt = t0.Add(time.Second) },
		"products":        func(i *webrca.Incident) { i.Products = []string{"Quay"} },
		"reopen_counter":  func(i *webrca.Incident) { i.ReopenCounter = 1 },
		"incident_id":     func(i *webrca.Incident) { i.IncidentID = "ITN-2" },
	}
	for name, m := range differ {
		if got := fp(m, t0); got == ref {
			t.Errorf("%s did not change the fingerprint", name)
		}
	}
}

func TestInferredResolutionTimeIsStable(t *testing.T) {
	h := newHarness()
	inc := incident("x", "ITN-1")
	inc.Status, inc.LastChangedAt = "closed", time.Time{}
	h.l.incs = []webrca.Incident{inc}
	res := h.poll(t)
	if len(res.Published) != 1 || !res.Published[0].NewlyInferred {
		t.Fatalf("first poll: %+v, want one event with a newly inferred time", res.Published)
	}
	first := h.p.got[0].ResolvedAt
	for range 3 {
		h.now = h.now.Add(time.Hour)
		if res := h.poll(t); len(res.Published) != 0 {
			t.Fatalf("a later poll republished: %+v", res.Published)
		}
	}
	inc.Severity = "1"
	h.l.incs = []webrca.Incident{inc}
	h.now = h.now.Add(time.Hour)
	res = h.poll(t)
	if len(res.Published) != 1 || !res.Published[0].Event.ResolvedAt.Equal(first) || res.Published[0].NewlyInferred {
		t.Errorf("update of an inferred resolution: %+v, want the first inferred time %v kept", res.Published, first)
	}
}

func TestInvalidIncidents(t *testing.T) {
	h := newHarness()
	a, b := incident("a", "ITN-A"), incident("b", "ITN-B")
	b.Invalid = true
	h.l.incs = []webrca.Incident{a, b}
	res := h.poll(t)
	if len(h.p.got) != 1 || h.p.got[0].IncidentID != "a" || res.Invalid != 1 || res.Matched != 1 || len(res.NewlyInvalid) != 0 {
		t.Fatalf("first poll: published %d, result %+v; want only a, b dropped without cleanup", len(h.p.got), res)
	}
	// a is declared invalid after it was published: it needs a manual cleanup, reported once.
	a.Invalid = true
	h.l.incs = []webrca.Incident{a, b}
	res = h.poll(t)
	if diff := cmp.Diff([]string{"a"}, res.NewlyInvalid); diff != "" || len(h.p.got) != 1 || res.InvalidPublished != 1 {
		t.Fatalf("newly invalid (-want +got)\n%s\nresult %+v", diff, res)
	}
	res = h.poll(t)
	if len(res.NewlyInvalid) != 0 || res.InvalidPublished != 1 || len(h.p.got) != 1 {
		t.Errorf("third poll reported again: %+v", res)
	}
	// Declared valid again: a is unchanged (nothing to publish), b is new.
	a.Invalid, b.Invalid = false, false
	h.l.incs = []webrca.Incident{a, b}
	h.poll(t)
	if len(h.p.got) != 2 || h.p.got[1].IncidentID != "b" || h.p.got[1].Change != events.IncidentOpened {
		t.Errorf("after un-invalidating: %+v, want b opened only", h.p.got)
	}
	if h.s.m["a"].Invalid {
		t.Errorf("a's state still marked invalid")
	}
}

func TestFailuresLeaveStateBehind(t *testing.T) {
	t.Run("list error publishes and stores nothing", func(t *testing.T) {
		h := newHarness()
		h.l.err = errors.New("boom")
		res, err := h.pl.Poll(t.Context())
		if !errors.Is(err, ErrList) || len(h.p.got) != 0 || h.s.puts != 0 || res.Listed != 0 {
			t.Fatalf("Poll = %+v, %v; want ErrList and nothing done", res, err)
		}
	})
	t.Run("publish error stops before storing; the retry reuses the id", func(t *testing.T) {
		h := newHarness()
		h.p.failAt = 2
		h.l.incs = []webrca.Incident{incident("a", "ITN-A"), incident("b", "ITN-B"), incident("c", "ITN-C")}
		res, err := h.pl.Poll(t.Context())
		if !errors.Is(err, ErrPublish) || len(res.Published) != 1 || h.s.puts != 1 {
			t.Fatalf("Poll = %d published, %d stored, %v; want 1, 1, ErrPublish", len(res.Published), h.s.puts, err)
		}
		if _, ok := h.s.m["b"]; ok {
			t.Fatal("b's state advanced without a publish")
		}
		attempted := Decide(DefaultUIBase, h.l.incs[1], []string{"Konflux"}, State{}, h.now).Event.ID
		h.now = h.now.Add(time.Minute)
		res = h.poll(t)
		if len(res.Published) != 2 || res.Published[0].Event.ID != attempted {
			t.Errorf("retry published %+v, want b (same id %s) and c", res.Published, attempted)
		}
	})
	t.Run("store error after publish: the retry republishes the same id", func(t *testing.T) {
		h := newHarness()
		h.s.putErr = errors.New("kv down")
		h.l.incs = []webrca.Incident{incident("a", "ITN-A")}
		_, err := h.pl.Poll(t.Context())
		if !errors.Is(err, ErrState) || len(h.p.got) != 1 {
			t.Fatalf("Poll error = %v with %d published; want ErrState after one publish", err, len(h.p.got))
		}
		h.s.putErr = nil
		h.now = h.now.Add(time.Minute)
		h.poll(t)
		if len(h.p.got) != 2 || h.p.got[0].ID != h.p.got[1].ID {
			t.Errorf("republished ids %s, %s; want equal (JetStream drops the repeat)", h.p.got[0].ID, h.p.got[1].ID)
		}
	})
	t.Run("an event failing validation is skipped, not published", func(t *testing.T) {
		h := newHarness()
		bad := incident("a", "ITN-A")
		bad.CreatedAt = time.Time{} // the decoder rejects this; Poll must not publish it regardless
		h.l.incs = []webrca.Incident{bad, incident("b", "ITN-B")}
		res := h.poll(t)
		if len(res.Rejected) != 1 || res.Rejected[0].IncidentID != "a" || len(h.p.got) != 1 {
			t.Errorf("result %+v, want a rejected and b published", res)
		}
	})
}

func TestScheduleNext(t *testing.T) {
	s := Schedule{Interval: 30 * time.Minute, Jitter: time.Minute, Backoff: 10 * time.Second}
	tests := []struct {
		name       string
		failures   int
		retryable  bool
		retryAfter time.Duration
		rnd        float64
		want       time.Duration
	}{
		{"success", 0, false, 0, 0, 30 * time.Minute},
		{"success with jitter", 0, false, 0, 0.5, 30*time.Minute + 30*time.Second},
		{"first retryable failure", 1, true, 0, 0.999999, 10 * time.Second},
		{"first retryable failure, low jitter", 1, true, 0, 0, 5 * time.Second},
		{"third failure doubles twice", 3, true, 0, 0.999999, 40 * time.Second},
		{"capped at the interval", 30, true, 0, 0.999999, 30 * time.Minute},
		{"not retryable waits the interval", 1, false, 0, 0, 30 * time.Minute},
		{"Retry-After is a minimum", 1, true, 2 * time.Minute, 0, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Next(tt.failures, tt.retryable, tt.retryAfter, tt.rnd)
			if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("Next = %s, want %s", got, tt.want)
			}
		})
	}
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got)\n%s", path, diff)
	}
}
