package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/opsserver"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/detect"
)

func TestRunServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-disabled.yaml")
	servicetest.AssertStandardEndpoints(t, s, "argocd-watcher")
	if !strings.Contains(s.Logs.String(), "Argo CD watching is disabled") {
		t.Errorf("no log line says watching is disabled:\n%s", s.Logs)
	}
	// The health document names the source, disabled, and why.
	_, body, err := servicetest.HTTPGet(t.Context(), s.Ops+"/api/v1/health")
	var health struct {
		Checks map[string]opsserver.CheckState `json:"checks"`
	}
	if err == nil {
		err = json.Unmarshal([]byte(body), &health)
	}
	if want := (opsserver.CheckState{State: opsserver.StateDisabled, Detail: "argocd.enabled: false"}); err != nil || health.Checks["argocd"] != want {
		t.Errorf("/api/v1/health does not list argocd as disabled: %v\n%s", err, body)
	}
	s.Stop(t)
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "argocd-watcher") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }

// TestRunFailsFast: watching enabled without a reachable Kubernetes API is a clear error from run,
// not an unready process or a crash loop of panics.
func TestRunFailsFast(t *testing.T) {
	srv := natstest.Start(t)
	dir := t.TempDir()
	unreachable := filepath.Join(dir, "kubeconfig")
	writeFile(t, unreachable, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: secret-token-never-logged}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
`)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no kubeconfig", nil, nil, "no Kubernetes configuration"},
		{"missing file", nil, []string{"--kubeconfig", filepath.Join(dir, "absent")}, "kubeconfig " + filepath.Join(dir, "absent")},
		{"unknown context", map[string]string{"KUBECONFIG": unreachable}, []string{"--context", "nope"}, `context "nope" does not exist`},
		{"API unreachable", nil, []string{"-kubeconfig", unreachable}, "Kubernetes API unreachable"},
		{"bad --namespace", nil, []string{"-namespace", "ok,Not_OK"}, `--namespace: "Not_OK" is not a namespace name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"NATS_URL": srv.URL(), "OPS_ADDR": servicetest.FreeAddr(t)}
			for k, v := range tc.env {
				env[k] = v
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"--config", "testdata/config/valid-seed.yaml"}, tc.args...)
			err := run(ctx, args, func(k string) string { return env[k] }, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatal("run did not fail fast")
			}
			if strings.Contains(out.String()+err.Error(), "secret-token-never-logged") {
				t.Error("the kubeconfig token leaked into logs or the error")
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// recorder is a publisher that records event IDs and can be told to fail.
type recorder struct {
	mu     sync.Mutex
	ids    []string
	evs    []events.Event
	failOn int // fail the n-th publish (1-based); 0 never
	calls  int
}

func (r *recorder) Publish(_ context.Context, ev events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls == r.failOn {
		return errors.New("nats: timeout")
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	r.ids = append(r.ids, ev.Meta().ID)
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := r.ids
	r.ids, r.evs = nil, nil
	return ids
}

// takeEvents returns the events published since the last take.
func (r *recorder) takeEvents() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.ids, r.evs = nil, nil
	return evs
}

var since = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func testProcessor(t *testing.T, srv *natstest.Server, pub publisher, log *bytes.Buffer) (*processor, *prometheus.Registry) {
	t.Helper()
	_, js := srv.Connect()
	kv, err := messaging.Topology{}.EnsureKV(t.Context(), js, checkpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	a := defaultRules().Argocd
	a.Instance, a.KnownClusters = "hub", []string{"prd-1"}
	reg := prometheus.NewRegistry()
	l := zerolog.Nop()
	if log != nil {
		l = zerolog.New(log)
	}
	return &processor{cfg: a.detectConfig(since, false), store: &checkpoints{kv: kv, instance: "hub"}, pub: pub,
		m: newMetrics(reg), log: l, now: func() time.Time { return since.Add(48 * time.Hour) }}, reg
}

// application returns an Application created at created with history entries 0..n-1.
func application(uid string, created time.Time, n int) *unstructured.Unstructured {
	var hist []any
	for i := range n {
		d := created.Add(time.Duration(i+1) * time.Minute)
		hist = append(hist, map[string]any{
			"id": int64(i), "revision": fmt.Sprintf("%040d", i),
			"deployStartedAt": d.Add(-10 * time.Second).Format(time.RFC3339), "deployedAt": d.Format(time.RFC3339),
			"source": map[string]any{"repoURL": "https://github.com/acme/gitops", "path": "checkout/prod"},
		})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": "checkout-prd-1", "namespace": "argocd", "uid": uid,
			"creationTimestamp": created.Format(time.RFC3339)},
		"spec":   map[string]any{"source": map[string]any{"repoURL": "https://github.com/acme/gitops", "path": "checkout/prod"}},
		"status": map[string]any{"history": hist},
	}}
}

const key = "argocd/checkout-prd-1"

