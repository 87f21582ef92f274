package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/pkg/events"
)

// HandlerFunc handles one message. Return nil when the message is done (a duplicate is done too),
// Permanent(err) when retrying cannot help, and any other error to retry.
type HandlerFunc = message.NoPublishHandlerFunc

// Handler describes one handler: its name and the durable consumer behind it.
type Handler struct {
	// Name follows verb-object-on-event, such as post-deployment-on-enriched. The durable consumer
	// is <service>-<Name>, the same string in logs, metric labels and `nats consumer ls`.
	Name    string
	Stream  string
	Subject string
	// AckWait is how long one delivery may take, in-process retries included (default 30s).
	AckWait time.Duration
	// MaxDeliver bounds deliveries (default 10); the last failed one is dead-lettered. Negative
	// means unlimited: retryable failures then never dead-letter, only permanent ones do.
	MaxDeliver int
	// MaxAckPending bounds unacknowledged messages across replicas (default 256).
	MaxAckPending int
	// Concurrency is how many messages one replica handles at once (default 1: one at a time, in
	// delivery order). Above 1, deliveries are handled in parallel and may finish in any order: use
	// it only for handlers that are correct under reordering, as they must be with several replicas.
	// The router's PullMaxMessages is raised to at least Concurrency.
	Concurrency int
	// Retries are in-process retries of one delivery before it is nacked (default 2).
	Retries int
	// RetryInterval is the first in-process retry delay, doubling each time (default 100ms).
	RetryInterval time.Duration
}

func (h *Handler) setDefaults() {
	if h.AckWait <= 0 {
		h.AckWait = 30 * time.Second
	}
	if h.MaxDeliver == 0 {
		h.MaxDeliver = 10
	}
	if h.MaxAckPending <= 0 {
		h.MaxAckPending = 256
	}
	if h.Concurrency <= 0 {
		h.Concurrency = 1
	}
	if h.Retries == 0 {
		h.Retries = 2
	}
	if h.Retries < 0 {
		h.Retries = 0
	}
	if h.RetryInterval <= 0 {
		h.RetryInterval = 100 * time.Millisecond
	}
}

// RouterConfig configures a Router.
type RouterConfig struct {
	Service string
	// PullMaxMessages is how many messages each consumer buffers client-side (default 16).
	PullMaxMessages int
	// CloseTimeout bounds the wait for in-flight messages at shutdown (default 8s).
	CloseTimeout time.Duration
	// NakDelay is the first redelivery delay of a nacked message, doubling per delivery up to a
	// minute (default 1s).
	NakDelay time.Duration
	// Replicas of the dead-letter body bucket (JETSTREAM_REPLICAS; default 1).
	Replicas int
}

// Router runs doraflow handlers on a watermill router bound to durable JetStream consumers.
type Router struct {
	cfg     RouterConfig
	js      jetstream.JetStream
	log     zerolog.Logger
	metrics *Metrics
	wm      *message.Router
	sub     *subscriber

	mu       sync.Mutex
	handlers []Handler
	running  chan struct{}
	closed   bool
}

// NewRouter returns a router. Handlers are added with Add before Run.
func NewRouter(cfg RouterConfig, js jetstream.JetStream, log zerolog.Logger, m *Metrics) (*Router, error) {
	if cfg.PullMaxMessages <= 0 {
		cfg.PullMaxMessages = 16
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 8 * time.Second
	}
	if cfg.NakDelay <= 0 {
		cfg.NakDelay = time.Second
	}
	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout + time.Second}, logging.Watermill(log))
	if err != nil {
		return nil, fmt.Errorf("create router: %w", err)
	}
	sub := newSubscriber(js, cfg.PullMaxMessages, nakBackoff{base: cfg.NakDelay, maxDelay: time.Minute}, cfg.CloseTimeout, log)
	return &Router{cfg: cfg, js: js, log: log, metrics: m, wm: wm, sub: sub, running: make(chan struct{})}, nil
}

