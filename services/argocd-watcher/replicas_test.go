package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/pkg/events"
)

var conflictLine = regexp.MustCompile(`(?m)^doraflow_argocd_watcher_process_errors_total\{stage="checkpoint_write"\} (\d+)$`)

// checkpointConflicts is how often this process lost a compare-and-set on a checkpoint (another
// replica wrote it first) and retried.
func checkpointConflicts(t *testing.T, s *servicetest.Service) int {
	t.Helper()
	_, body := s.Get(t, "/metrics")
	m := conflictLine.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestKubeTwoReplicas runs two watchers on one Argo CD instance at once, as a Deployment rollout
// does for a while (ADR 0011): the same kube-apiserver, the same JetStream and checkpoint bucket.
// Applications sync in rounds (each entry held while Progressing, then Healthy; the last round a
// rollback); one replica is stopped mid-round and a new one started mid-round later. Every
// deployment and change failure is stored exactly once on the raw stream, none is missing, and each
// carries the IDs, times, predecessor, kind and commit a single watcher gives it.
func TestKubeTwoReplicas(t *testing.T) {
	a, kubeconfig := startArgo(t)
	env, args, js := watcher(t, kubeconfig, "degraded_grace: 0s")

	r1 := servicetest.Start(t, run, env, args...)
	r2 := servicetest.Start(t, run, env, args...)
	// Every Application is created after the first start: its whole history is live.

	const apps, rounds = 4, 6
	rev := func(app, round int) string {
		if round == rounds-1 {
			round -= 2 // the last round returns to the state of round 3: a rollback of round 4
		}
		return fmt.Sprintf("%040x", 1000*app+round)
	}
	names := make([]string, apps)
	uids := make([]string, apps)
	for i := range apps {
		names[i] = fmt.Sprintf("svc%d-prd-1", i)
		uids[i] = a.create(names[i])
	}
	type deployment struct {
		app, round int
		done       time.Time
	}
	var deployed []deployment
	var want []string
	published, conflicts := 0, 0
	stop := func(s *servicetest.Service) {
		published += publishedCount(t, s)
		conflicts += checkpointConflicts(t, s)
		s.Stop(t)
	}
	var r3 *servicetest.Service
	for round := range rounds {
		var ids []string
		for i, name := range names {
			done := a.deploy(name, int64(round), rev(i, round))
			deployed = append(deployed, deployment{i, round, done})
			dep := events.DeploymentID("test", uids[i], int64(round))
			ids = append(ids, dep)
			if round == rounds-1 {
				rolledBack := events.DeploymentID("test", uids[i], int64(round-1))
				ids = append(ids, events.ChangeFailureID(rolledBack, events.DetectionRollback, false),
					events.ChangeFailureID(rolledBack, events.DetectionRollback, true))
			}
			if round == 2 && i == apps/2 {
				stop(r2) // mid-round: the other replica carries on alone
			}
			if round == 4 && i == apps/2 {
				r3 = servicetest.Start(t, run, env, args...) // a new replica joins mid-round
			}
			a.healthy(name)
		}
		want = append(want, ids...)
		waitFor(t, js, ids...)
	}
	stop(r1)
	stop(r3)

	got, dups := stream(t, js)
	if len(dups) > 0 {
		t.Errorf("stored twice: %v", dups)
	}
	var gotIDs []string
	for id := range got {
		gotIDs = append(gotIDs, id)
	}
	slices.Sort(gotIDs)
	slices.Sort(want)
	if strings.Join(gotIDs, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream holds %d events\n%s\nwant %d\n%s", len(gotIDs), strings.Join(gotIDs, "\n"), len(want), strings.Join(want, "\n"))
	}
	for _, d := range deployed {
		id := events.DeploymentID("test", uids[d.app], int64(d.round))
		var ev events.DeploymentObserved
		if err := json.Unmarshal(got[id], &ev); err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		kind, previous, rollbackOf := events.KindDeploy, "", ""
		if d.round > 0 {
			previous = events.DeploymentID("test", uids[d.app], int64(d.round-1))
		}
		if d.round == rounds-1 {
			kind, rollbackOf = events.KindRollback, events.DeploymentID("test", uids[d.app], int64(d.round-2))
		}
		sha := rev(d.app, d.round)
		if !ev.FinishedAt.Equal(d.done) || !ev.StartedAt.Equal(d.done.Add(-5*time.Second)) || ev.Kind != kind ||
			ev.Previous != previous || ev.RollbackOf != rollbackOf || ev.Revision != sha ||
			len(ev.AppCommits) != 1 || ev.AppCommits[0].SHA != sha || len(ev.Flags) != 0 {
			t.Errorf("%s %d/%d = started %s finished %s kind %s previous %q rollback_of %q revision %s commits %+v flags %v;"+
				" want started %s finished %s kind %s previous %q rollback_of %q commit %s",
				id, d.app, d.round, ev.StartedAt, ev.FinishedAt, ev.Kind, ev.Previous, ev.RollbackOf, ev.Revision, ev.AppCommits, ev.Flags,
				d.done.Add(-5*time.Second), d.done, kind, previous, rollbackOf, sha)
		}
	}
	t.Logf("%d events stored once each; the replicas published %d (%d duplicates dropped by JetStream) and lost %d checkpoint compare-and-sets",
		len(got), published, published-len(want), conflicts)
	if published < len(want) {
		t.Errorf("the replicas published %d events, fewer than the %d stored", published, len(want))
	}
}

// gated is a publisher that stops in its first Publish until released, the way a replica is
// interrupted between reading a checkpoint and publishing.
type gated struct {
	recorder
	entered, release chan struct{}
	once             sync.Once
}

func (g *gated) Publish(ctx context.Context, ev events.Event) error {
	g.once.Do(func() { close(g.entered); <-g.release })
	return g.recorder.Publish(ctx, ev)
}

// TestProcessorReplicasRace: two replicas read the same checkpoint for the same new history entry.
// One publishes and checkpoints first; the other then publishes the very same event (same ID, same
// bytes: JetStream keeps one), loses the compare-and-set on the checkpoint, and its retry, reading
// the winner's checkpoint, publishes nothing.
func TestProcessorReplicasRace(t *testing.T) {
	srv := natstest.Start(t)
	slow := &gated{entered: make(chan struct{}), release: make(chan struct{})}
	fast := &recorder{}
	pa, _ := testProcessor(t, srv, slow, nil)
	pb, _ := testProcessor(t, srv, fast, nil)
	created := since.Add(time.Hour) // after watching began: live
	if _, err := pb.Process(t.Context(), key, application("uid-1", created, 2)); err != nil {
		t.Fatal(err)
	}
	equal(t, "first replica, entries 0-1", fast.take(), ids("uid-1", 0, 1))

	app := application("uid-1", created, 3)
	errA := make(chan error, 1)
	go func() { _, err := pa.Process(t.Context(), key, app); errA <- err }()
	<-slow.entered // pa has read the checkpoint (entries 0-1) and is about to publish entry 2
	if _, err := pb.Process(t.Context(), key, app); err != nil {
		t.Fatal(err)
	}
	won := fast.takeEvents()
	close(slow.release)
	if err := <-errA; err == nil {
		t.Fatal("the late replica's checkpoint write succeeded over the other's")
	}
	lost := slow.takeEvents()
	if len(won) != 1 || len(lost) != 1 || won[0].Meta().ID != ids("uid-1", 2, 2)[0] {
		t.Fatalf("published %v and %v; want entry 2 by each", won, lost)
	}
	a, errM1 := json.Marshal(won[0])
	b, errM2 := json.Marshal(lost[0])
	if errM1 != nil || errM2 != nil || !bytes.Equal(a, b) {
		t.Errorf("the replicas published different bodies for %s:\n%s\n%s", won[0].Meta().ID, a, b)
	}
	if got := testutil.ToFloat64(pa.m.processErrors.WithLabelValues("checkpoint_write")); got != 1 {
		t.Errorf("process_errors_total{stage=checkpoint_write} = %v, want 1", got)
	}

	// The workqueue retries the key: the winner's checkpoint says entry 2 is done.
	if _, err := pa.Process(t.Context(), key, app); err != nil {
		t.Fatal(err)
	}
	equal(t, "retry of the late replica", slow.take(), nil)
	st, _, err := pa.store.get(t.Context(), "argocd", "uid-1")
	if err != nil || st == nil || st.LastHistoryID != 2 {
		t.Errorf("checkpoint = %+v, %v; want last history id 2", st, err)
	}
}
