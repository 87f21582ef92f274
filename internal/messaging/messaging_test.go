package messaging

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

// harness is one embedded JetStream server with doraflow's streams.
type harness struct {
	t   *testing.T
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newHarness(t *testing.T, options ...func(*server.Options)) *harness {
	t.Helper()
	srv := natstest.Start(t, options...)
	nc, js := srv.Connect()
	topo := Topology{Replicas: 1, MaxAge: time.Hour, DeadLetterMaxAge: time.Hour, Duplicates: time.Minute}
	if err := topo.EnsureStreams(t.Context(), js, events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, nc: nc, js: js}
}

type running struct {
	r    *Router
	reg  *prometheus.Registry
	errc chan error
}

// start runs a router for service with the handlers add registers, and waits until it subscribed.
func (h *harness) start(service string, add func(r *Router)) *running {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	r, err := NewRouter(RouterConfig{Service: service,
		NakDelay: 20 * time.Millisecond, CloseTimeout: 5 * time.Second}, h.js, zerolog.Nop(), NewMetrics(reg))
	if err != nil {
		h.t.Fatal(err)
	}
	add(r)
	run := &running{r: r, reg: reg, errc: make(chan error, 1)}
	go func() { run.errc <- r.Run(context.WithoutCancel(h.t.Context())) }()
	select {
	case <-r.Running():
	case err := <-run.errc:
		h.t.Fatalf("router stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("router not running within 10s")
	}
	h.t.Cleanup(func() { _ = r.Close() })
	return run
}

// stop closes the router and requires Run to return nil.
func (run *running) stop(t *testing.T) {
	t.Helper()
	if err := run.r.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	select {
	case err := <-run.errc:
		if err != nil {
			t.Fatalf("Run() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of Close")
	}
}

type payload struct {
	N    int    `json:"n"`
	Kind string `json:"kind"`
}

func (h *harness) publishJSON(subject, id, body string) {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	m.Header.Set(nats.MsgIdHdr, id)
	m.Header.Set(events.HeaderID, id)
	if _, err := h.js.PublishMsg(h.t.Context(), m); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) consumerInfo(durable, stream string) *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(h.t.Context(), stream, durable)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := c.Info(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// settled reports nil once the consumer has acknowledged n stream messages and has none pending.
func (h *harness) settled(durable, stream string, n uint64) func() error {
	return func() error {
		info := h.consumerInfo(durable, stream)
		if info.AckFloor.Stream != n || info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("ack floor %d (want %d), ack pending %d, pending %d",
				info.AckFloor.Stream, n, info.NumAckPending, info.NumPending)
		}
		return nil
	}
}

func (h *harness) deadLetters(service string) []*nats.Msg {
	h.t.Helper()
	s, err := h.js.Stream(h.t.Context(), events.StreamDeadLetter)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*nats.Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(h.t.Context(), seq)
		if err != nil {
			continue
		}
		if raw.Subject == events.DeadLetterSubject(service) {
			out = append(out, &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: raw.Header})
		}
	}
	return out
}

func TestPublishSameIDTwiceIsStoredOnce(t *testing.T) {
	h := newHarness(t)
	pub, err := NewPublisher(h.nc, "argocd-watcher", zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ev := events.DeploymentObserved{
		ID: events.DeploymentID("hub", "uid-1", 1), Source: "argocd", Application: "checkout-prod",
		Component: "checkout", Environment: events.EnvironmentProduction, Kind: events.KindDeploy,
		Result: events.ResultSuccess, FinishedAt: time.Date(2026, 3, 10, 14, 4, 57, 0, time.UTC),
	}
	for range 2 {
		if err := pub.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	other := ev
	other.ID = events.DeploymentID("hub", "uid-1", 2)
	if err := pub.Publish(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	s, err := h.js.Stream(t.Context(), events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2 (the repeat must be dropped)", info.State.Msgs)
	}
	// The stored message carries the CloudEvents headers, readable with `nats sub 'doraflow.>'`.
	got, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		events.HeaderSpecVersion: "1.0", events.HeaderID: ev.ID, events.HeaderType: events.TypeDeploymentObserved,
		events.HeaderSource: "/doraflow/argocd-watcher", events.HeaderTime: "2026-03-10T14:04:57Z",
		events.HeaderContentType: "application/json", nats.MsgIdHdr: ev.ID,
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if !strings.Contains(string(got.Data), `"application":"checkout-prod"`) {
		t.Errorf("body is not the event's JSON: %s", got.Data)
	}
}

func TestPublishRejectsInvalidEvent(t *testing.T) {
	h := newHarness(t)
	pub, err := NewPublisher(h.nc, "argocd-watcher", zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), events.DeploymentObserved{ID: "dep-1"})
	if err == nil || !strings.Contains(err.Error(), "application: required") {
		t.Fatalf("Publish(invalid) = %v, want a validation error", err)
	}
}

func TestHandlerFailingTwiceThenSucceedingSeesMessageThreeTimesAndAcks(t *testing.T) {
	tests := []struct {
		name    string
		retries int // in-process retries; -1 makes every retry a redelivery from the server
	}{
		{"in-process retries", 2},
		{"server redeliveries", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			var calls atomic.Int32
			handler := Handler{Name: "flaky-on-observed", Stream: events.StreamRaw,
				Subject: events.SubjectDeploymentObserved, Retries: tt.retries, RetryInterval: 5 * time.Millisecond}
			run := h.start("svc", func(r *Router) {
				r.Add(handler, Handle(func(ctx context.Context, p payload) error {
					if calls.Add(1) <= 2 {
						return errors.New("dependency briefly down")
					}
					return nil
				}))
			})
			h.publishJSON(events.SubjectDeploymentObserved, "m-1", `{"n":1}`)
			wait.For(t, 10*time.Second, h.settled("svc-flaky-on-observed", events.StreamRaw, 1))
			if got := calls.Load(); got != 3 {
				t.Errorf("handler saw the message %d times, want 3", got)
			}
			if got := testutil.ToFloat64(run.r.metrics.handled.WithLabelValues("svc-flaky-on-observed", resultOK)); got != 1 {
				t.Errorf("ok results = %v, want 1", got)
			}
			if dl := h.deadLetters("svc"); len(dl) != 0 {
				t.Errorf("%d dead letters, want none", len(dl))
			}
			run.stop(t)
		})
	}
}

func TestFailingMessagesAreDeadLetteredWhileOthersFlow(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var handled []int
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "record-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			MaxDeliver: 3, Retries: -1},
			Handle(func(ctx context.Context, p payload) error {
				switch p.Kind {
				case "invalid":
					return Permanent(fmt.Errorf("payload %d is invalid", p.N))
				case "flaky-forever":
					return errors.New("upstream answers 503")
				}
				mu.Lock()
				handled = append(handled, p.N)
				mu.Unlock()
				return nil
			}))
	})
	h.publishJSON(events.SubjectDeploymentObserved, "bad-1", `{"n":1,"kind":"invalid"}`)
	h.publishJSON(events.SubjectDeploymentObserved, "bad-2", `{"n":2,"kind":"flaky-forever"}`)
	for n := 3; n <= 7; n++ {
		h.publishJSON(events.SubjectDeploymentObserved, fmt.Sprintf("ok-%d", n), fmt.Sprintf(`{"n":%d}`, n))
	}
	wait.For(t, 15*time.Second, h.settled("svc-record-on-observed", events.StreamRaw, 7))
	mu.Lock()
	got := append([]int(nil), handled...)
	mu.Unlock()
	if diff := cmp.Diff([]int{3, 4, 5, 6, 7}, got); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}

	dl := h.deadLetters("svc")
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dl))
	}
	byID := map[string]*nats.Msg{}
	for _, m := range dl {
		byID[m.Header.Get(events.HeaderID)] = m
	}
	perm, retry := byID["bad-1"], byID["bad-2"]
	if perm == nil || retry == nil {
		t.Fatalf("dead letters by id: %v", byID)
	}
	checks := []struct {
		msg    *nats.Msg
		reason string
		body   string
	}{
		{perm, "payload 1 is invalid", `{"n":1,"kind":"invalid"}`},
		{retry, "gave up after 3 deliveries: upstream answers 503", `{"n":2,"kind":"flaky-forever"}`},
	}
	for _, c := range checks {
		if got := c.msg.Header.Get(events.HeaderDeadReason); got != c.reason {
			t.Errorf("reason = %q, want %q", got, c.reason)
		}
		if got := c.msg.Header.Get(events.HeaderDeadSubject); got != events.SubjectDeploymentObserved {
			t.Errorf("original subject = %q", got)
		}
		if got := c.msg.Header.Get(events.HeaderDeadHandler); got != "svc-record-on-observed" {
			t.Errorf("handler = %q", got)
		}
		if string(c.msg.Data) != c.body {
			t.Errorf("body = %s, want the original %s", c.msg.Data, c.body)
		}
	}
	if got := retry.Header.Get(events.HeaderDeadDeliveries); got != "3" {
		t.Errorf("deliveries = %s, want 3", got)
	}
	if got := testutil.ToFloat64(run.r.metrics.handled.WithLabelValues("svc-record-on-observed", resultDeadLettered)); got != 2 {
		t.Errorf("dead_lettered results = %v, want 2", got)
	}
	run.stop(t)
}

