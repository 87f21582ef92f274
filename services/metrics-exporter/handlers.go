package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora"
)

// feed is one subject the exporter replays from the start of its stream and then follows live.
type feed struct {
	stream, subject string
	apply           func(st *dora.State, body []byte) (dora.Outcome, error)
}

// decodeAnd returns a feed's apply function: decode the JSON body as T, then add it to the state.
func decodeAnd[T any](add func(st *dora.State, in T) (dora.Outcome, error)) func(*dora.State, []byte) (dora.Outcome, error) {
	return func(st *dora.State, body []byte) (dora.Outcome, error) {
		var in T
		if err := json.Unmarshal(body, &in); err != nil {
			return 0, fmt.Errorf("%w: decode %T: %w", dora.ErrInvalid, in, err)
		}
		return add(st, in)
	}
}

var feeds = []feed{
	{events.StreamEnriched, events.SubjectDeploymentEnriched, decodeAnd((*dora.State).AddDeployment)},
	{events.StreamEnriched, events.SubjectIncidentEnriched, decodeAnd((*dora.State).AddIncident)},
	{events.StreamRaw, events.SubjectChangeFailureDetected, decodeAnd((*dora.State).AddSignal)},
	{events.StreamEnriched, events.SubjectChangeFailureInferred, decodeAnd((*dora.State).AddInferred)},
}

// start builds the DORA state, registers its collector behind the guard, loads the counter floors,
// and starts one replay-then-follow loop per subject. /readyz stays false, and the guard serves no
// dora_* series, until every subject has been replayed up to the last message that existed at start.
//
// Each loop reads through an ordered consumer from sequence 1: the state is in memory and must be
// rebuilt from the whole history on every start, and every replica needs every event, so there is
// no work to share and no position worth persisting (README, "Why ordered consumers").
func start(ctx context.Context, d *service.Deps[rules]) error {
	m := d.Config.Metrics
	st, err := dora.New(dora.Options{Windows: m.Windows, Benchmark: m.Benchmark, Now: m.clock(),
		IncidentLinkLookback: m.IncidentLinkLookback, Rebuilding: true})
	if err != nil {
		return err
	}
	guard := dora.NewGuard(st)
	d.Registry.MustRegister(guard)
	fl, err := openFloors(ctx, d.JS, guard, d.Log)
	if err != nil {
		return err
	}
	if err := fl.load(ctx); err != nil {
		return err
	}
	d.Go(fl.run)
	r := &replay{js: d.JS, state: st, guard: guard, log: d.Log, metrics: newMetrics(d.Registry), started: time.Now(),
		progress: map[string]*progress{}}
	for _, f := range feeds {
		r.progress[f.subject] = &progress{}
	}
	d.Checks.Add("rebuild", r.ready)
	for _, f := range feeds {
		d.Go(func(ctx context.Context) error { return r.follow(ctx, f) })
	}
	d.Log.Info().Str("benchmark", m.Benchmark).Str("evaluation_time", m.EvaluationTime).
		Msg("rebuilding DORA state from the streams")
	return nil
}

type replay struct {
	js       jetstream.JetStream
	state    *dora.State
	guard    *dora.Guard
	log      zerolog.Logger
	metrics  *metrics
	started  time.Time
	mu       sync.Mutex
	progress map[string]*progress
}

// progress is one subject's replay: the stream sequence it must reach to have caught up, and how
// many messages the consumer still has pending.
type progress struct {
	target    uint64
	known     bool // target is known
	caughtUp  bool
	pending   uint64
	processed uint64
}

// ready is the readiness check: nil once every subject caught up with the history that existed when
// the exporter started.
func (r *replay) ready(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var behind []string
	for subject, p := range r.progress {
		switch {
		case !p.known:
			behind = append(behind, subject+" starting")
		case !p.caughtUp:
			behind = append(behind, fmt.Sprintf("%s %d pending", subject, p.pending))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	sort.Strings(behind)
	return fmt.Errorf("rebuilding state: %s", strings.Join(behind, ", "))
}

// follow replays one subject from the start of its stream and then follows it until ctx ends.
func (r *replay) follow(ctx context.Context, f feed) error {
	log := r.log.With().Str("subject", f.subject).Logger()
	stream, err := r.js.Stream(ctx, f.stream)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", f.stream, err)
	}
	// Caught up means: processed the subject's last message as of now.
	var target uint64
	switch last, err := stream.GetLastMsgForSubject(ctx, f.subject); {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("last message of %s: %w", f.subject, err)
	default:
		target = last.Sequence
	}
	r.setTarget(f.subject, target, log)
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.subject}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("ordered consumer on %s: %w", f.subject, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("consume %s: %w", f.subject, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil
		case err != nil:
			// The ordered consumer recreates itself after gaps and missed heartbeats; keep reading.
			log.Warn().Err(err).Msg("ordered consumer")
			continue
		}
		r.handle(f, msg, log)
	}
}

func (r *replay) setTarget(subject string, target uint64, log zerolog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress[subject]
	p.target, p.known = target, true
	if target == 0 {
		p.caughtUp = true
		r.metrics.caughtUp(subject, time.Since(r.started))
		log.Info().Msg("nothing to replay")
		r.serveIfRebuilt()
	}
}

// serveIfRebuilt lets the guard serve the DORA series once every subject caught up. r.mu is held.
func (r *replay) serveIfRebuilt() {
	for _, p := range r.progress {
		if !p.caughtUp {
			return
		}
	}
	if !r.guard.Serving() {
		r.state.Rebuilt()
		r.guard.Serve()
		r.log.Info().Dur("took", time.Since(r.started)).Msg("state rebuilt; serving DORA metrics")
	}
}

func (r *replay) handle(f feed, msg jetstream.Msg, log zerolog.Logger) {
	meta, err := msg.Metadata()
	if err != nil {
		log.Warn().Err(err).Msg("message without JetStream metadata; skipped")
		return
	}
	outcome, err := f.apply(r.state, msg.Data())
	result := resultApplied
	switch {
	case err != nil:
		result = resultInvalid
		log.Warn().Err(err).Uint64("stream_seq", meta.Sequence.Stream).Str("message_id", msg.Headers().Get(events.HeaderMsgID)).
			Msg("event skipped: the state cannot use it")
	case outcome == dora.Duplicate:
		result = resultDuplicate
		log.Debug().Uint64("stream_seq", meta.Sequence.Stream).Str("message_id", msg.Headers().Get(events.HeaderMsgID)).
			Msg("duplicate event")
	}
	r.metrics.event(f.subject, result)

	r.mu.Lock()
	p := r.progress[f.subject]
	p.pending = meta.NumPending
	p.processed++
	live := p.caughtUp
	if !p.caughtUp && meta.Sequence.Stream >= p.target {
		p.caughtUp = true
		r.metrics.caughtUp(f.subject, time.Since(r.started))
		log.Info().Uint64("events", p.processed).Dur("took", time.Since(r.started)).Msg("caught up")
		r.serveIfRebuilt()
	}
	r.mu.Unlock()
	r.metrics.pending(f.subject, meta.NumPending)
	if live {
		// Lag only means something for live events; replayed ones are as old as the history.
		at := meta.Timestamp
		if t, err := time.Parse(time.RFC3339Nano, msg.Headers().Get(events.HeaderTime)); err == nil {
			at = t
		}
		r.metrics.lag(f.subject, time.Since(at))
	}
}