// Add registers a handler. Its durable consumer is created when the router runs.
func (r *Router) Add(h Handler, fn HandlerFunc) {
	h.setDefaults()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers = append(r.handlers, h)
	durable := r.Durable(h.Name)
	r.sub.bind(durable, binding{stream: h.Stream, ackWait: h.AckWait, concurrency: h.Concurrency})
	wh := r.wm.AddConsumerHandler(durable, durable, r.sub, fn)
	// Outermost first: observe (context, logging, metrics) → dead-letter → retry → recover panics.
	wh.AddMiddleware(r.observe(h, durable), r.deadLetter(h, durable), middleware.Retry{
		MaxRetries:          h.Retries,
		InitialInterval:     h.RetryInterval,
		MaxInterval:         h.AckWait / 4,
		Multiplier:          2,
		RandomizationFactor: 0.2,
		MaxElapsedTime:      h.AckWait / 2,
		ShouldRetry: func(p middleware.RetryParams) bool {
			_, delayed := retryDelay(p.Err)
			return !IsPermanent(p.Err) && !delayed
		},
		ResetContextOnRetry: true,
	}.Middleware, recoverPanics)
}

// Durable returns the durable consumer name of a handler: <service>-<handler>.
func (r *Router) Durable(handler string) string { return r.cfg.Service + "-" + handler }

// Run creates the durable consumers, opens the subscriber's connection and runs the handlers until
// Close. Pass a context that is not cancelled at shutdown (context.WithoutCancel): cancelling it
// cuts subscriptions at once, while Close drains in-flight messages.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	handlers := append([]Handler(nil), r.handlers...)
	r.mu.Unlock()
	for _, h := range handlers {
		if _, err := EnsureConsumer(ctx, r.js, Consumer{Durable: r.Durable(h.Name), Stream: h.Stream,
			Subject: h.Subject, AckWait: h.AckWait, MaxDeliver: h.MaxDeliver, MaxAckPending: h.MaxAckPending}); err != nil {
			return err
		}
		if h.MaxDeliver > 0 {
			sub, err := r.watchMaxDeliveries(h)
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
		}
	}
	go func() {
		<-r.wm.Running()
		close(r.running)
	}()
	return r.wm.Run(ctx)
}

// Running is closed once the router's handlers are subscribed.
func (r *Router) Running() <-chan struct{} { return r.running }

// Ready reports whether the router is running and its consumers exist on the server.
func (r *Router) Ready(ctx context.Context) error {
	select {
	case <-r.running:
	default:
		return errors.New("router not running yet")
	}
	r.mu.Lock()
	handlers := append([]Handler(nil), r.handlers...)
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return errors.New("router closing")
	}
	for _, h := range handlers {
		if _, err := r.js.Consumer(ctx, h.Stream, r.Durable(h.Name)); err != nil {
			return fmt.Errorf("consumer %s: %w", r.Durable(h.Name), err)
		}
	}
	return nil
}

// Close stops fetching, waits for in-flight messages to be acknowledged (or nacked back) and returns.
// The connection stays open; its owner drains it last.
func (r *Router) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	// watermill closes each handler's subscriber (ours drains) before it stops its handler loops.
	return errors.Join(r.sub.Close(), r.wm.Close())
}

// observe is the outermost middleware: it puts a logger, the correlation ID and a deadline into the
// message context, logs the outcome once, and counts it.
func (r *Router) observe(h Handler, durable string) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			start := time.Now()
			corr := msg.Metadata.Get(events.HeaderCorrelationID)
			if corr == "" {
				corr = msg.UUID
			}
			log := r.log.With().
				Str(logging.FieldHandler, durable).
				Str(logging.FieldSubject, msg.Metadata.Get(metaSubject)).
				Str(logging.FieldMessageID, msg.UUID).
				Str(logging.FieldEventID, msg.Metadata.Get(events.HeaderID)).
				Str(logging.FieldCorrelationID, corr).
				Logger()
			// Leave a margin before AckWait so the ack reaches the server before it redelivers. The
			// subscriber's message context is never cancelled by shutdown; this deadline bounds the work.
			ctx, cancel := context.WithTimeout(msg.Context(), h.AckWait*9/10)
			defer cancel()
			ctx = WithCorrelationID(log.WithContext(ctx), corr)
			msg.SetContext(ctx)

			produced, err := next(msg)
			took := time.Since(start)
			switch {
			case err == nil && msg.Metadata.Get(metaDeadLettered) != "":
				r.metrics.result(durable, resultDeadLettered, took)
			case err == nil:
				r.metrics.result(durable, resultOK, took)
				if t, perr := time.Parse(time.RFC3339Nano, msg.Metadata.Get(events.HeaderTime)); perr == nil {
					r.metrics.eventLag(durable, t)
				}
				log.Debug().Dur("took", took).Msg("handled")
			default:
				r.metrics.result(durable, resultRetried, took)
				log.Warn().Err(err).Int("delivery", deliveries(msg)).Int("max_deliver", h.MaxDeliver).
					Msg("handler failed; message will be redelivered")
			}
			return produced, err
		}
	}
}