func TestGarbageDoesNotCrashTheConsumer(t *testing.T) {
	h := newHarness(t)
	var good atomic.Int32
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "record-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved},
			Handle(func(ctx context.Context, ev events.DeploymentObserved) error {
				good.Add(1)
				return nil
			}))
	})
	// Raw bytes, no Nats-Msg-Id, and a header with two values: watermill-nats' default
	// unmarshaler would fail on it and crash the process.
	m := nats.NewMsg(events.SubjectDeploymentObserved)
	m.Data = []byte{0xff, 0x00, 'n', 'o', 't', ' ', 'j', 's', 'o', 'n'}
	m.Header.Add("X-Twice", "a")
	m.Header.Add("X-Twice", "b")
	if _, err := h.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	h.publishJSON(events.SubjectDeploymentObserved, "incomplete", `{"id":"dep-1"}`) // decodes, fails validation
	valid := `{"id":"dep-2","source":"argocd","application":"a","component":"a","environment":"production",` +
		`"kind":"deploy","result":"success","finished_at":"2026-03-10T14:04:57Z"}`
	h.publishJSON(events.SubjectDeploymentObserved, "dep-2", valid)
	wait.For(t, 10*time.Second, h.settled("svc-record-on-observed", events.StreamRaw, 3))
	if good.Load() != 1 {
		t.Errorf("valid messages handled = %d, want 1", good.Load())
	}
	dl := h.deadLetters("svc")
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2 (garbage and invalid)", len(dl))
	}
	reasons := []string{dl[0].Header.Get(events.HeaderDeadReason), dl[1].Header.Get(events.HeaderDeadReason)}
	if !strings.Contains(reasons[0], "decode events.DeploymentObserved") {
		t.Errorf("garbage reason = %q", reasons[0])
	}
	if !strings.Contains(reasons[1], "invalid deployment") || !strings.Contains(reasons[1], "finished_at: required") {
		t.Errorf("invalid reason = %q", reasons[1])
	}
	if !strings.Contains(string(dl[0].Data), "not json") {
		t.Errorf("garbage body not kept: %q", dl[0].Data)
	}
	run.stop(t)
}

