package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/pkg/events"
)

// Publisher publishes doraflow events to JetStream: a JSON body, the CloudEvents headers and
// Nats-Msg-Id set to the event's deterministic ID, so a repeat inside the stream's duplicate window
// is stored once.
type Publisher struct {
	pub     message.Publisher
	nc      *nats.Conn
	service string
	metrics *Metrics
}

// ErrTooLarge means a message does not fit the server's max_payload. It is permanent (Permanent):
// the same event will never fit, so its handler dead-letters the input instead of retrying forever.
var ErrTooLarge = errors.New("too_large")

// NewPublisher returns a publisher on nc. Closing the publisher is not needed: the connection is
// owned and drained by the caller.
func NewPublisher(nc *nats.Conn, service string, log zerolog.Logger, m *Metrics) (*Publisher, error) {
	// ConfigureStream is left unset on purpose: with it, watermill-nats publishes to the stream name
	// instead of the topic. Streams are provisioned by Topology.EnsureStreams.
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: nc, Logger: logging.Watermill(log)})
	if err != nil {
		return nil, fmt.Errorf("create publisher: %w", err)
	}
	return &Publisher{pub: pub, nc: nc, service: service, metrics: m}, nil
}

// Publish validates ev and publishes it on its subject. An invalid event is a programming error in
// the producer and is returned without publishing.
func (p *Publisher) Publish(ctx context.Context, ev events.Event) error {
	meta := ev.Meta()
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("publish %s %s: %w", meta.Subject, meta.ID, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("marshal %s %s: %w", meta.Subject, meta.ID, err)
	}
	if err := p.PublishRaw(ctx, meta.Subject, meta.ID, body, events.Headers(meta, p.service, CorrelationID(ctx))); err != nil {
		return err
	}
	return nil
}

// PublishRaw publishes body on subject with the given headers and message ID (Nats-Msg-Id). It is
// for callers that move messages as they are, such as a dead-letter replay.
func (p *Publisher) PublishRaw(_ context.Context, subject, id string, body []byte, headers map[string]string) error {
	msg := message.NewMessage(id, body)
	for k, v := range headers {
		msg.Metadata.Set(k, v)
	}
	msg.Metadata.Set(events.HeaderMsgID, id)
	if limit, size := p.nc.MaxPayload(), messageSize(body, msg.Metadata); limit > 0 && size > limit {
		p.metrics.published(subject, "too_large")
		return Permanent(fmt.Errorf("publish %s %s: %w: %d bytes with headers, the server's max_payload is %d",
			subject, id, ErrTooLarge, size, limit))
	}
	if err := p.pub.Publish(subject, msg); err != nil {
		p.metrics.published(subject, "error")
		return fmt.Errorf("publish %s %s: %w", subject, id, err)
	}
	p.metrics.published(subject, "ok")
	return nil
}

// messageSize is what a message with these headers weighs against max_payload: the body plus the
// NATS/1.0 header block as nats.go encodes it (an upper bound, so the check never lets one through
// that the server refuses).
func messageSize(body []byte, headers map[string]string) int64 {
	n := len(body) + len("NATS/1.0\r\n\r\n")
	for k, v := range headers {
		n += len(k) + len(v) + len(": \r\n")
	}
	// watermill adds its message UUID header.
	n += len("_watermill_message_uuid: \r\n") + 64
	return int64(n)
}

type ctxKey int

const correlationKey ctxKey = iota

// WithCorrelationID returns ctx carrying the correlation ID that published events inherit.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation ID in ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey).(string)
	return id
}