const metaDeadLettered = "_doraflow_dead_lettered"

// deadLetter moves a message to doraflow.dlq.<service> when its error is permanent, or when this was
// its last delivery, and then acknowledges it so the consumer moves on. If the dead-letter publish
// fails, the message is nacked instead: nothing is dropped.
func (r *Router) deadLetter(h Handler, durable string) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			r.metrics.attempt(durable)
			produced, err := next(msg)
			if err == nil {
				return produced, nil
			}
			n := deliveries(msg)
			last := h.MaxDeliver > 0 && n >= h.MaxDeliver
			if !IsPermanent(err) && !last {
				if d, ok := retryDelay(err); ok {
					msg.Metadata.Set(metaNakDelay, strconv.FormatInt(int64(d), 10))
				}
				return produced, err
			}
			reason := err.Error()
			if !IsPermanent(err) {
				reason = fmt.Sprintf("gave up after %d deliveries: %s", n, reason)
			}
			if dlqErr := r.publishDeadLetter(msg, durable, reason); dlqErr != nil {
				return nil, fmt.Errorf("dead-letter after %w: %w", err, dlqErr)
			}
			msg.Metadata.Set(metaDeadLettered, "1")
			zerolog.Ctx(msg.Context()).Error().Err(err).Int("delivery", n).Msg("dead-lettered")
			return nil, nil
		}
	}
}

func (r *Router) publishDeadLetter(msg *message.Message, durable, reason string) error {
	m := nats.NewMsg(events.DeadLetterSubject(r.cfg.Service))
	m.Data = msg.Payload
	for k, v := range msg.Metadata {
		if len(k) > 0 && k[0] == '_' {
			continue
		}
		m.Header.Set(k, v)
	}
	// An error may quote the URL it failed on, with its credentials.
	// Header values are one line: a stack's line breaks become " | ".
	reason = strings.NewReplacer("\r\n", " | ", "\n", " | ", "\r", " | ").Replace(logging.RedactText(reason))
	reason = truncateReason(reason)
	seq := msg.Metadata.Get(metaStreamSeq)
	m.Header.Set(events.HeaderDeadReason, reason)
	m.Header.Set(events.HeaderDeadSubject, msg.Metadata.Get(metaSubject))
	m.Header.Set(events.HeaderDeadHandler, durable)
	m.Header.Set(events.HeaderDeadStreamSeq, seq)
	m.Header.Set(events.HeaderDeadDeliveries, strconv.Itoa(deliveries(msg)))
	m.Header.Set(events.HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per original message and handler, even if this step itself is retried.
	id := events.NewID("dlq", durable, msg.Metadata.Get(metaStream), seq, msg.UUID)
	m.Header.Set(nats.MsgIdHdr, id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.keepLargeBody(ctx, m, id); err != nil {
		return err
	}
	_, err := r.js.PublishMsg(ctx, m)
	return err
}

// keepLargeBody moves the body of a dead letter that would not fit the server's max_payload (the
// original was close to it, and the dead-letter headers push it over) into the object store
// events.DeadLetterBodyBucket, whole, and leaves a reference in HeaderDeadBody: a message too large
// for a stream is still dead-lettered, and the consumer moves on.
func (r *Router) keepLargeBody(ctx context.Context, m *nats.Msg, id string) error {
	limit := r.js.Conn().MaxPayload()
	size := int64(len(m.Data) + len("NATS/1.0\r\n\r\n"))
	for k, vs := range m.Header {
		for _, v := range vs {
			size += int64(len(k) + len(v) + len(": \r\n"))
		}
	}
	if limit <= 0 || size <= limit {
		return nil
	}
	obs, err := r.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.DeadLetterBodyBucket,
		Description: "bodies of doraflow dead letters too large for a message", TTL: 30 * 24 * time.Hour,
		Replicas: max(r.cfg.Replicas, 1)})
	if err != nil {
		return fmt.Errorf("object store %s: %w", events.DeadLetterBodyBucket, err)
	}
	if _, err := obs.PutBytes(ctx, id, m.Data); err != nil {
		return fmt.Errorf("keep dead-letter body %s: %w", id, err)
	}
	m.Header.Set(events.HeaderDeadBody, events.DeadLetterBodyBucket+"/"+id)
	m.Header.Set(events.HeaderDeadReason, truncateReason(fmt.Sprintf("too_large: %d bytes kept in %s/%s; %s",
		len(m.Data), events.DeadLetterBodyBucket, id, m.Header.Get(events.HeaderDeadReason))))
	m.Data = nil
	return nil
}

