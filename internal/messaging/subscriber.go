package messaging

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/pkg/events"
)

// Metadata keys the subscriber adds to every message, from the JetStream delivery.
const (
	metaSubject   = "_doraflow_subject"
	metaStream    = "_doraflow_stream"
	metaStreamSeq = "_doraflow_stream_seq"
	metaDelivered = "_doraflow_delivered"
	// watermillUUIDHeader is the header watermill-nats adds to every message it publishes.
	watermillUUIDHeader = "_watermill_message_uuid"
)

// toMessage turns any JetStream message into a watermill message and never fails: the first value of
// each header wins, and delivery metadata is added. (watermill-nats' default unmarshaler fails on a
// repeated header, and that failure panics its subscriber, so one hand-published message could crash
// every replica.) A payload that is not what the handler expects fails the handler's decode and is
// dead-lettered with the reason.
func toMessage(msg jetstream.Msg) *message.Message {
	hdr := msg.Headers()
	md := make(message.Metadata, len(hdr)+4)
	for k, v := range hdr {
		if len(v) > 0 && k != watermillUUIDHeader {
			md.Set(k, v[0])
		}
	}
	md.Set(metaSubject, msg.Subject())
	if meta, err := msg.Metadata(); err == nil {
		md.Set(metaStream, meta.Stream)
		md.Set(metaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
		md.Set(metaDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	}
	id := hdr.Get(nats.MsgIdHdr)
	if id == "" {
		id = hdr.Get(events.HeaderID)
	}
	if id == "" {
		id = md.Get(metaStream) + ":" + md.Get(metaStreamSeq)
	}
	m := message.NewMessage(id, msg.Data())
	m.Metadata = md
	return m
}

// storedMsg adapts a message read from a stream by sequence (no delivery) to what toMessage needs.
type storedMsg struct {
	jetstream.Msg // nil: only the methods below are called
	raw           *jetstream.RawStreamMsg
	stream        string
	delivered     uint64
}

func (s *storedMsg) Headers() nats.Header { return s.raw.Header }
func (s *storedMsg) Subject() string      { return s.raw.Subject }
func (s *storedMsg) Data() []byte         { return s.raw.Data }
func (s *storedMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: s.stream, Sequence: jetstream.SequencePair{Stream: s.raw.Sequence},
		NumDelivered: s.delivered}, nil
}

func deliveries(m *message.Message) int {
	n, _ := strconv.Atoi(m.Metadata.Get(metaDelivered))
	return n
}

// nakBackoff delays redelivery of a nacked message exponentially in its delivery count, so a
// dependency that is down is not hammered: base, 2·base, 4·base … capped at maxDelay.
type nakBackoff struct{ base, maxDelay time.Duration }

func (b nakBackoff) WaitTime(delivered uint64) time.Duration {
	d := b.base
	for i := uint64(1); i < delivered && d < b.maxDelay; i++ {
		d *= 2
	}
	return min(d, b.maxDelay)
}

// binding is a durable consumer a handler subscribes to.
type binding struct {
	stream      string
	ackWait     time.Duration
	concurrency int // messages handled at once (at least 1)
}

// subscriber is a watermill Subscriber over JetStream durable pull consumers, written for doraflow's
// guarantees instead of watermill-nats' jetstream subscriber (see docs/adr/0001):
//
//   - It binds to durable consumers created by EnsureConsumer and never creates or deletes any.
//   - Every delivery becomes a message; nothing it receives can crash it.
//   - Acks are server-confirmed (double ack); nacks are delayed by nakBackoff.
//   - Close stops fetching, lets in-flight messages finish and settle, naks what was buffered but not
//     started (so another replica gets it at once), and only then returns. It never closes the
//     connection, which belongs to the caller and is drained last.
//
// The topic a handler subscribes to is its durable consumer's name.
type subscriber struct {
	js      jetstream.JetStream
	pullMax int
	nak     nakBackoff
	log     zerolog.Logger
	timeout time.Duration // for Close

	mu       sync.Mutex
	bindings map[string]binding
	iters    []jetstream.MessagesContext
	closing  chan struct{}
	closed   bool
	loops    sync.WaitGroup
}

func newSubscriber(js jetstream.JetStream, pullMax int, nak nakBackoff, closeTimeout time.Duration, log zerolog.Logger) *subscriber {
	return &subscriber{js: js, pullMax: pullMax, nak: nak, timeout: closeTimeout, log: log,
		bindings: map[string]binding{}, closing: make(chan struct{})}
}

func (s *subscriber) bind(durable string, b binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bindings[durable] = b
}

// Subscribe starts pulling from the durable consumer named durable.
func (s *subscriber) Subscribe(ctx context.Context, durable string) (<-chan *message.Message, error) {
	s.mu.Lock()
	b, ok := s.bindings[durable]
	closed := s.closed
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no consumer bound for %q", durable)
	}
	if closed {
		return nil, errors.New("subscriber closed")
	}
	cons, err := s.js.Consumer(ctx, b.stream, durable)
	if err != nil {
		return nil, fmt.Errorf("bind consumer %s on %s: %w", durable, b.stream, err)
	}
	// A small pull batch: buffered messages age towards AckWait while earlier ones are handled.
	iter, err := cons.Messages(jetstream.PullMaxMessages(max(s.pullMax, b.concurrency)))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", durable, err)
	}
	s.mu.Lock()
	s.iters = append(s.iters, iter)
	s.mu.Unlock()

	out := make(chan *message.Message)
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		defer close(out)
		s.loop(ctx, durable, b, iter, out)
	}()
	return out, nil
}

