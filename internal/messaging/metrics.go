package messaging

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "doraflow"

// Handler results, the values of the result label.
const (
	resultOK           = "ok"
	resultRetried      = "retried"       // failed; nacked for redelivery with backoff
	resultDeadLettered = "dead_lettered" // permanent failure or last delivery; moved to the DLQ
)

// Metrics are the messaging runtime's own metrics. Labels are bounded: handler names and subjects
// are fixed at build time.
type Metrics struct {
	handled      *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	publishedVec *prometheus.CounterVec
	lag          *prometheus.HistogramVec
}

// NewMetrics registers the messaging metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "messaging", "messages_handled_total"),
			Help: "Messages handled, by handler and result (ok, retried, dead_lettered).",
		}, []string{"handler", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName(namespace, "messaging", "handler_duration_seconds"),
			Help:    "Time to handle one delivery, retries in the process included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"handler"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "messaging", "handler_attempts_total"),
			Help: "Handler invocations, in-process retries included.",
		}, []string{"handler"}),
		publishedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "messaging", "published_total"),
			Help: "Messages published, by subject and result (ok, error).",
		}, []string{"subject", "result"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName(namespace, "messaging", "event_lag_seconds"),
			Help:    "Time from the event's ce-time to the end of its handling, by handler.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400},
		}, []string{"handler"}),
	}
	reg.MustRegister(m.handled, m.duration, m.attempts, m.publishedVec, m.lag)
	return m
}

func (m *Metrics) result(handler, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.handled.WithLabelValues(handler, result).Inc()
	m.duration.WithLabelValues(handler).Observe(took.Seconds())
}

func (m *Metrics) attempt(handler string) {
	if m != nil {
		m.attempts.WithLabelValues(handler).Inc()
	}
}

func (m *Metrics) published(subject, result string) {
	if m != nil {
		m.publishedVec.WithLabelValues(subject, result).Inc()
	}
}

func (m *Metrics) eventLag(handler string, eventTime time.Time) {
	if m != nil && !eventTime.IsZero() {
		m.lag.WithLabelValues(handler).Observe(time.Since(eventTime).Seconds())
	}
}