func TestRestartMidStreamResumesAfterLastAck(t *testing.T) {
	h := newHarness(t)
	const total = 200
	for n := 1; n <= total; n++ {
		h.publishJSON(events.SubjectDeploymentEnriched, fmt.Sprintf("m-%d", n), fmt.Sprintf(`{"n":%d}`, n))
	}
	handler := Handler{Name: "record-on-enriched", Stream: events.StreamEnriched, Subject: events.SubjectDeploymentEnriched}

	var mu sync.Mutex
	first, second := map[int]int{}, map[int]int{}
	reachedHalf := make(chan struct{})
	var once sync.Once
	run1 := h.start("svc", func(r *Router) {
		r.Add(handler, Handle(func(ctx context.Context, p payload) error {
			mu.Lock()
			first[p.N]++
			n := len(first)
			mu.Unlock()
			if n >= total/2 {
				once.Do(func() { close(reachedHalf) })
			}
			return nil
		}))
	})
	<-reachedHalf
	run1.stop(t) // the consumer is "killed" mid-stream; in-flight work drains first

	run2 := h.start("svc", func(r *Router) {
		r.Add(handler, Handle(func(ctx context.Context, p payload) error {
			mu.Lock()
			second[p.N]++
			mu.Unlock()
			return nil
		}))
	})
	wait.For(t, 15*time.Second, h.settled("svc-record-on-enriched", events.StreamEnriched, total))
	run2.stop(t)

	mu.Lock()
	defer mu.Unlock()
	if len(first) >= total {
		t.Fatalf("first run handled all %d messages; the restart happened too late to test anything", len(first))
	}
	for n := 1; n <= total; n++ {
		switch c1, c2 := first[n], second[n]; {
		case c1+c2 == 0:
			t.Errorf("message %d lost", n)
		case c1 > 0 && c2 > 0:
			t.Errorf("message %d acked in the first run was processed again after the restart", n)
		case c1 > 1 || c2 > 1:
			t.Errorf("message %d processed %d+%d times", n, c1, c2)
		}
	}
}

