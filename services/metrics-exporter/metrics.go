package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "doraflow"
	subsystem = "metrics_exporter"
)

// Event results, the values of the result label of doraflow_metrics_exporter_events_total.
const (
	resultApplied   = "applied"
	resultDuplicate = "duplicate"
	resultInvalid   = "invalid"
)

// metrics are the exporter's operational metrics. The DORA metrics and the data-quality series
// derived from history come from the dora.State collector.
type metrics struct {
	events       *prometheus.CounterVec
	pendingGauge *prometheus.GaugeVec
	rebuild      *prometheus.GaugeVec
	lagHist      *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	name := func(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("events_total"),
			Help: "Events read from the streams since start, by subject and result (applied, duplicate, invalid)."},
			[]string{"subject", "result"}),
		pendingGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("pending_messages"),
			Help: "Messages of the subject not yet read by the exporter (the replay's remaining work, then live lag)."},
			[]string{"subject"}),
		rebuild: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("rebuild_duration_seconds"),
			Help: "Time from start until the subject's history was replayed; absent while rebuilding."},
			[]string{"subject"}),
		lagHist: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name("event_lag_seconds"),
			Help:    "Time from an event's ce-time to the exporter applying it, for live (not replayed) events.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400}},
			[]string{"subject"}),
	}
	reg.MustRegister(m.events, m.pendingGauge, m.rebuild, m.lagHist)
	for _, f := range feeds {
		for _, r := range []string{resultApplied, resultDuplicate, resultInvalid} {
			m.events.WithLabelValues(f.subject, r)
		}
		m.pendingGauge.WithLabelValues(f.subject)
	}
	return m
}

func (m *metrics) event(subject, result string) { m.events.WithLabelValues(subject, result).Inc() }

func (m *metrics) pending(subject string, n uint64) {
	m.pendingGauge.WithLabelValues(subject).Set(float64(n))
}

func (m *metrics) caughtUp(subject string, took time.Duration) {
	m.rebuild.WithLabelValues(subject).Set(took.Seconds())
}

func (m *metrics) lag(subject string, d time.Duration) {
	m.lagHist.WithLabelValues(subject).Observe(d.Seconds())
}
