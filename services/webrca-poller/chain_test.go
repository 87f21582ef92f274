package main

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/poll"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/webrca"
)

func newTestRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, func() bool { return false })
	m.poll("ok", 0.1)
	m.statusSeen("paused")
	return reg
}

// chain is the production wiring below run(): fakes → SSO source → WebRCA client → poller → KV and
// the JetStream publisher.
type chain struct {
	f      fakes
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	store  *flakyStore
	poller *poll.Poller
}

// flakyStore fails the next Put when failPut is set.
type flakyStore struct {
	kvStore
	failPut atomic.Bool
}

func (s *flakyStore) Put(ctx context.Context, id string, st poll.State) error {
	if s.failPut.CompareAndSwap(true, false) {
		return errors.New("injected KV failure")
	}
	return s.kvStore.Put(ctx, id, st)
}

func newChain(t *testing.T, srv *natstest.Server, f fakes, pageSize int) *chain {
	t.Helper()
	nc, js := srv.Connect()
	top := messaging.Topology{Replicas: 1, MaxAge: time.Hour, DeadLetterMaxAge: time.Hour, Duplicates: time.Minute, Memory: true}
	if err := top.EnsureStreams(t.Context(), js, events.StreamRaw); err != nil {
		t.Fatal(err)
	}
	kv, err := top.EnsureKV(t.Context(), js, stateBucket)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := messaging.NewPublisher(nc, "webrca-poller", zerolog.Nop(), messaging.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := sso.New(sso.Config{TokenURL: f.sso.URL(), ClientID: "svc-doraflow", ClientSecret: config.NewSecret("s3cr3t"),
		Backoff: time.Millisecond, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	// The timeout ends the "timeout" case's hang; it is long enough for an answer on a loaded machine.
	client, err := webrca.New(f.api.URL(), tokens, webrca.Options{PageSize: pageSize, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{kvStore: kvStore{kv: kv}}
	lister := listerFunc(func(ctx context.Context) ([]webrca.Incident, error) { return client.List(ctx, nil) })
	c := &chain{f: f, js: js, kv: kv, store: store}
	c.poller = poll.New(poll.Config{Products: []string{"konflux"}}, lister, store, eventPublisher{pub: pub}, time.Now)
	return c
}

// kvSeq is the last sequence of the KV bucket's stream: any write moves it.
func (c *chain) kvSeq(t *testing.T) uint64 {
	t.Helper()
	st, err := c.js.Stream(t.Context(), "KV_"+stateBucket.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func changes(t *testing.T, msgs []*jetstream.RawStreamMsg) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		var ev struct {
			Key    string `json:"key"`
			Change string `json:"change"`
		}
		if err := stdjson.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Key+":"+ev.Change)
	}
	return out
}

// TestBadResponsesLeaveStateUntouched makes a change that a good poll would publish, then serves
// every kind of bad response on page 2: each poll fails, publishes nothing and writes no state.
// The next good poll publishes the change exactly once.
func TestBadResponsesLeaveStateUntouched(t *testing.T) {
	srv := natstest.Start(t)
	f := newFakes(t)
	c := newChain(t, srv, f, 2)
	if _, err := c.poller.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	baseMsgs, baseKV := len(streamMessages(t, c.js)), c.kvSeq(t)
	if baseMsgs != 2 {
		t.Fatalf("first poll published %d, want 2", baseMsgs)
	}
	f.api.Update("0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", func(inc webrcatest.Incident) { inc["severity"] = "1" })

	json := func(body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}
	}
	bad := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request)
		outcome string
	}{
		{"HTML page", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<!DOCTYPE html><html><body>Red Hat SSO login</body></html>")
		}, "not_api"},
		{"truncated JSON", json(`{"kind":"IncidentList","page":2,"size":2,"total":4,"items":[{"id":"0b9d`), "decode"},
		{"5xx", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }, "server_error"},
		{"timeout", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "timeout"},
		{"schema drift: items of the wrong type", json(`{"kind":"IncidentList","page":2,"size":2,"total":4,"items":"none"}`), "schema"},
		{"schema drift: created_at renamed", json(`{"kind":"IncidentList","page":2,"size":1,"total":4,"items":[
			{"id":"9c2d3e4f-0000-4000-8000-000000000009","incident_id":"ITN-2026-00999","creation_time":"2026-01-01T00:00:00Z"}]}`), "schema"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			f.api.Intercept(func(w http.ResponseWriter, r *http.Request, req webrcatest.Request) bool {
				if req.Page != 2 {
					return false
				}
				b.respond(w, r)
				return true
			})
			res, err := c.poller.Poll(t.Context())
			if err == nil {
				t.Fatal("Poll succeeded")
			}
			if got := outcome(err); got != b.outcome {
				t.Errorf("outcome(%v) = %s, want %s", err, got, b.outcome)
			}
			if len(res.Published) != 0 {
				t.Errorf("published %d events", len(res.Published))
			}
			if n := len(streamMessages(t, c.js)); n != baseMsgs {
				t.Errorf("stream holds %d incident events, want %d", n, baseMsgs)
			}
			if seq := c.kvSeq(t); seq != baseKV {
				t.Errorf("KV was written: last seq %d, want %d", seq, baseKV)
			}
		})
	}
	f.api.Intercept(nil)
	if _, err := c.poller.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := changes(t, streamMessages(t, c.js))
	if want := "ITN-2026-00317:updated"; len(got) != 3 || got[2] != want {
		t.Errorf("events %v, want one more: %s", got, want)
	}
}

