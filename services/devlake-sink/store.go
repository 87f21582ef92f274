package main

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

// ledgerBucketName holds the delivery ledger: deployment.<connection>.<event id> → what was posted,
// and incident.<connection>.<incident id> → the last incident state posted (with compare-and-set).
const ledgerBucketName = "devlake-sink-ledger"

// ledgerBucket keeps entries as long as the enriched stream keeps events, so replaying anything the
// stream still holds posts nothing twice.
func ledgerBucket(t messaging.Topology) messaging.KV {
	return messaging.KV{Bucket: ledgerBucketName, TTL: t.MaxAge,
		Description: "devlake-sink delivery ledger: what was posted to which DevLake connection"}
}

// kvStore adapts a JetStream KV bucket to sink.Store.
type kvStore struct{ kv jetstream.KeyValue }

func (s kvStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, sink.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

func (s kvStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, sink.ErrExists
	}
	return rev, err
}

func (s kvStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := s.kv.Update(ctx, key, value, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, sink.ErrConflict
	}
	return n, err
}