// loop hands each delivery to the handler, at most b.concurrency at once, and returns when the
// iterator is closed and every handed-out message has settled.
func (s *subscriber) loop(ctx context.Context, durable string, b binding, iter jetstream.MessagesContext, out chan<- *message.Message) {
	log := s.log.With().Str("handler", durable).Logger()
	slots := make(chan struct{}, max(b.concurrency, 1))
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		jm, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			// Missed heartbeats and the like: the iterator recovers by itself.
			log.Debug().Err(err).Msg("pull consumer")
			select {
			case <-s.closing:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if s.isClosing() {
			s.nakNow(jm, log) // buffered but not started: hand it back at once
			continue
		}
		// Frees when a handed-out message settles (bounded by AckWait). With one slot, the next
		// message waits here until this one settled: one at a time, in delivery order.
		slots <- struct{}{}
		if s.isClosing() {
			<-slots
			s.nakNow(jm, log)
			continue
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			s.deliver(ctx, jm, b, out, log)
		}()
	}
}

// deliver hands one message to the handler and settles it with the server.
func (s *subscriber) deliver(ctx context.Context, jm jetstream.Msg, b binding, out chan<- *message.Message, log zerolog.Logger) {
	m := toMessage(jm)
	// The message context is not cancelled by shutdown: in-flight work finishes (the router's
	// middleware bounds it by AckWait).
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	m.SetContext(mctx)
	select {
	case out <- m:
	case <-s.closing:
		s.nakNow(jm, log)
		return
	}
	select {
	case <-m.Acked():
		actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer acancel()
		if err := jm.DoubleAck(actx); err != nil {
			// The server redelivers after AckWait; handlers are idempotent, so this costs a repeat.
			log.Warn().Err(err).Str("message_id", m.UUID).Msg("ack not confirmed; the message will be redelivered")
		}
	case <-m.Nacked():
		delay := s.nak.base
		if meta, err := jm.Metadata(); err == nil {
			delay = s.nak.WaitTime(meta.NumDelivered)
		}
		if asked, err := strconv.ParseInt(m.Metadata.Get(metaNakDelay), 10, 64); err == nil {
			delay = time.Duration(asked) // the handler said when retrying makes sense (RetryAfter)
		}
		if err := jm.NakWithDelay(delay); err != nil {
			log.Warn().Err(err).Str("message_id", m.UUID).Msg("nak not sent; the message will be redelivered after AckWait")
		}
	case <-time.After(b.ackWait):
		// The handler overran AckWait: the server redelivers; neither ack nor nak is sent.
		log.Error().Str("message_id", m.UUID).Dur("ack_wait", b.ackWait).Msg("handler exceeded AckWait")
	}
}

func (s *subscriber) nakNow(jm jetstream.Msg, log zerolog.Logger) {
	if err := jm.Nak(); err != nil {
		log.Debug().Err(err).Msg("nak at shutdown")
	}
}

func (s *subscriber) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// Close stops fetching, waits for in-flight messages to settle and returns. It is idempotent.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	iters := append([]jetstream.MessagesContext(nil), s.iters...)
	s.mu.Unlock()

	// Drain: no more pulls; what is buffered is still returned by Next (and nacked), then Next
	// reports the iterator closed.
	for _, it := range iters {
		it.Drain()
	}
	done := make(chan struct{})
	go func() { s.loops.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(s.timeout):
		for _, it := range iters {
			it.Stop()
		}
		return fmt.Errorf("in-flight messages not settled within %s; they will be redelivered", s.timeout)
	}
}
