package main

import (
	"regexp"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
)

const (
	namespace = "doraflow"
	subsystem = "webrca_poller"
)

// maxStatusLabels bounds the distinct values of the status label; later ones count as "other".
const maxStatusLabels = 20

// metrics are the poller's operational metrics. Label plumbing lives in the typed methods.
type metrics struct {
	polls            *prometheus.CounterVec
	pollDuration     prometheus.Histogram
	lastSuccess      prometheus.Gauge
	failures         prometheus.Gauge
	incidents        *prometheus.GaugeVec
	published        *prometheus.CounterVec
	tokenExchanges   *prometheus.CounterVec
	unknownStatus    *prometheus.CounterVec
	invalidPublished prometheus.Gauge
	invalidated      prometheus.Counter
	inferred         prometheus.Counter
	clamped          prometheus.Counter
	rejected         prometheus.Counter
	configErrors     *prometheus.CounterVec
	configFault      prometheus.Gauge

	mu       sync.Mutex
	statuses map[string]bool
}

func name(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }

func newMetrics(reg prometheus.Registerer, tokensRejected func() bool) *metrics {
	m := &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("polls_total"),
			Help: "Polls of WebRCA by outcome: ok, or the kind of failure (timeout, server_error, decode, schema, token_rejected, publish_error, …)."},
			[]string{"outcome"}),
		pollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: name("poll_duration_seconds"),
			Help:    "Duration of one poll: listing every page, publishing and storing the changes.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("last_success_timestamp_seconds"),
			Help: "Unix time of the last successful poll; 0 before the first."}),
		failures: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("consecutive_failures"),
			Help: "Polls that failed since the last successful one."}),
		incidents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("incidents"),
			Help: "Incidents in the last successful poll's listing: matched (configured products, valid), other_product, invalid."},
			[]string{"result"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("events_published_total"),
			Help: "IncidentObserved events published, by change: opened, updated, resolved, reopened."},
			[]string{"change"}),
		tokenExchanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("token_refreshes_total"),
			Help: "Exchanges with Red Hat SSO by grant and outcome: ok, error (retried), rejected (configuration failure), rotated_rejected."},
			[]string{"grant", "outcome"}),
		unknownStatus: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("unknown_status_total"),
			Help: "Published incidents whose status doraflow does not know (treated as unresolved), by status; \"other\" beyond 20 distinct values."},
			[]string{"status"}),
		invalidPublished: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("invalid_published_incidents"),
			Help: "Incidents now marked invalid that were published before: DevLake has no delete, so remove each by hand."}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{Name: name("invalidated_after_publish_total"),
			Help: "Published incidents that later became invalid and are no longer updated; each needs a manual cleanup."}),
		inferred: prometheus.NewCounter(prometheus.CounterOpts{Name: name("resolution_time_inferred_total"),
			Help: "Resolved incidents without resolved_at, closed_at or last_changed_at: the time doraflow first saw them resolved was used."}),
		clamped: prometheus.NewCounter(prometheus.CounterOpts{Name: name("resolution_before_creation_total"),
			Help: "Published incidents whose resolution time was before created_at (a data error); it was raised to created_at."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: name("incidents_rejected_total"),
			Help: "Incidents skipped because their event failed validation, counted per poll."}),
		configErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("config_errors_total"),
			Help: "Polls failed by a configuration fault, by source and HTTP status: sso (the credentials rejected), webrca (401/403 for a valid token, 404 or another 4xx: a wrong base URL; 200 for a web page instead of the API)."},
			[]string{"source", "status"}),
		configFault: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("config_fault"),
			Help: "1 while the last poll failed by a configuration fault (see /readyz and config_errors_total), else 0."}),
		statuses: map[string]bool{},
	}
	rejectedGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name("sso_credentials_rejected"),
		Help: "1 while Red Hat SSO rejects the configured credentials (a configuration failure), else 0."},
		func() float64 {
			if tokensRejected() {
				return 1
			}
			return 0
		})
	reg.MustRegister(m.polls, m.pollDuration, m.lastSuccess, m.failures, m.incidents, m.published,
		m.tokenExchanges, m.unknownStatus, m.invalidPublished, m.invalidated, m.inferred, m.clamped,
		m.rejected, rejectedGauge, m.configErrors, m.configFault)
	// Pre-create the series dashboards and alerts expect, so they read 0 instead of absent.
	m.polls.WithLabelValues("ok")
	for _, c := range []events.IncidentChange{events.IncidentOpened, events.IncidentUpdated, events.IncidentResolved, events.IncidentReopened} {
		m.published.WithLabelValues(string(c))
	}
	for _, r := range []string{"matched", "other_product", "invalid"} {
		m.incidents.WithLabelValues(r)
	}
	// The usual faults start at 0, so increase() sees the first one.
	for _, l := range [][2]string{{"sso", "400"}, {"sso", "401"}, {"webrca", "401"}, {"webrca", "403"}, {"webrca", "404"}} {
		m.configErrors.WithLabelValues(l[0], l[1])
	}
	return m
}

func (m *metrics) poll(outcome string, seconds float64) {
	m.polls.WithLabelValues(outcome).Inc()
	m.pollDuration.Observe(seconds)
}

func (m *metrics) succeeded(unix float64, matched, otherProduct, invalid, invalidPublished int) {
	m.lastSuccess.Set(unix)
	m.failures.Set(0)
	m.incidents.WithLabelValues("matched").Set(float64(matched))
	m.incidents.WithLabelValues("other_product").Set(float64(otherProduct))
	m.incidents.WithLabelValues("invalid").Set(float64(invalid))
	m.invalidPublished.Set(float64(invalidPublished))
}

func (m *metrics) failed(consecutive int) { m.failures.Set(float64(consecutive)) }

// configFaulty records whether a failed poll was a configuration fault, and counts it if so.
func (m *metrics) configFaulty(faulty bool, source string, status int) {
	if !faulty {
		m.configFault.Set(0)
		return
	}
	m.configFault.Set(1)
	m.configErrors.WithLabelValues(source, strconv.Itoa(status)).Inc()
}

func (m *metrics) eventPublished(c events.IncidentChange) {
	m.published.WithLabelValues(string(c)).Inc()
}

func (m *metrics) tokenExchange(g sso.Grant, o sso.Outcome) {
	m.tokenExchanges.WithLabelValues(string(g), string(o)).Inc()
}

var statusLabelRE = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// statusSeen counts an unknown status; the label is the status while fewer than maxStatusLabels
// distinct ones were seen and it looks like a status, else "other".
func (m *metrics) statusSeen(status string) {
	m.mu.Lock()
	label := "other"
	if statusLabelRE.MatchString(status) && (m.statuses[status] || len(m.statuses) < maxStatusLabels) {
		m.statuses[status] = true
		label = status
	}
	m.mu.Unlock()
	m.unknownStatus.WithLabelValues(label).Inc()
}