func TestCloseDrainsInFlightWork(t *testing.T) {
	h := newHarness(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var finishedCleanly atomic.Bool
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "slow-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved},
			Handle(func(ctx context.Context, p payload) error {
				close(entered)
				<-release
				finishedCleanly.Store(ctx.Err() == nil)
				return nil
			}))
	})
	h.publishJSON(events.SubjectDeploymentObserved, "m-1", `{"n":1}`)
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- run.r.Close() }()
	// Shutdown has begun: the router reports not ready while the handler still works.
	wait.For(t, 5*time.Second, func() error {
		if err := run.r.Ready(t.Context()); err == nil {
			return errors.New("router still reports ready")
		}
		return nil
	})
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !finishedCleanly.Load() {
		t.Error("in-flight handler's context was cancelled by shutdown")
	}
	// The in-flight message was acknowledged before the subscriber closed: nothing to redeliver.
	info := h.consumerInfo("svc-slow-on-observed", events.StreamRaw)
	if info.AckFloor.Stream != 1 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("after drain: ack floor %d, ack pending %d, redelivered %d; want 1, 0, 0",
			info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered)
	}
	if err := <-run.errc; err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

func TestDurableConsumerOutlivesTheRouter(t *testing.T) {
	h := newHarness(t)
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "noop-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			AckWait: 7 * time.Second, MaxDeliver: 4},
			Handle(func(ctx context.Context, p payload) error { return nil }))
	})
	run.stop(t)
	info := h.consumerInfo("svc-noop-on-observed", events.StreamRaw)
	want := jetstream.ConsumerConfig{Durable: "svc-noop-on-observed", FilterSubject: events.SubjectDeploymentObserved,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 7 * time.Second, MaxDeliver: 4}
	got := jetstream.ConsumerConfig{Durable: info.Config.Durable, FilterSubject: info.Config.FilterSubject,
		AckPolicy: info.Config.AckPolicy, AckWait: info.Config.AckWait, MaxDeliver: info.Config.MaxDeliver}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("durable consumer (-want +got):\n%s", diff)
	}
	if info.Config.InactiveThreshold != 0 {
		t.Errorf("durable has an inactive threshold %s; it would vanish", info.Config.InactiveThreshold)
	}
}

func TestNakBackoff(t *testing.T) {
	b := nakBackoff{base: time.Second, maxDelay: 10 * time.Second}
	for delivered, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second,
		3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		if got := b.WaitTime(delivered); got != want {
			t.Errorf("WaitTime(%d) = %s, want %s", delivered, got, want)
		}
	}
}

func TestUnsettledLastDeliveryIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	var calls atomic.Int32
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "stuck-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			AckWait: 300 * time.Millisecond, MaxDeliver: 2},
			Handle(func(ctx context.Context, p payload) error {
				calls.Add(1)
				<-release // ignores its deadline, as a process that died mid-handler never answers
				return nil
			}))
	})
	h.publishJSON(events.SubjectDeploymentObserved, "stuck-1", `{"n":1}`)
	wait.For(t, 15*time.Second, func() error {
		if dl := h.deadLetters("svc"); len(dl) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dl))
		}
		return nil
	})
	dl := h.deadLetters("svc")[0]
	if got := dl.Header.Get(events.HeaderDeadReason); !strings.Contains(got, "gave up after 2 deliveries: no delivery was settled") {
		t.Errorf("reason = %q", got)
	}
	if string(dl.Data) != `{"n":1}` || dl.Header.Get(events.HeaderID) != "stuck-1" || dl.Header.Get(events.HeaderDeadStreamSeq) != "1" {
		t.Errorf("dead letter does not carry the original: %q %v", dl.Data, dl.Header)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("handler called %d times, want 2 (MaxDeliver)", got)
	}
	close(release)
	run.stop(t)
}

