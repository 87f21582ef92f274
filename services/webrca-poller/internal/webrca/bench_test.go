package webrca

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecodePage decodes a full page of 100 incidents shaped like the live API's.
func BenchmarkDecodePage(b *testing.B) {
	items := make([]map[string]any, 100)
	for i := range items {
		ts := time.Date(2026, 3, 10, 15, 20, 0, 412733000, time.UTC).Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano)
		items[i] = map[string]any{"kind": "Incident", "id": fmt.Sprintf("0b9d6f52-7a1e-4c3b-9e21-%012d", i),
			"incident_id": fmt.Sprintf("ITN-2026-%05d", i), "summary": "Checkout latency above SLO in eu-west-1",
			"description": "p99 latency for checkout-api exceeded 2 s after the 14:04 rollout.", "products": []string{"Konflux"},
			"status": "investigating", "severity": "2", "created_at": ts, "updated_at": ts, "last_changed_at": ts,
			"resolved_at": "0001-01-01T00:00:00Z", "closed_at": nil, "reopen_counter": 0, "invalid": false,
			"creator": map[string]any{"id": "5e1c0a9b", "kind": "User", "name": "Dana Example"}}
	}
	body, err := json.Marshal(map[string]any{"kind": "IncidentList", "page": 1, "size": 100, "total": 742, "items": items})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePage(body); err != nil {
			b.Fatal(err)
		}
	}
}
