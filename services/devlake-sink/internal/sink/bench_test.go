package sink

import (
	"context"
	"encoding/json"
	"testing"
)

func BenchmarkBuildDeployment(b *testing.B) {
	ev := deploymentEvent(318)
	b.ReportAllocs()
	for b.Loop() {
		d, _ := BuildDeployment(ev, 1, true)
		if _, err := json.Marshal(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverDeployment is one delivery to two connections through the HTTP client, the fake
// DevLake and an in-memory ledger: the sink's own cost per event, DevLake's latency aside.
func BenchmarkDeliverDeployment(b *testing.B) {
	e := newEnv(b)
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		if _, err := e.sink.Deployment(context.Background(), deploymentEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
}
