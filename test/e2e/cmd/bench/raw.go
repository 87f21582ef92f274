package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/pkg/events"
)

// rawResult is the JetStream limit with doraflow's own client settings: one synchronous publish
// per message (as every producer publishes) and one consumer handling one message at a time with
// a server-confirmed ack (as every handler runs), both on the same embedded server with file
// storage.
type rawResult struct {
	Messages     int     `json:"messages"`
	PayloadBytes int     `json:"payload_bytes"`
	PublishPerS  float64 `json:"publish_msgs_per_s"`
	// EndToEndPerS counts from the first publish to the last ack, publishing and consuming at once.
	EndToEndPerS float64 `json:"end_to_end_msgs_per_s"`
	Elapsed      float64 `json:"elapsed_s"`
}

// measureRaw publishes n small messages while one handler consumes them, and reports the rates.
func measureRaw(ctx context.Context, js jetstream.JetStream, pub *messaging.Publisher, n int) (rawResult, error) {
	payload := []byte(`{"n":0,"padding":"0123456789abcdef0123456789abcdef0123"}`) // 64 bytes
	var handled atomic.Int64
	done := make(chan struct{})
	r, err := messaging.NewRouter(messaging.RouterConfig{Service: "bench"}, js, zerolog.Nop(),
		messaging.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		return rawResult{}, err
	}
	r.Add(messaging.Handler{Name: "count-on-raw", Stream: events.StreamRaw, Subject: "doraflow.argocd.bench.raw"},
		func(*message.Message) error {
			if handled.Add(1) == int64(n) {
				close(done)
			}
			return nil
		})
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-r.Running():
	case err := <-errc:
		return rawResult{}, err
	}
	defer func() { _ = r.Close() }()

	start := time.Now()
	for i := range n {
		if err := pub.PublishRaw(ctx, "doraflow.argocd.bench.raw", "raw-"+strconv.Itoa(i), payload, nil); err != nil {
			return rawResult{}, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	published := time.Since(start)
	select {
	case <-done:
	case err := <-errc:
		return rawResult{}, fmt.Errorf("consumer stopped: %w", err)
	case <-time.After(10 * time.Minute):
		return rawResult{}, fmt.Errorf("consumed %d of %d in 10 minutes", handled.Load(), n)
	}
	total := time.Since(start)
	return rawResult{Messages: n, PayloadBytes: len(payload), PublishPerS: float64(n) / published.Seconds(),
		EndToEndPerS: float64(n) / total.Seconds(), Elapsed: total.Seconds()}, nil
}