func truncateReason(s string) string {
	if len(s) > 2048 {
		return s[:2048]
	}
	return s
}

// maxDeliveriesAdvisory is the part of JetStream's max-deliveries advisory doraflow reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries dead-letters messages whose last delivery was never settled: the process died
// or the handler overran AckWait on the final attempt, so the dead-letter middleware never ran and
// JetStream only records the give-up in an advisory. Replicas share a queue group, so one acts; the
// dead letter's deterministic ID makes a second copy a duplicate anyway.
func (r *Router) watchMaxDeliveries(h Handler) (*nats.Subscription, error) {
	durable := r.Durable(h.Name)
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", h.Stream, durable)
	nc := r.js.Conn()
	sub, err := nc.QueueSubscribe(subject, durable, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			r.log.Error().Err(err).Str(logging.FieldHandler, durable).Msg("undecodable max-deliveries advisory")
			return
		}
		if err := r.deadLetterUnsettled(adv, durable, h.MaxDeliver); err != nil {
			r.log.Error().Err(err).Str(logging.FieldHandler, durable).Uint64("stream_seq", adv.StreamSeq).
				Msg("could not dead-letter a message that exhausted its deliveries; it stays in its stream")
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch max-deliveries advisories of %s: %w", durable, err)
	}
	return sub, nil
}

func (r *Router) deadLetterUnsettled(adv maxDeliveriesAdvisory, durable string, maxDeliver int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := r.js.Stream(ctx, adv.Stream)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		return err
	}
	jm := &storedMsg{raw: raw, stream: adv.Stream, delivered: adv.Deliveries}
	msg := toMessage(jm)
	reason := fmt.Sprintf("gave up after %d deliveries: no delivery was settled (the process stopped or the handler overran AckWait)", max(adv.Deliveries, uint64(maxDeliver)))
	if err := r.publishDeadLetter(msg, durable, reason); err != nil {
		return err
	}
	r.metrics.result(durable, resultDeadLettered, 0)
	r.log.Error().Str(logging.FieldHandler, durable).Str(logging.FieldMessageID, msg.UUID).
		Uint64("stream_seq", adv.StreamSeq).Msg("dead-lettered after its last delivery was never settled")
	return nil
}

// recoverPanics turns a handler panic into a permanent error: the same input would panic again.
func recoverPanics(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (produced []*message.Message, err error) {
		defer func() {
			if p := recover(); p != nil {
				stack := debug.Stack()
				zerolog.Ctx(msg.Context()).Error().Str("stack", string(stack)).Interface("panic", p).Msg("handler panicked")
				// The stack travels in the dead letter's reason (cut to the header limit there), so the
				// entry alone says where it broke.
				err = Permanent(fmt.Errorf("handler panicked: %v\n%s", p, stack))
			}
		}()
		return next(msg)
	}
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the message skips retries and goes to the dead-letter subject.
// Use it for undecodable payloads, failed validation and 4xx answers other than 408 and 429.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// retryAfterError asks for the message to be redelivered after a delay.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e retryAfterError) Error() string { return e.err.Error() }
func (e retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as retryable after d: the message skips in-process retries and is nacked
// with that delay (for example until a rate limit resets) instead of the exponential backoff. It
// still counts as a delivery; handlers that may wait long use MaxDeliver -1.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfterError{err: err, after: max(d, 0)}
}

func retryDelay(err error) (time.Duration, bool) {
	var r retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

const metaNakDelay = "_doraflow_nak_delay"

// Validator is implemented by events that can check themselves (every events type).
type Validator interface{ Validate() error }

// Handle adapts a typed handler: it decodes the JSON body into T (unknown fields are ignored, as the
// compatibility rules require), validates it when T has a Validate method, and calls fn. A body that
// does not decode or validate is a permanent error.
func Handle[T any](fn func(ctx context.Context, in T) error) HandlerFunc {
	return func(msg *message.Message) error {
		var in T
		if err := json.Unmarshal(msg.Payload, &in); err != nil {
			return Permanent(fmt.Errorf("decode %T: %w", in, err))
		}
		if v, ok := any(in).(Validator); ok {
			if err := v.Validate(); err != nil {
				return Permanent(err)
			}
		}
		return fn(msg.Context(), in)
	}
}