func ids(uid string, from, to int64) []string {
	var out []string
	for id := from; id <= to; id++ {
		out = append(out, events.DeploymentID("hub", uid, id))
	}
	return out
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// TestProcessorCheckpointsOnlyAfterPublish: when a publish fails, the checkpoint is not advanced, so
// the retry publishes the same deterministic IDs again (JetStream drops the repeats) and nothing is
// lost; once published and checkpointed, a replay publishes nothing.
func TestProcessorCheckpointsOnlyAfterPublish(t *testing.T) {
	srv := natstest.Start(t)
	pub := &recorder{failOn: 2}
	p, _ := testProcessor(t, srv, pub, nil)
	app := application("uid-1", since.Add(time.Hour), 3) // created after watching began: all emitted

	if _, err := p.Process(t.Context(), key, app); err == nil {
		t.Fatal("Process succeeded although the second publish failed")
	}
	equal(t, "published before the failure", pub.take(), ids("uid-1", 0, 0))
	if st, _, err := p.store.get(t.Context(), "argocd", "uid-1"); err != nil || st != nil {
		t.Fatalf("checkpoint after a failed publish = %+v, %v; want none", st, err)
	}
	if _, err := p.Process(t.Context(), key, app); err != nil {
		t.Fatal(err)
	}
	equal(t, "published on retry", pub.take(), ids("uid-1", 0, 2))
	if _, err := p.Process(t.Context(), key, app); err != nil {
		t.Fatal(err)
	}
	equal(t, "published on replay", pub.take(), nil)
}

// TestProcessorRestart: a new processor on the same KV (a restarted watcher) emits exactly the
// entries that appeared while the old one was down.
func TestProcessorRestart(t *testing.T) {
	srv := natstest.Start(t)
	pub := &recorder{}
	p1, _ := testProcessor(t, srv, pub, nil)
	old := since.Add(-time.Hour) // existed before watching began: baseline, no events
	if _, err := p1.Process(t.Context(), key, application("uid-1", old, 2)); err != nil {
		t.Fatal(err)
	}
	equal(t, "first sight", pub.take(), nil)
	if _, err := p1.Process(t.Context(), key, application("uid-1", old, 3)); err != nil {
		t.Fatal(err)
	}
	equal(t, "live", pub.take(), ids("uid-1", 2, 2))

	p2, _ := testProcessor(t, srv, pub, nil)
	if _, err := p2.Process(t.Context(), key, application("uid-1", old, 6)); err != nil {
		t.Fatal(err)
	}
	equal(t, "after restart", pub.take(), ids("uid-1", 3, 5))
}

// TestProcessorDeletionAndCollection: a deletion drops the checkpoint; checkpoints of Applications
// deleted while the watcher was down are collected after the cache synced.
func TestProcessorDeletionAndCollection(t *testing.T) {
	srv := natstest.Start(t)
	p, reg := testProcessor(t, srv, &recorder{}, nil)
	if _, err := p.Process(t.Context(), key, application("uid-1", since, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Process(t.Context(), key, nil); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := p.store.get(t.Context(), "argocd", "uid-1"); st != nil {
		t.Fatal("checkpoint survived the deletion")
	}
	// Recreated: a new incarnation starts from scratch and its history is emitted.
	if _, err := p.Process(t.Context(), key, application("uid-2", since.Add(time.Hour), 1)); err != nil {
		t.Fatal(err)
	}
	refs, err := p.store.list(t.Context())
	if err != nil || len(refs) != 1 || refs[0].UID != "uid-2" {
		t.Fatalf("checkpoints = %v, %v; want only uid-2", refs, err)
	}
	if got := testutil.ToFloat64(p.m.checkpoints.WithLabelValues("delete")); got != 1 {
		t.Errorf("checkpoint deletes = %v, want 1", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
}

// TestProcessorMalformedOnce: a malformed Application is counted and logged once per reason, not on
// every resync, and never blocks its key with retries.
func TestProcessorMalformedOnce(t *testing.T) {
	srv := natstest.Start(t)
	var log bytes.Buffer
	p, _ := testProcessor(t, srv, &recorder{}, &log)
	bad := application("uid-1", since, 1)
	if err := unstructured.SetNestedField(bad.Object, "not a list", "status", "history"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if after, err := p.Process(t.Context(), key, bad); err != nil || after != 0 {
			t.Fatalf("Process(malformed) = %v, %v; want 0, nil", after, err)
		}
	}
	if got := testutil.ToFloat64(p.m.malformed.WithLabelValues("wrong_type")); got != 1 {
		t.Errorf("malformed{reason=wrong_type} = %v, want 1", got)
	}
	if n := strings.Count(log.String(), "malformed Application"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, log.String())
	}
	// Fixed, then broken again: reported again.
	if _, err := p.Process(t.Context(), key, application("uid-1", since, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Process(t.Context(), key, bad); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(p.m.malformed.WithLabelValues("wrong_type")); got != 2 {
		t.Errorf("malformed after relapse = %v, want 2", got)
	}
}

// rolling returns application(uid, created, 1) while its pods roll: health Progressing and two
// commits of one image live.
func rolling(t *testing.T, uid string, created time.Time) *unstructured.Unstructured {
	t.Helper()
	u := application(uid, created, 1)
	if err := unstructured.SetNestedField(u.Object, "Progressing", "status", "health", "status"); err != nil {
		t.Fatal(err)
	}
	imgs := []any{"quay.io/acme/checkout:" + strings.Repeat("1", 40), "quay.io/acme/checkout:" + strings.Repeat("2", 40)}
	if err := unstructured.SetNestedSlice(u.Object, imgs, "status", "summary", "images"); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestProcessorHeldEntrySurvivesRestart: an entry held while its pods roll is in the checkpoint, so
// a restarted watcher publishes it exactly once when the bound passes, with ambiguous_image (no
// previous deployment tells the two commits apart) and no commit; held and ambiguous are counted.
func TestProcessorHeldEntrySurvivesRestart(t *testing.T) {
	srv := natstest.Start(t)
	pub := &recorder{}
	created := since.Add(time.Hour) // after watching began: live
	deployed := created.Add(time.Minute)
	p1, _ := testProcessor(t, srv, pub, nil)
	p1.now = func() time.Time { return deployed.Add(time.Minute) }
	after, err := p1.Process(t.Context(), key, rolling(t, "uid-1", created))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "published while rolling", pub.take(), nil)
	if after != 9*time.Minute {
		t.Errorf("recheck after %s, want 9m (the bound)", after)
	}
	if got := testutil.ToFloat64(p1.m.held.WithLabelValues(detect.HoldProgressing)); got != 1 {
		t.Errorf("deployments_held_total{reason=progressing} = %v, want 1", got)
	}

	p2, reg := testProcessor(t, srv, pub, nil) // restarted
	p2.now = func() time.Time { return deployed.Add(5 * time.Minute) }
	if _, err := p2.Process(t.Context(), key, rolling(t, "uid-1", created)); err != nil {
		t.Fatal(err)
	}
	equal(t, "published before the bound after a restart", pub.take(), nil)
	p2.now = func() time.Time { return deployed.Add(10 * time.Minute) }
	for range 2 {
		if _, err := p2.Process(t.Context(), key, rolling(t, "uid-1", created)); err != nil {
			t.Fatal(err)
		}
	}
	evs := pub.takeEvents()
	if len(evs) != 1 {
		t.Fatalf("published %d events at and after the bound, want 1: %v", len(evs), evs)
	}
	d, ok := evs[0].(*events.DeploymentObserved)
	if !ok {
		t.Fatalf("published %T, want a deployment", evs[0])
	}
	want := events.DeploymentObserved{ID: ids("uid-1", 0, 0)[0], FinishedAt: deployed, Flags: []events.QualityFlag{events.QualityAmbiguousImage}}
	got := events.DeploymentObserved{ID: d.ID, FinishedAt: d.FinishedAt, Flags: d.Flags, AppCommits: d.AppCommits}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("held deployment (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"released{reason=timeout}", p2.m.released.WithLabelValues(detect.ReleaseTimeout), 1},
		{"ambiguous_image_deployments_total", p2.m.ambiguous, 1},
		{"deployments_held_total{reason=progressing} after restart", p2.m.held.WithLabelValues(detect.HoldProgressing), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
}

// TestProcessorPublishesHeldEntryOfGoneApplication: an Application deleted (or recreated with a new
// UID) while an entry is held still gets that deployment published, once, before its checkpoint goes.
func TestProcessorPublishesHeldEntryOfGoneApplication(t *testing.T) {
	created := since.Add(time.Hour)
	for _, tc := range []struct {
		name string
		gone func(t *testing.T, p *processor) error
		want []string
	}{
		{"deleted", func(t *testing.T, p *processor) error {
			_, err := p.Process(t.Context(), key, nil)
			return err
		}, ids("uid-1", 0, 0)},
		{"recreated", func(t *testing.T, p *processor) error {
			_, err := p.Process(t.Context(), key, application("uid-2", created.Add(time.Hour), 1))
			return err
		}, append(ids("uid-1", 0, 0), ids("uid-2", 0, 0)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t)
			pub := &recorder{}
			p, _ := testProcessor(t, srv, pub, nil)
			p.now = func() time.Time { return created.Add(2 * time.Minute) }
			if _, err := p.Process(t.Context(), key, rolling(t, "uid-1", created)); err != nil {
				t.Fatal(err)
			}
			equal(t, "published while rolling", pub.take(), nil)
			p.now = func() time.Time { return created.Add(2 * time.Hour) }
			if err := tc.gone(t, p); err != nil {
				t.Fatal(err)
			}
			equal(t, "published", pub.take(), tc.want)
			if st, _, err := p.store.get(t.Context(), "argocd", "uid-1"); err != nil || st != nil {
				t.Errorf("checkpoint of uid-1 = %+v, %v; want none", st, err)
			}
			if got := testutil.ToFloat64(p.m.released.WithLabelValues(detect.ReleaseRecreated)); got != 1 {
				t.Errorf("released{reason=recreated} = %v, want 1", got)
			}
		})
	}
}
