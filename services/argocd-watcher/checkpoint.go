package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/detect"
)

// checkpointBucket is the JetStream KV bucket holding one checkpoint per Application incarnation:
// key checkpoint.<instance>.<namespace>.<uid>, value the JSON of detect.State. It also holds
// since.<instance>, when the instance was first watched.
var checkpointBucket = messaging.KV{
	Bucket:      "argocd-watcher-checkpoints",
	Description: "argocd-watcher: per-Application detection state (last processed history id, ...)",
}

// checkpoints reads and writes detection state in KV. Writes are compare-and-set on the revision
// read, so two watchers on the same instance by mistake cannot silently overwrite each other.
type checkpoints struct {
	kv       jetstream.KeyValue
	instance string
}

func (c *checkpoints) key(namespace, uid string) string {
	return "checkpoint." + c.instance + "." + namespace + "." + uid
}

// get returns the state and its KV revision, or nil and 0 when there is none.
func (c *checkpoints) get(ctx context.Context, namespace, uid string) (*detect.State, uint64, error) {
	e, err := c.kv.Get(ctx, c.key(namespace, uid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read checkpoint %s/%s: %w", namespace, uid, err)
	}
	var st detect.State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// A checkpoint we cannot read is treated as absent: the app is then seen for the first time
		// (baseline), which loses at most what happened since the checkpoint, and is logged.
		return nil, e.Revision(), fmt.Errorf("%w: %s/%s: %w", errCorruptCheckpoint, namespace, uid, err)
	}
	return &st, e.Revision(), nil
}

var errCorruptCheckpoint = errors.New("corrupt checkpoint")

// put writes st; rev is the revision read (0: the key must not exist yet).
func (c *checkpoints) put(ctx context.Context, st detect.State, rev uint64) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	k := c.key(st.Namespace, st.UID)
	if rev == 0 {
		_, err = c.kv.Create(ctx, k, b)
	} else {
		_, err = c.kv.Update(ctx, k, b, rev)
	}
	if err != nil {
		return fmt.Errorf("write checkpoint %s/%s: %w", st.Namespace, st.UID, err)
	}
	return nil
}

func (c *checkpoints) delete(ctx context.Context, namespace, uid string) error {
	if err := c.kv.Purge(ctx, c.key(namespace, uid)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete checkpoint %s/%s: %w", namespace, uid, err)
	}
	return nil
}

// checkpointRef names one stored checkpoint.
type checkpointRef struct{ Namespace, UID string }

// list returns every checkpoint of this instance.
func (c *checkpoints) list(ctx context.Context) ([]checkpointRef, error) {
	prefix := "checkpoint." + c.instance + "."
	l, err := c.kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	// The lister stops itself once it has delivered every key; Stop is only for an early exit.
	defer func() { _ = l.Stop() }()
	var out []checkpointRef
	for k := range l.Keys() {
		ns, uid, ok := strings.Cut(strings.TrimPrefix(k, prefix), ".")
		if ok {
			out = append(out, checkpointRef{ns, uid})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	return out, nil
}

// watchingSince returns when this instance was first watched, recording now if it never was.
// Applications created after it are new: their whole history is emitted, even entries made while the
// watcher was down.
func (c *checkpoints) watchingSince(ctx context.Context, now time.Time) (time.Time, error) {
	k := "since." + c.instance
	v := []byte(now.UTC().Format(time.RFC3339Nano))
	if _, err := c.kv.Create(ctx, k, v); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return time.Time{}, fmt.Errorf("record start of watching: %w", err)
	}
	e, err := c.kv.Get(ctx, k)
	if err != nil {
		return time.Time{}, fmt.Errorf("read start of watching: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, fmt.Errorf("read start of watching: %q: %w", e.Value(), err)
	}
	return t, nil
}
