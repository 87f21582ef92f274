package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

// BackfillRequest asks the watcher of an Argo CD instance to emit again the whole status.history
// of the matching Applications (events marked backfill). It is the value of the key
// backfill.<instance> in the checkpoint bucket; `doraflow backfill` writes it. Re-emitted events
// keep their deterministic IDs, so what was already published is dropped or skipped downstream:
// a backfill only fills gaps (a wiped stream, entries missed before the first start).
type BackfillRequest struct {
	// Namespace and Application narrow the request; empty matches every Application.
	Namespace   string    `json:"namespace,omitempty"`
	Application string    `json:"application,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
}

func (r BackfillRequest) matches(namespace, name string) bool {
	return (r.Namespace == "" || r.Namespace == namespace) && (r.Application == "" || r.Application == name)
}

// watchBackfillRequests waits for backfill requests: for each, it drops the checkpoints of the
// matching cached Applications and re-queues them; Process then handles each in backfill mode.
// The request key is deleted once every matching Application was processed, so a restart in the
// middle resumes the request.
func (p *processor) watchBackfillRequests(ctx context.Context, w *argocd.Watcher) error {
	key := "backfill." + p.store.instance
	watch, err := p.store.kv.Watch(ctx, key)
	if err != nil {
		return fmt.Errorf("watch backfill requests: %w", err)
	}
	defer func() { _ = watch.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-watch.Updates():
			if !ok {
				return nil
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // end of initial values, or a deleted request
			}
			var req BackfillRequest
			if err := json.Unmarshal(e.Value(), &req); err != nil {
				p.log.Error().Err(err).Msg("undecodable backfill request; deleting it")
				_ = p.store.kv.Delete(ctx, key)
				continue
			}
			if err := waitSynced(ctx, w); err != nil {
				return nil
			}
			p.startBackfill(ctx, w, req)
		}
	}
}

func waitSynced(ctx context.Context, w *argocd.Watcher) error {
	for !w.Synced() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func (p *processor) startBackfill(ctx context.Context, w *argocd.Watcher, req BackfillRequest) {
	var keys []string
	for _, u := range w.List() {
		if !req.matches(u.GetNamespace(), u.GetName()) {
			continue
		}
		if err := p.store.delete(ctx, u.GetNamespace(), string(u.GetUID())); err != nil {
			p.log.Error().Err(err).Str("application", u.GetName()).Msg("backfill: drop checkpoint")
			continue
		}
		keys = append(keys, u.GetNamespace()+"/"+u.GetName())
	}
	p.mu.Lock()
	p.backfill = map[string]bool{}
	for _, k := range keys {
		p.backfill[k] = true
	}
	p.mu.Unlock()
	p.log.Info().Str("namespace", req.Namespace).Str("application", req.Application).Int("applications", len(keys)).
		Msg("backfill requested: re-emitting the history of matching Applications")
	if len(keys) == 0 {
		p.finishBackfill(ctx)
		return
	}
	for _, k := range keys {
		w.Requeue(k)
	}
}

func (p *processor) backfilling(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.backfill[key]
}

// backfilled records that key was re-processed; the request ends with the last one.
func (p *processor) backfilled(ctx context.Context, key string, emitted int) {
	p.mu.Lock()
	delete(p.backfill, key)
	done := len(p.backfill) == 0
	p.mu.Unlock()
	p.log.Info().Str("key", key).Int("events", emitted).Msg("backfilled")
	if done {
		p.finishBackfill(ctx)
	}
}

func (p *processor) finishBackfill(ctx context.Context) {
	if err := p.store.kv.Delete(ctx, "backfill."+p.store.instance); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		p.log.Warn().Err(err).Msg("delete the finished backfill request")
		return
	}
	p.log.Info().Msg("backfill finished")
}
