package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/poll"
)

// stateBucket holds one entry per incident: its UUID → the JSON of poll.State.
var stateBucket = messaging.KV{
	Bucket:      "webrca-poller-incidents",
	Description: "doraflow webrca-poller: last published state of each WebRCA incident",
	History:     5, // a few earlier states, for debugging with `nats kv history`
}

// kvStore is poll.Store on a JetStream KV bucket.
type kvStore struct{ kv jetstream.KeyValue }

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// stateKey is the incident's UUID when it is a valid KV key (always, for WebRCA's UUIDs), else a
// hash of it.
func stateKey(incidentID string) string {
	if plainKey.MatchString(incidentID) {
		return incidentID
	}
	sum := sha256.Sum256([]byte(incidentID))
	return "sha256_" + hex.EncodeToString(sum[:16])
}

func (s kvStore) Get(ctx context.Context, incidentID string) (poll.State, bool, error) {
	e, err := s.kv.Get(ctx, stateKey(incidentID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return poll.State{}, false, nil
	}
	if err != nil {
		return poll.State{}, false, fmt.Errorf("get %s/%s: %w", stateBucket.Bucket, stateKey(incidentID), err)
	}
	var st poll.State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// A corrupt entry stops the poll loudly rather than republishing the incident as new;
		// `nats kv del` of the key makes the next poll publish it as opened.
		return poll.State{}, false, fmt.Errorf("decode %s/%s: %w", stateBucket.Bucket, stateKey(incidentID), err)
	}
	return st, true, nil
}

func (s kvStore) Put(ctx context.Context, incidentID string, st poll.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", incidentID, err)
	}
	if _, err := s.kv.Put(ctx, stateKey(incidentID), b); err != nil {
		return fmt.Errorf("put %s/%s: %w", stateBucket.Bucket, stateKey(incidentID), err)
	}
	return nil
}

// eventPublisher is poll.Publisher on the service's publisher (CloudEvents headers, Nats-Msg-Id).
type eventPublisher struct {
	pub interface {
		Publish(ctx context.Context, ev events.Event) error
	}
}

func (p eventPublisher) Publish(ctx context.Context, ev events.IncidentObserved) error {
	return p.pub.Publish(ctx, ev)
}
