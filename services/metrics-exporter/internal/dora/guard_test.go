package dora

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

// fakeCollector serves one counter and one histogram with values a test sets.
type fakeCollector struct {
	counter float64
	count   uint64
	sum     float64
	buckets map[float64]uint64
	gone    bool // the collector no longer has the series (history expired)
}

var (
	fakeCounterDesc = prometheus.NewDesc("dora_fake_total", "A fake counter.", []string{"component"}, nil)
	fakeHistDesc    = prometheus.NewDesc("dora_fake_seconds", "A fake histogram.", []string{"component"}, nil)
	fakeGaugeDesc   = prometheus.NewDesc("dora_fake_exact", "A fake gauge.", nil, nil)
)

func (f *fakeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fakeCounterDesc
	ch <- fakeHistDesc
	ch <- fakeGaugeDesc
}

func (f *fakeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(fakeGaugeDesc, prometheus.GaugeValue, f.counter)
	if f.gone {
		return
	}
	ch <- prometheus.MustNewConstMetric(fakeCounterDesc, prometheus.CounterValue, f.counter, "a")
	ch <- prometheus.MustNewConstHistogram(fakeHistDesc, f.count, f.sum, f.buckets, "a")
}

// TestGuardNeverServesLess: the exact values step down (a sample moves to a higher bucket, a count
// drops), the served ones never do, and series_held counts the series held above their exact value.
func TestGuardNeverServesLess(t *testing.T) {
	f := &fakeCollector{counter: 2, count: 2, sum: 100, buckets: map[float64]uint64{10: 1, 100: 2}}
	g := NewGuard(f)
	if got := scrapeValues(t, g); len(got) != 1 || got["doraflow_metrics_exporter_series_held{}"] != 0 {
		t.Fatalf("before Serve the guard serves %v, want only series_held 0", got)
	}
	g.Serve()
	before := scrapeValues(t, g)
	steps := []func(){
		func() { f.counter, f.buckets, f.sum = 1, map[float64]uint64{10: 0, 100: 2}, 150 }, // a sample moved up, a count dropped
		func() { f.counter = 3; f.count, f.sum, f.buckets = 3, 160, map[float64]uint64{10: 1, 100: 3} },
	}
	wantHeld := []float64{2, 0}
	for i, step := range steps {
		step()
		after := scrapeValues(t, g)
		if d := decreases(before, after); len(d) > 0 {
			t.Errorf("step %d lowered served series:\n%s", i, strings.Join(d, "\n"))
		}
		if got := after["doraflow_metrics_exporter_series_held{}"]; got != wantHeld[i] {
			t.Errorf("step %d: series_held = %v, want %v", i, got, wantHeld[i])
		}
		if got := after["dora_fake_exact{}"]; got != f.counter {
			t.Errorf("step %d: the exact gauge is %v, want %v", i, got, f.counter)
		}
		before = after
	}
	lintClean(t, g)
}

// TestGuardFloors: a restarted process whose stream lost its oldest events serves the previous
// process's totals (floors, through a JSON round trip), counts new events on top of them, and keeps
// serving a series whose whole history expired.
func TestGuardFloors(t *testing.T) {
	f := &fakeCollector{counter: 5, count: 5, sum: 50, buckets: map[float64]uint64{10: 5, 100: 5}}
	g := NewGuard(f)
	g.Serve()
	want := scrapeValues(t, g)
	b, err := json.Marshal(g.Marks())
	if err != nil {
		t.Fatal(err)
	}
	var marks []Mark
	if err := json.Unmarshal(b, &marks); err != nil {
		t.Fatal(err)
	}

	expired := &fakeCollector{counter: 2, count: 2, sum: 20, buckets: map[float64]uint64{10: 2, 100: 2}}
	g2 := NewGuard(expired)
	g2.SetFloors(marks)
	g2.Serve()
	got := scrapeValues(t, g2)
	delete(got, "dora_fake_exact{}")
	delete(got, "doraflow_metrics_exporter_series_held{}")
	delete(want, "dora_fake_exact{}")
	delete(want, "doraflow_metrics_exporter_series_held{}")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after the restart (-before +after):\n%s", diff)
	}
	expired.counter = 3 // a new event
	if got := scrapeValues(t, g2)[`dora_fake_total{component="a"}`]; got != 6 {
		t.Errorf("a new event after the restart: served %v, want 6 (5 + 1)", got)
	}

	gone := NewGuard(&fakeCollector{gone: true})
	gone.SetFloors(marks)
	gone.Serve()
	got = scrapeValues(t, gone)
	if got[`dora_fake_total{component="a"}`] != 5 || got[`dora_fake_seconds_count{component="a"}`] != 5 {
		t.Errorf("a series whose history expired is not served at its floor: %v", got)
	}
}

// TestGuardOverState: a deployment that arrives late but finished earlier takes over a commit's lead
// time (the exact histogram loses a sample from one bucket); the served histogram does not go down.
func TestGuardOverState(t *testing.T) {
	s := newState(t, "dora2023", defaultWindows...)
	g := NewGuard(s)
	g.Serve()
	before := scrapeValues(t, g)
	for i, e := range []events.Event{doratest.D7.Event(), doratest.D5.Event(), doratest.D6.Event(),
		doratest.Signal(doratest.D5, events.DetectionRollback, doratest.Mar(15, 11, 0), time.Time{}, doratest.D6.ID())} {
		applyAny(t, s, []events.Event{e})
		after := scrapeValues(t, g)
		if d := decreases(before, after); len(d) > 0 {
			t.Errorf("step %d lowered served series:\n%s", i, strings.Join(d, "\n"))
		}
		before = after
	}
	if exact := scrapeValues(t, s); len(decreases(before, exact)) == 0 {
		t.Errorf("the exact state never went down: the test does not exercise the guard")
	}
	if before["doraflow_metrics_exporter_series_held{}"] == 0 {
		t.Errorf("no series held above its exact value")
	}
}

// TestGuardFloorsOfStickyLabels: a previous process counted a failure under another detection
// (labels are fixed in arrival order). With the whole history still there, the restarted process
// serves its own labels and does not count the failure twice; with history lost, the floors hold.
func TestGuardFloorsOfStickyLabels(t *testing.T) {
	lv := func(det string) string {
		return `dora_change_failures_total{component="a",detection="` + det + `"}`
	}
	desc := prometheus.NewDesc("dora_change_failures_total", "Failures.", []string{"component", "detection"}, nil)
	collector := func(degraded, incident float64) prometheus.Collector {
		return collectorFunc{desc, func(ch chan<- prometheus.Metric) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, degraded, "a", "degraded")
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, incident, "a", "incident")
		}}
	}
	prev := NewGuard(collector(0, 2)) // counted both under incident
	prev.Serve()
	_ = scrapeValues(t, prev)
	tests := []struct {
		name               string
		degraded, incident float64
		want               map[string]float64
	}{
		{"whole history", 1, 1, map[string]float64{lv("degraded"): 1, lv("incident"): 1}},
		{"history lost", 1, 0, map[string]float64{lv("degraded"): 1, lv("incident"): 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGuard(collector(tt.degraded, tt.incident))
			g.SetFloors(prev.Marks())
			g.Serve()
			got := pick(scrapeValues(t, g), "dora_change_failures_total")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

type collectorFunc struct {
	d  *prometheus.Desc
	fn func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.fn(ch) }
