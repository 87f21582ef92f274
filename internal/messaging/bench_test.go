package messaging

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/pkg/events"
)

// BenchmarkPublish measures Publisher.Publish (validate, marshal, headers, one synchronous
// JetStream publish with a stored ack) against an in-process server with file storage.
func BenchmarkPublish(b *testing.B) {
	srv := natstest.Start(b)
	nc, js := srv.Connect()
	topo := Topology{Replicas: 1, MaxAge: time.Hour, Duplicates: time.Minute}
	if err := topo.EnsureStreams(b.Context(), js, events.StreamRaw); err != nil {
		b.Fatal(err)
	}
	pub, err := NewPublisher(nc, "bench", zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	ev := deploymentEvent(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.ID = events.DeploymentID("hub", "uid", int64(i))
		if err := pub.Publish(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkHandle measures the consume path: pull, decode into events.DeploymentObserved, validate,
// run the middleware chain, and a server-confirmed ack, one message in flight, as services run.
func BenchmarkHandle(b *testing.B) {
	srv := natstest.Start(b)
	_, js := srv.Connect()
	topo := Topology{Replicas: 1, MaxAge: time.Hour, Duplicates: time.Minute}
	if err := topo.EnsureStreams(b.Context(), js, events.StreamRaw, events.StreamDeadLetter); err != nil {
		b.Fatal(err)
	}
	// Fill the stream first with fast async publishes, so only consumption is timed.
	body := []byte(`{"id":"x","source":"argocd","application":"a","component":"a","environment":"production",` +
		`"kind":"deploy","result":"success","finished_at":"2026-03-10T14:04:57Z"}`)
	for i := range b.N {
		m := nats.NewMsg(events.SubjectDeploymentObserved)
		m.Data = body
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("m-%d", i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("async publishes not acknowledged")
	}

	var handled atomic.Int64
	done := make(chan struct{})
	r, err := NewRouter(RouterConfig{Service: "bench"}, js, zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	r.Add(Handler{Name: "count-on-observed", Stream: events.StreamRaw, Subject: events.SubjectDeploymentObserved},
		Handle(func(ctx context.Context, ev events.DeploymentObserved) error {
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		}))
	b.ReportAllocs()
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(b.Context())) }()
	select {
	case <-done:
	case err := <-errc:
		b.Fatalf("router stopped: %v", err)
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
}

func deploymentEvent(n int) events.DeploymentObserved {
	return events.DeploymentObserved{ID: events.DeploymentID("hub", "uid", int64(n)), Source: "argocd",
		Application: "app", Component: "app", Environment: events.EnvironmentProduction, Kind: events.KindDeploy,
		Result: events.ResultSuccess, FinishedAt: time.Date(2026, 3, 10, 14, 4, 57, 0, time.UTC)}
}