func TestRetryAfterRedeliversAfterTheAskedDelayWithoutInProcessRetries(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var seen []time.Time
	var delivered []int
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "limited-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			MaxDeliver: -1, Retries: 3, RetryInterval: time.Millisecond},
			func(msg *message.Message) error {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, time.Now())
				delivered = append(delivered, deliveries(msg))
				if len(seen) == 1 {
					return RetryAfter(errors.New("rate limited until reset"), 400*time.Millisecond)
				}
				return nil
			})
	})
	h.publishJSON(events.SubjectDeploymentObserved, "m-1", `{"n":1}`)
	wait.For(t, 10*time.Second, h.settled("svc-limited-on-observed", events.StreamRaw, 1))
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]int{1, 2}, delivered); diff != "" {
		t.Fatalf("deliveries (-want +got): %s (a delayed error must skip in-process retries)", diff)
	}
	if gap := seen[1].Sub(seen[0]); gap < 400*time.Millisecond {
		t.Errorf("redelivered after %s, before the asked 400ms", gap)
	}
	run.stop(t)
}

func TestConcurrencyHandlesThatManyAtOnceAndNoMore(t *testing.T) {
	const concurrency, n = 4, 20
	h := newHarness(t)
	var active, peak, done atomic.Int64
	full := make(chan struct{}) // closed once concurrency handlers ran at the same time
	var once sync.Once
	h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "parallel-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			Concurrency: concurrency},
			Handle(func(ctx context.Context, p payload) error {
				now := active.Add(1)
				defer active.Add(-1)
				for {
					old := peak.Load()
					if now <= old || peak.CompareAndSwap(old, now) {
						break
					}
				}
				if now == concurrency {
					once.Do(func() { close(full) })
				}
				// The first messages wait until the handler is full, which only parallel handling reaches.
				select {
				case <-full:
				case <-time.After(10 * time.Second):
					return Permanent(errors.New("handlers never ran in parallel"))
				}
				done.Add(1)
				return nil
			}))
	})
	for i := range n {
		h.publishJSON(events.SubjectDeploymentObserved, fmt.Sprintf("m-%d", i), fmt.Sprintf(`{"n":%d}`, i))
	}
	wait.For(t, 20*time.Second, h.settled("svc-parallel-on-observed", events.StreamRaw, n))
	if got := done.Load(); got != n {
		t.Errorf("handled %d messages successfully, want %d", got, n)
	}
	if got := peak.Load(); got != concurrency {
		t.Errorf("at most %d messages were handled at once, want exactly %d", got, concurrency)
	}
	if dl := h.deadLetters("svc"); len(dl) != 0 {
		t.Errorf("%d messages dead-lettered, want none", len(dl))
	}
}

func TestCloseWithConcurrencySettlesEveryInFlightMessage(t *testing.T) {
	const concurrency, n = 3, 10
	h := newHarness(t)
	entered, release := make(chan struct{}, n), make(chan struct{})
	var handled sync.Map
	run := h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "parallel-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			Concurrency: concurrency},
			Handle(func(ctx context.Context, p payload) error {
				entered <- struct{}{}
				<-release
				handled.Store(p.N, true)
				return nil
			}))
	})
	for i := range n {
		h.publishJSON(events.SubjectDeploymentObserved, fmt.Sprintf("m-%d", i), fmt.Sprintf(`{"n":%d}`, i))
	}
	for range concurrency {
		<-entered
	}
	closed := make(chan error, 1)
	go func() { closed <- run.r.Close() }()
	wait.For(t, 5*time.Second, func() error {
		if run.r.Ready(t.Context()) == nil {
			return errors.New("router still reports ready")
		}
		return nil
	})
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close() = %v", err)
	}
	// Exactly the in-flight messages were handled; the buffered rest went back to the server.
	count := 0
	handled.Range(func(any, any) bool { count++; return true })
	if count != concurrency {
		t.Errorf("after close: %d messages handled, want the %d in flight", count, concurrency)
	}
	if info := h.consumerInfo("svc-parallel-on-observed", events.StreamRaw); info.AckFloor.Stream != concurrency {
		t.Errorf("after close: ack floor %d, want %d", info.AckFloor.Stream, concurrency)
	}
	// A new router handles the rest: nothing is lost.
	h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "parallel-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved,
			Concurrency: concurrency},
			Handle(func(ctx context.Context, p payload) error {
				handled.Store(p.N, true)
				return nil
			}))
	})
	wait.For(t, 20*time.Second, h.settled("svc-parallel-on-observed", events.StreamRaw, n))
	for i := range n {
		if _, ok := handled.Load(i); !ok {
			t.Errorf("message %d never handled", i)
		}
	}
}
