package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/pkg/events"
)

// Topology holds the JetStream settings that must agree across services: every service provisions
// the streams it uses with these values, idempotently, at start.
type Topology struct {
	// Replicas of every stream and KV bucket: 1 for a single server, 3 for a production cluster.
	Replicas int
	// MaxAge of the raw and enriched streams: long enough to rebuild metrics from history.
	MaxAge time.Duration
	// DeadLetterMaxAge of the dead-letter stream.
	DeadLetterMaxAge time.Duration
	// Duplicates is the window in which JetStream drops a repeated Nats-Msg-Id.
	Duplicates time.Duration
	// Memory selects memory storage instead of file storage (tests and demos only).
	Memory bool
}

// DefaultMaxAge keeps 400 days of raw and enriched events, enough for a year-over-year rebuild.
const DefaultMaxAge = 400 * 24 * time.Hour

// TopologyFromEnv reads the JETSTREAM_* variables.
func TopologyFromEnv(env *config.Env) Topology {
	t := Topology{
		Replicas:         env.Int("JETSTREAM_REPLICAS", 1, 1, 5, "replicas of streams and KV buckets (3 in a production cluster)"),
		MaxAge:           env.Duration("JETSTREAM_MAX_AGE", DefaultMaxAge, "retention of the raw and enriched streams"),
		DeadLetterMaxAge: env.Duration("JETSTREAM_DLQ_MAX_AGE", 30*24*time.Hour, "retention of the dead-letter stream"),
		Duplicates:       env.Duration("JETSTREAM_DUPLICATE_WINDOW", 10*time.Minute, "window in which a repeated Nats-Msg-Id is dropped"),
	}
	if t.Duplicates > t.MaxAge {
		env.Problemf("JETSTREAM_DUPLICATE_WINDOW (%s) must not exceed JETSTREAM_MAX_AGE (%s)", t.Duplicates, t.MaxAge)
	}
	return t
}

// StreamConfig returns the configuration of one of doraflow's streams (events.Stream*).
func (t Topology) StreamConfig(name string) (jetstream.StreamConfig, error) {
	subjects, ok := events.StreamSubjects[name]
	if !ok {
		return jetstream.StreamConfig{}, fmt.Errorf("unknown stream %q", name)
	}
	maxAge := t.MaxAge
	if name == events.StreamDeadLetter {
		maxAge = t.DeadLetterMaxAge
	}
	storage := jetstream.FileStorage
	if t.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        name,
		Description: "doraflow " + name,
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		Replicas:    max(t.Replicas, 1),
		MaxAge:      maxAge,
		Duplicates:  min(t.Duplicates, maxAge),
		Discard:     jetstream.DiscardOld,
	}, nil
}

// EnsureStreams creates or updates the named streams. It is idempotent, so every service can call
// it at start for the streams it publishes to or consumes from.
func (t Topology) EnsureStreams(ctx context.Context, js jetstream.JetStream, names ...string) error {
	for _, name := range names {
		cfg, err := t.StreamConfig(name)
		if err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, err)
		}
	}
	return nil
}

// KV describes a key-value bucket a service uses.
type KV struct {
	Bucket      string
	Description string
	// TTL expires every key this long after its last write; zero keeps keys forever.
	TTL time.Duration
	// History is the number of values kept per key (1 when zero).
	History uint8
	// PerKeyTTL enables jetstream.KeyTTL on individual keys (server 2.11+).
	PerKeyTTL bool
}

// EnsureKV creates or updates a KV bucket with the topology's replicas and storage.
func (t Topology) EnsureKV(ctx context.Context, js jetstream.JetStream, kv KV) (jetstream.KeyValue, error) {
	storage := jetstream.FileStorage
	if t.Memory {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      kv.Bucket,
		Description: kv.Description,
		TTL:         kv.TTL,
		History:     max(kv.History, 1),
		Storage:     storage,
		Replicas:    max(t.Replicas, 1),
	}
	if kv.PerKeyTTL {
		// A marker is left when a key expires by its own TTL; it needs a positive duration.
		cfg.LimitMarkerTTL = time.Minute
	}
	b, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure KV bucket %s: %w", kv.Bucket, err)
	}
	return b, nil
}

// Consumer describes the durable pull consumer behind one handler.
type Consumer struct {
	// Durable is the consumer name: <service>-<handler>.
	Durable string
	Stream  string
	Subject string
	// AckWait is how long the server waits for an ack before redelivering.
	AckWait time.Duration
	// MaxDeliver bounds deliveries; the last failed delivery is dead-lettered. Negative: unlimited.
	MaxDeliver int
	// MaxAckPending bounds unacknowledged messages across all replicas.
	MaxAckPending int
}

func (c Consumer) config() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.Durable,
		Description:   "doraflow handler " + c.Durable,
		FilterSubject: c.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// EnsureConsumer creates the durable consumer, or updates the settings that may change on an
// existing one. The consumer outlives the process: a restarted service resumes after its last ack.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c Consumer) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.config())
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", c.Durable, c.Stream, err)
	}
	return cons, nil
}

// IsNotFound reports whether err says a stream, consumer, bucket or key does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrKeyNotFound)
}
