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
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

// cli runs the CLI with NATS_URL (when not empty) and a private runtime directory (no state file).
func cli(t *testing.T, natsURL string, args ...string) (string, error) {
	t.Helper()
	out, _, err := cliEnv(t, map[string]string{"NATS_URL": natsURL, "XDG_RUNTIME_DIR": t.TempDir()}, args...)
	return out, err
}

// cliEnv runs the CLI with exactly the environment env and returns its stdout and stderr.
func cliEnv(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestReplayedDeadLetterIsProcessed dead-letters a message while its handler's dependency is
// broken, lists it, replays it with the CLI once the dependency works, and sees it processed.
func TestReplayedDeadLetterIsProcessed(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	topo := messaging.Topology{Replicas: 1, MaxAge: time.Hour, DeadLetterMaxAge: time.Hour, Duplicates: time.Minute}
	if err := topo.EnsureStreams(t.Context(), js, events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter); err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	broken.Store(true)
	var processed atomic.Int32
	r, err := messaging.NewRouter(messaging.RouterConfig{Service: "devlake-sink"}, js, zerolog.Nop(),
		messaging.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	r.Add(messaging.Handler{Name: "post-deployment-on-enriched", Stream: events.StreamEnriched, Subject: events.SubjectDeploymentEnriched},
		messaging.Handle(func(ctx context.Context, in events.DeploymentEnriched) error {
			if broken.Load() {
				return messaging.Permanent(errors.New("DevLake answered 400: environment is invalid"))
			}
			processed.Add(1)
			return nil
		}))
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(t.Context())) }()
	<-r.Running()
	t.Cleanup(func() { _ = r.Close() })

	nc, _ := srv.Connect()
	pub, err := messaging.NewPublisher(nc, "enricher", zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := events.DeploymentEnriched{DeploymentObserved: events.DeploymentObserved{ID: events.DeploymentID("hub", "uid", 7),
		Source: "argocd", Application: "checkout", Component: "checkout", Environment: events.EnvironmentProduction,
		Kind: events.KindDeploy, Result: events.ResultSuccess, FinishedAt: time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC)},
		Routing: events.Routing{Targets: []events.Target{{Scope: events.ScopeGlobal, ProjectID: "1"}}}}
	if err := pub.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, func() error {
		out, err := cli(t, srv.URL(), "dlq", "list")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "DevLake answered 400: environment is invalid") {
			return fmt.Errorf("dlq list:\n%s", out)
		}
		return nil
	})
	out, err := cli(t, srv.URL(), "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"DORAFLOW_ENRICHED", "devlake-sink-post-deployment-on-enriched", "DEAD LETTERS", "devlake-sink  "} {
		if !strings.Contains(out, want) {
			t.Errorf("status misses %q:\n%s", want, out)
		}
	}
	if out, err := cli(t, srv.URL(), "dlq", "replay"); err == nil || !strings.Contains(err.Error(), "--all") {
		t.Errorf("replay without a selection = %v\n%s", err, out)
	}

	broken.Store(false)
	out, err = cli(t, srv.URL(), "dlq", "replay", "--all", "--service", "devlake-sink")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if !strings.Contains(out, "1 of 1 dead letters replayed") {
		t.Errorf("replay output:\n%s", out)
	}
	wait.For(t, 10*time.Second, func() error {
		if processed.Load() != 1 {
			return fmt.Errorf("processed %d, want 1", processed.Load())
		}
		return nil
	})
	if out, _ := cli(t, srv.URL(), "dlq", "list"); !strings.Contains(out, "No dead letters.") {
		t.Errorf("the replayed message is still in the DLQ:\n%s", out)
	}
	if out, err := cli(t, srv.URL(), "dlq", "replay", "--seq", "99"); err == nil || !strings.Contains(err.Error(), "no dead letter with seq 99") {
		t.Errorf("replay of a missing seq = %v\n%s", err, out)
	}
}

func TestUsageAndUnknownCommand(t *testing.T) {
	out, err := cli(t, "", "help")
	if err != nil || !strings.Contains(out, "doraflow dlq replay") {
		t.Errorf("help = %v\n%s", err, out)
	}
	if _, err := cli(t, "", "frobnicate"); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command = %v", err)
	}
	if out, err := cli(t, "", "version"); err != nil || !strings.HasPrefix(out, "doraflow ") {
		t.Errorf("version = %v %q", err, out)
	}
}

