package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// kvStore adapts a KV bucket to the Get/Put stores of internal/enrich and internal/github.
type kvStore struct {
	kv   jetstream.KeyValue
	miss error // returned (wrapped) for absent keys
}

func (s kvStore) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", key, s.miss)
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

func (s kvStore) Put(ctx context.Context, key string, value []byte) error {
	_, err := s.kv.Put(ctx, key, value)
	return err
}

// errStateMoved means a state key changed in the bucket since this process last read it (another
// replica enriched a deployment of the component): the delivery is retried from fresh state.
var errStateMoved = errors.New("enricher state changed by another replica; recomputing")

// casStore is the deployment handler's state store: a write-through copy of the keys it read, each
// with its KV revision, so the common path reads nothing from the server. Every write is a
// compare-and-set against the revision the computation read, so a copy made stale by another
// replica is never written over: the write fails with errStateMoved, the key is forgotten, and the
// handler recomputes from the bucket at once. The handler writes state before it publishes, so an
// event is only published from state that was current.
//
// Only the deployment handler, which runs one delivery at a time, may use it; readers that cannot
// detect staleness (incident linking) read the bucket directly.
type casStore struct {
	kv   jetstream.KeyValue
	miss error // returned (wrapped) for absent keys
	max  int   // entries kept; beyond, an arbitrary one is forgotten (it is read again when needed)

	mu   sync.Mutex
	keys map[string]casEntry
}

type casEntry struct {
	value []byte
	rev   uint64 // 0: the key does not exist (KV revisions start at 1)
}

func newCASStore(kv jetstream.KeyValue, miss error, maxEntries int) *casStore {
	return &casStore{kv: kv, miss: miss, max: maxEntries, keys: map[string]casEntry{}}
}

// lookup returns the copy of key, reading the bucket (and keeping the answer) when there is none.
func (s *casStore) lookup(ctx context.Context, key string) (casEntry, error) {
	s.mu.Lock()
	e, ok := s.keys[key]
	s.mu.Unlock()
	if ok {
		return e, nil
	}
	kve, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// A deleted key reads as not found too; its next write is a create.
	case err != nil:
		return casEntry{}, err
	default:
		e = casEntry{value: kve.Value(), rev: kve.Revision()}
	}
	s.remember(key, e)
	return e, nil
}

func (s *casStore) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	if e.rev == 0 {
		return nil, fmt.Errorf("%s: %w", key, s.miss)
	}
	return e.value, nil
}

// Put writes key with compare-and-set against the revision this copy holds (read now if the
// delivery did not read it).
func (s *casStore) Put(ctx context.Context, key string, value []byte) error {
	e, err := s.lookup(ctx, key)
	if err != nil {
		return err
	}
	var rev uint64
	if e.rev == 0 {
		rev, err = s.kv.Create(ctx, key, value)
	} else {
		rev, err = s.kv.Update(ctx, key, value, e.rev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Another replica is active: whatever else this copy holds is as likely stale.
			s.forgetAll()
			return fmt.Errorf("%s: %w", key, errStateMoved)
		}
		s.forget(key) // the write may or may not have happened
		return err
	}
	s.remember(key, casEntry{value: value, rev: rev})
	return nil
}

func (s *casStore) remember(key string, e casEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; !ok && len(s.keys) >= s.max {
		for k := range s.keys {
			delete(s.keys, k)
			break
		}
	}
	s.keys[key] = e
}

func (s *casStore) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
}

func (s *casStore) forgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.keys)
}

// asyncCache writes GitHub answers to the cache bucket without waiting for the server's
// acknowledgement: the answers are immutable and a lost write costs one GitHub call on a later
// miss, so enrichment does not wait a round trip per answer. Reads are plain KV reads. Failed
// writes are reported to failed (a metric), by Put when the write cannot be sent and by drain when
// the server refuses it.
type asyncCache struct {
	kvStore
	js      jetstream.JetStream
	subject string // $KV.<bucket>. (the bucket's subject prefix)
	failed  func(error)
	acks    chan jetstream.PubAckFuture
}

func newAsyncCache(js jetstream.JetStream, kv jetstream.KeyValue, miss error, failed func(error)) *asyncCache {
	return &asyncCache{kvStore: kvStore{kv: kv, miss: miss}, js: js, subject: "$KV." + kv.Bucket() + ".",
		failed: failed, acks: make(chan jetstream.PubAckFuture, 4096)}
}

// Put sends the write and returns at once; it never fails enrichment.
func (c *asyncCache) Put(_ context.Context, key string, value []byte) error {
	f, err := c.js.PublishAsync(c.subject+key, value)
	if err != nil {
		c.failed(err)
		return nil
	}
	select {
	case c.acks <- f:
	default:
		// drain is behind: the write still happens; only its outcome goes unchecked.
	}
	return nil
}

// drain waits for the outcome of each cache write until ctx ends.
func (c *asyncCache) drain(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-c.acks:
			select {
			case <-f.Ok():
			case err := <-f.Err():
				c.failed(err)
			case <-ctx.Done():
				return nil
			}
		}
	}
}
