package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

// TestBackfillRequestReemitsHistory: an Application whose history predates the watcher is only
// baselined; a backfill request (what `doraflow backfill` writes) makes the running watcher emit
// every entry of it, marked backfill, and the request is removed once done. Other applications are
// untouched.
func TestBackfillRequestReemitsHistory(t *testing.T) {
	a, kubeconfig := startArgo(t)
	env, args, js := watcher(t, kubeconfig)
	rev := func(n int) string { return fmt.Sprintf("%040x", n) }
	legacyUID := a.create("legacy-prd-1")
	for i := range 3 {
		a.deploy("legacy-prd-1", int64(i), rev(100+i))
	}
	otherUID := a.create("other-prd-1")
	a.deploy("other-prd-1", 0, rev(200))
	for _, name := range []string{"legacy-prd-1", "other-prd-1"} { // created before the first start
		created, err := a.apps().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wait.For(t, 3*time.Second, func() error {
			if time.Now().Truncate(time.Second).After(created.GetCreationTimestamp().Time) {
				return nil
			}
			return errors.New("still the creation second")
		})
	}
	s := servicetest.Start(t, run, env, args...)
	kv, err := js.KeyValue(t.Context(), checkpointBucket.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 20*time.Second, func() error { // both baselined: checkpoints, no events
		for _, uid := range []string{legacyUID, otherUID} {
			if _, err := kv.Get(t.Context(), "checkpoint.test.argocd."+uid); err != nil {
				return fmt.Errorf("checkpoint of %s: %w", uid, err)
			}
		}
		return nil
	})
	if got, _ := stream(t, js); len(got) != 0 {
		t.Fatalf("baselined applications emitted %d events", len(got))
	}

	req, _ := json.Marshal(BackfillRequest{Namespace: "argocd", Application: "legacy-prd-1", RequestedAt: time.Now().UTC()})
	if _, err := kv.Put(t.Context(), "backfill.test", req); err != nil {
		t.Fatal(err)
	}
	want := []string{events.DeploymentID("test", legacyUID, 0), events.DeploymentID("test", legacyUID, 1), events.DeploymentID("test", legacyUID, 2)}
	got := waitFor(t, js, want...)
	if len(got) != 3 {
		t.Errorf("stream has %d events, want the 3 of legacy-prd-1 only", len(got))
	}
	for _, id := range want {
		var d events.DeploymentObserved
		if err := json.Unmarshal(got[id], &d); err != nil {
			t.Fatal(err)
		}
		if !d.Backfill || d.Application != "legacy-prd-1" {
			t.Errorf("%s: backfill=%v application=%s, want a backfill event of legacy-prd-1", id, d.Backfill, d.Application)
		}
	}
	wait.For(t, 10*time.Second, func() error {
		if _, err := kv.Get(t.Context(), "backfill.test"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("request still present (%w)", err)
		}
		return nil
	})
	if !strings.Contains(s.Logs.String(), "backfill finished") {
		t.Error("no 'backfill finished' log line")
	}
	s.Stop(t)
}