// TestLocalRunsThePipelineAndStopsCleanly builds the five services, runs `doraflow local` with no
// external configuration, and requires every service ready, every disabled source named, and a
// clean stop when the context is cancelled (Ctrl-C).
func TestLocalRunsThePipelineAndStopsCleanly(t *testing.T) {
	bin := serviceBinaries(t)
	run := t.TempDir()
	runtime := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuf{b: &bytes.Buffer{}}
	ready := make(chan map[string]string, 1)
	done := make(chan error, 1)
	home := t.TempDir() // no ~/.kube/config: Argo CD stays disabled
	// Half-configured sources: each is disabled with its reason; the rest runs.
	env := map[string]string{"HOME": home, "PATH": os.Getenv("PATH"), "XDG_RUNTIME_DIR": runtime,
		"DEVLAKE_URL": "http://127.0.0.1:1", "WEBRCA_CLIENT_ID": "id"}
	go func() {
		done <- runLocal(ctx, []string{"--bin", bin, "--data", filepath.Join(run, "nats"), "--logs", filepath.Join(run, "logs"),
			"--nats", "127.0.0.1:0", "--ops-port", "0"},
			func(k string) string { return env[k] }, out,
			func(_ string, ops map[string]string) { ready <- ops })
	}()
	var natsURL string
	select {
	case ops := <-ready:
		if len(ops) != 5 {
			t.Errorf("ops endpoints %v, want 5", ops)
		}
		// The CLI finds the pipeline on its random NATS port through the state file.
		st, err := readStateFile(filepath.Join(runtime, "doraflow", "pipeline.json"))
		if err != nil || st.PID != os.Getpid() || st.ExporterURL != ops["metrics-exporter"] {
			t.Errorf("state file = %+v, %v", st, err)
		}
		natsURL = st.NATSURL
		if got, errOut, err := cliEnv(t, map[string]string{"XDG_RUNTIME_DIR": runtime}, "status"); err != nil || !strings.Contains(got, "DORAFLOW_RAW") {
			t.Errorf("status through the state file = %v\n%s\n%s", err, got, errOut)
		}
	case err := <-done:
		t.Fatalf("local stopped before it was ready: %v\n%s", err, out.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("not ready within 90s\n%s", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("local returned %v after Ctrl-C\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("local did not stop within 30s of Ctrl-C")
	}
	if _, err := os.Stat(filepath.Join(runtime, "doraflow", "pipeline.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file survived a clean stop: %v", err)
	}
	text := out.String()
	for _, want := range []string{"argocd-watcher: disabled (no KUBECONFIG and no ~/.kube/config)\n",
		"webrca-poller: disabled (WEBRCA_CLIENT_ID is set but WEBRCA_CLIENT_SECRET (or _FILE) is not)\n",
		"devlake-sink: disabled (DEVLAKE_URL is set but DEVLAKE_WEBHOOK_TOKEN (or _FILE) is not)\n",
		"enricher: no GITHUB_TOKEN", "60 requests per hour", "NATS JetStream", "/metrics /healthz /readyz /api/v1/health", "export NATS_URL=" + natsURL + "\n",
		"doraflow is running", "stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("output misses %q:\n%s", want, text)
		}
	}
	for _, s := range services {
		b, err := os.ReadFile(filepath.Join(run, "logs", s+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"message":"stopped"`) {
			t.Errorf("%s did not log a clean stop:\n%s", s, b)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestBackfillWritesTheRequestAndWaits(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect()
	if out, err := cli(t, srv.URL(), "backfill"); err == nil || !strings.Contains(err.Error(), "--instance is required") {
		t.Fatalf("backfill without instance = %v\n%s", err, out)
	}
	if out, err := cli(t, srv.URL(), "backfill", "--instance", "hub"); err == nil || !strings.Contains(err.Error(), "has argocd-watcher ever run") {
		t.Fatalf("backfill without the watcher's bucket = %v\n%s", err, out)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: watcherBucket})
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in watcher: it deletes the request once it sees it, as argocd-watcher does when done.
	go func() {
		w, err := kv.Watch(t.Context(), "backfill.hub")
		if err != nil {
			return
		}
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				var req struct{ Namespace, Application string }
				if json.Unmarshal(e.Value(), &req) == nil && req.Namespace == "argocd" && req.Application == "legacy" {
					for i, inst := range []string{"hub", "other-hub", "hub"} {
						b, _ := json.Marshal(events.DeploymentObserved{ID: events.DeploymentID(inst, "uid", int64(i)), Instance: inst,
							Namespace: "argocd", Application: "legacy", Backfill: true,
							FinishedAt: time.Date(2026, 3, 1+i, 12, 0, 0, 0, time.UTC)})
						_ = nc.Publish(events.SubjectDeploymentObserved, b)
					}
					_ = nc.Flush()
					_ = kv.Delete(t.Context(), "backfill.hub")
				}
				return
			}
		}
	}()
	out, err := cli(t, srv.URL(), "backfill", "--instance", "hub", "--namespace", "argocd", "--application", "legacy", "--wait", "10s")
	if err != nil || !strings.Contains(out, "backfill finished") {
		t.Fatalf("backfill --wait = %v\n%s", err, out)
	}
	// What the watcher of hub re-emitted (not other-hub's), per Application.
	for _, want := range []string{"re-emitted 2 deployments of 1 Applications, finished 2026-03-01 12:00:00Z to 2026-03-03 12:00:00Z",
		"argocd/legacy  2"} {
		if !strings.Contains(out, want) {
			t.Errorf("backfill output misses %q:\n%s", want, out)
		}
	}
}
