package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/services/enricher/internal/enrich"
)

func stateBucket(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	_, js := natstest.Start(t).Connect()
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "test-state"})
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// Two replicas' copies of one key: the one made stale by the other's write never overwrites it,
// and reads the bucket again after the failed write.
func TestCASStoreNeverWritesOverAStaleCopy(t *testing.T) {
	_, kv := stateBucket(t)
	ctx := t.Context()
	a := newCASStore(kv, enrich.ErrNotFound, 100)
	b := newCASStore(kv, enrich.ErrNotFound, 100)

	if _, err := a.Get(ctx, "baseline.x"); !errors.Is(err, enrich.ErrNotFound) {
		t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
	}
	if err := a.Put(ctx, "baseline.x", []byte("a1")); err != nil { // a create
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, "baseline.x"); err != nil || string(got) != "a1" {
		t.Fatalf("other replica reads %q, %v; want a1", got, err)
	}
	if err := b.Put(ctx, "baseline.x", []byte("b1")); err != nil {
		t.Fatal(err)
	}
	// a's copy still says a1 (that is the point of the copy) …
	if got, _ := a.Get(ctx, "baseline.x"); string(got) != "a1" {
		t.Fatalf("a's copy = %q, want a1 until it writes", got)
	}
	// … but writing from it fails, and the bucket keeps b's value.
	if err := a.Put(ctx, "baseline.x", []byte("a2")); !errors.Is(err, errStateMoved) {
		t.Fatalf("Put from a stale copy = %v, want errStateMoved", err)
	}
	if e, err := kv.Get(ctx, "baseline.x"); err != nil || string(e.Value()) != "b1" {
		t.Fatalf("bucket holds %q, %v; want b1", e.Value(), err)
	}
	// The retry reads fresh state and its write succeeds.
	if got, err := a.Get(ctx, "baseline.x"); err != nil || string(got) != "b1" {
		t.Fatalf("a reads %q, %v after the conflict; want b1", got, err)
	}
	if err := a.Put(ctx, "baseline.x", []byte("a2")); err != nil {
		t.Fatal(err)
	}
	// A create from a stale "absent" copy fails the same way.
	if _, err := a.Get(ctx, "history.y"); !errors.Is(err, enrich.ErrNotFound) {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "history.y", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "history.y", []byte("a")); !errors.Is(err, errStateMoved) {
		t.Fatalf("create over another replica's key = %v, want errStateMoved", err)
	}
}

func TestCASStoreForgetsBeyondItsBound(t *testing.T) {
	_, kv := stateBucket(t)
	ctx := t.Context()
	s := newCASStore(kv, enrich.ErrNotFound, 3)
	for i := range 10 {
		if err := s.Put(ctx, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.keys); n != 3 {
		t.Errorf("copy holds %d keys, want 3", n)
	}
	// A forgotten key is read again, with its revision, and written without conflict.
	for i := range 10 {
		if err := s.Put(ctx, fmt.Sprintf("k%d", i), []byte("w")); err != nil {
			t.Errorf("k%d: %v", i, err)
		}
	}
}

func TestAsyncCacheWritesWithoutWaitingAndCountsFailures(t *testing.T) {
	js, kv := stateBucket(t)
	var failed atomic.Int64
	c := newAsyncCache(js, kv, enrich.ErrNotFound, func(error) { failed.Add(1) })
	go func() { _ = c.drain(t.Context()) }()
	for i := range 50 {
		if err := c.Put(t.Context(), fmt.Sprintf("cmp.k%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 10*time.Second, func() error {
		for i := range 50 {
			got, err := c.Get(t.Context(), fmt.Sprintf("cmp.k%d", i))
			if err != nil || string(got) != fmt.Sprint(i) {
				return fmt.Errorf("k%d = %q, %w", i, got, err)
			}
		}
		return nil
	})
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d failures counted for writes that landed", n)
	}
	// With the bucket gone, writes fail on the server; each is counted and none fails enrichment.
	if err := js.DeleteKeyValue(t.Context(), "test-state"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Put(t.Context(), fmt.Sprintf("cmp.lost%d", i), []byte("x")); err != nil {
			t.Fatalf("Put = %v, want nil (a lost cache write is not an enrichment error)", err)
		}
	}
	wait.For(t, 10*time.Second, func() error {
		if n := failed.Load(); n != 3 {
			return fmt.Errorf("%d failures counted, want 3", n)
		}
		return nil
	})
}
