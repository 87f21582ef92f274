package poll

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPollUnchanged is the steady state: 1000 listed incidents, none changed since the last
// poll (in-memory store and publisher; the cost of the decisions alone).
func BenchmarkPollUnchanged(b *testing.B) {
	h := newHarness("konflux")
	for i := range 1000 {
		inc := incident(fmt.Sprintf("0b9d6f52-7a1e-4c3b-9e21-%012d", i), fmt.Sprintf("ITN-2026-%05d", i))
		if i%2 == 0 {
			inc.Status, inc.ResolvedAt = "resolved", t0.Add(time.Hour)
		}
		h.l.incs = append(h.l.incs, inc)
	}
	if _, err := h.pl.Poll(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := h.pl.Poll(b.Context())
		if err != nil || len(res.Published) != 0 {
			b.Fatalf("%v, %d published", err, len(res.Published))
		}
	}
}