// TestLifecycleOnJetStream drives one incident through open → update → resolve → reopen with the
// real KV and publisher, crashes once between publish and KV write, and restarts the poller.
func TestLifecycleOnJetStream(t *testing.T) {
	srv := natstest.Start(t)
	f := newFakes(t)
	c := newChain(t, srv, f, 100)
	id := "0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17"
	mustPoll := func() {
		t.Helper()
		if _, err := c.poller.Poll(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	mustPoll()
	mustPoll() // nothing changed
	f.api.Update(id, func(inc webrcatest.Incident) {
		inc["severity"], inc["last_changed_at"] = "1", t0.Add(time.Minute).Format(time.RFC3339Nano)
	})
	mustPoll()
	f.api.Update(id, func(inc webrcatest.Incident) {
		inc["status"], inc["resolved_at"] = "resolved", t0.Add(2*time.Minute).Format(time.RFC3339Nano)
		inc["updated_at"] = t0.Add(time.Hour).Format(time.RFC3339Nano)
	})
	// Crash between publish and the KV write: the resolve is published, its state is not stored.
	c.store.failPut.Store(true)
	if _, err := c.poller.Poll(t.Context()); !errors.Is(err, poll.ErrState) {
		t.Fatalf("Poll = %v, want the injected KV failure", err)
	}
	mustPoll() // republishes the same id; JetStream drops it
	f.api.Update(id, func(inc webrcatest.Incident) {
		inc["status"], inc["resolved_at"], inc["reopen_counter"] = "investigating", "0001-01-01T00:00:00Z", 1
	})
	mustPoll()

	// A restarted poller (same KV, same stream) publishes nothing.
	c2 := newChain(t, srv, f, 100)
	if _, err := c2.poller.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"ITN-2026-00317:opened", "ITN-2026-00318:opened", "ITN-2026-00317:updated",
		"ITN-2026-00317:resolved", "ITN-2026-00317:reopened"}
	if got := changes(t, streamMessages(t, c.js)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events\n got %v\nwant %v", got, want)
	}
	st, found, err := c.store.Get(t.Context(), id)
	if err != nil || !found || st.Change != events.IncidentReopened || st.Resolved || st.ReopenCounter != 1 {
		t.Errorf("stored state %+v (found %v, %v), want reopened", st, found, err)
	}
}

func TestStatusLabelsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, func() bool { return false })
	for i := range 30 {
		m.statusSeen(fmt.Sprintf("status_%d", i))
	}
	m.statusSeen("status_0")
	m.statusSeen("Has Spaces And Caps")
	if n := testutil.CollectAndCount(m.unknownStatus); n != maxStatusLabels+1 {
		t.Errorf("%d status series, want %d plus other", n, maxStatusLabels)
	}
	if v := testutil.ToFloat64(m.unknownStatus.WithLabelValues("other")); v != 11 {
		t.Errorf("other = %v, want 11", v)
	}
	if v := testutil.ToFloat64(m.unknownStatus.WithLabelValues("status_0")); v != 2 {
		t.Errorf("status_0 = %v, want 2", v)
	}
}

func TestStateKey(t *testing.T) {
	for in, want := range map[string]string{
		"0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17": "0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17",
		"has.dots and spaces":                  "sha256_",
		"":                                     "sha256_",
	} {
		if got := stateKey(in); !strings.HasPrefix(got, want) {
			t.Errorf("stateKey(%q) = %q, want prefix %q", in, got, want)
		}
	}
}
