package messaging

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

const smallMaxPayload = 8 << 10

func smallPayload(o *server.Options) { o.MaxPayload = smallMaxPayload }

// An output that can never fit the server's max_payload is a permanent failure of the input: it is
// dead-lettered with reason too_large and the consumer moves on, instead of retrying forever.
func TestOutputOverMaxPayloadDeadLettersTheInput(t *testing.T) {
	h := newHarness(t, smallPayload)
	pub, err := NewPublisher(h.nc, "svc", zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var done []int
	h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "grow-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved, MaxDeliver: -1},
			Handle(func(ctx context.Context, p payload) error {
				out := strings.Repeat("x", 16)
				if p.Kind == "huge" {
					out = strings.Repeat("x", 2*smallMaxPayload)
				}
				if err := pub.PublishRaw(ctx, events.SubjectDeploymentEnriched, fmt.Sprintf("out-%d", p.N), []byte(out), nil); err != nil {
					return err
				}
				mu.Lock()
				done = append(done, p.N)
				mu.Unlock()
				return nil
			}))
	})
	h.publishJSON(events.SubjectDeploymentObserved, "in-1", `{"n":1,"kind":"huge"}`)
	h.publishJSON(events.SubjectDeploymentObserved, "in-2", `{"n":2}`)
	wait.For(t, 15*time.Second, h.settled("svc-grow-on-observed", events.StreamRaw, 2))
	dl := h.deadLetters("svc")
	if len(dl) != 1 || dl[0].Header.Get(events.HeaderID) != "in-1" {
		t.Fatalf("dead letters = %d, want in-1 alone", len(dl))
	}
	if r := dl[0].Header.Get(events.HeaderDeadReason); !strings.Contains(r, "too_large") || !strings.Contains(r, "max_payload") {
		t.Errorf("reason = %q, want too_large and the limit", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(done) != 1 || done[0] != 2 {
		t.Errorf("handled %v, want [2]: the consumer must move on", done)
	}
	if perm := Permanent(ErrTooLarge); !errors.Is(perm, ErrTooLarge) {
		t.Error("Permanent(ErrTooLarge) does not wrap ErrTooLarge")
	}
}

// An input close to max_payload cannot travel in a dead letter (its headers push it over): its body
// is kept whole in the object store and the dead letter carries a reference.
func TestDeadLetterOfAMessageNearMaxPayloadKeepsItsBodyInTheObjectStore(t *testing.T) {
	h := newHarness(t, smallPayload)
	h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "reject-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved},
			Handle(func(context.Context, payload) error { return Permanent(errors.New("rejected")) }))
	})
	body := `{"n":1,"kind":"` + strings.Repeat("y", smallMaxPayload-200) + `"}`
	h.publishJSON(events.SubjectDeploymentObserved, "near-limit", body)
	wait.For(t, 15*time.Second, h.settled("svc-reject-on-observed", events.StreamRaw, 1))
	dl := h.deadLetters("svc")
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	ref := dl[0].Header.Get(events.HeaderDeadBody)
	bucket, name, ok := strings.Cut(ref, "/")
	if !ok || bucket != events.DeadLetterBodyBucket {
		t.Fatalf("%s = %q, want %s/<name>", events.HeaderDeadBody, ref, events.DeadLetterBodyBucket)
	}
	if len(dl[0].Data) != 0 {
		t.Errorf("dead letter body is %d bytes, want empty (kept in the object store)", len(dl[0].Data))
	}
	if r := dl[0].Header.Get(events.HeaderDeadReason); !strings.HasPrefix(r, "too_large") || !strings.Contains(r, "rejected") {
		t.Errorf("reason = %q", r)
	}
	obs, err := h.js.ObjectStore(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != body {
		t.Errorf("kept body is %d bytes, want the original %d", len(got), len(body))
	}
}

// A handler that panics on odd input panics again on redelivery: the message is dead-lettered at once
// with the stack in its reason, and the consumer (and the process) go on.
func TestHandlerPanicIsDeadLetteredWithItsStack(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var ok []int
	h.start("svc", func(r *Router) {
		r.Add(Handler{Name: "odd-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved, MaxDeliver: -1},
			Handle(func(_ context.Context, p payload) error {
				if p.Kind == "odd" {
					seen := make([]int, p.N)
					seen[p.N]++ // index out of range: a runtime panic
				}
				mu.Lock()
				ok = append(ok, p.N)
				mu.Unlock()
				return nil
			}))
	})
	h.publishJSON(events.SubjectDeploymentObserved, "odd-1", `{"n":1,"kind":"odd"}`)
	h.publishJSON(events.SubjectDeploymentObserved, "fine-2", `{"n":2}`)
	wait.For(t, 15*time.Second, h.settled("svc-odd-on-observed", events.StreamRaw, 2))
	dl := h.deadLetters("svc")
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	reason := dl[0].Header.Get(events.HeaderDeadReason)
	if !strings.Contains(reason, "handler panicked: runtime error: index out of range [1] with length 1") || !strings.Contains(reason, "payload_test.go") {
		t.Errorf("reason lacks the panic or its stack:\n%s", reason)
	}
	if got := dl[0].Header.Get(events.HeaderDeadDeliveries); got != "1" {
		t.Errorf("deliveries = %s, want 1 (a panic is not retried)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ok) != 1 || ok[0] != 2 {
		t.Errorf("handled %v, want [2]", ok)
	}
}
