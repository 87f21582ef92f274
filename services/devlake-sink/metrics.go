package main

import (
	"errors"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

const (
	namespace = "doraflow"
	subsystem = "devlake_sink"
)

// metrics are the sink's own metrics; it implements sink.Observer and logs circuit changes.
type metrics struct {
	log          zerolog.Logger
	posts        *prometheus.CounterVec
	ledgerSkips  *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	configErrors *prometheus.CounterVec
	circuit      *prometheus.GaugeVec
	connInfo     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, log zerolog.Logger) *metrics {
	name := func(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }
	m := &metrics{
		log: log,
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("posts_total"),
			Help: "Posts to DevLake by connection, kind (deployments, issues, pull_requests) and outcome (ok, retryable, permanent, config_error, circuit_open: not sent)."},
			[]string{"connection", "kind", "outcome"}),
		ledgerSkips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("ledger_skips_total"),
			Help: "Posts not made because the ledger shows them done (duplicate), superseded by a newer incident state (stale), posted earlier with other content (changed), or a pull request number another repository holds on the connection (key_taken)."},
			[]string{"kind", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("skipped_total"),
			Help: "Events not posted anywhere, by kind and reason (unknown_environment, redeploy, rollout_child, no_commits, no_targets)."},
			[]string{"kind", "reason"}),
		configErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("config_errors_total"),
			Help: "Answers that pause a connection as misconfigured, by connection and HTTP status: 401 and 403 (the API key), 404 (a wrong base_url or path prefix, a deleted connection), other 4xx but 400, and answers that are not DevLake's JSON (an ingress or web page answering instead)."},
			[]string{"connection", "status"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("circuit_state"),
			Help: "Circuit state per connection: 0 closed (posting), 1 half-open (probing), 2 open (paused)."},
			[]string{"connection"}),
		connInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("connection_info"),
			Help: "DevLake webhook connection of each project the sink posts to; always 1."},
			[]string{"connection", "project_id"}),
	}
	reg.MustRegister(m.posts, m.ledgerSkips, m.skipped, m.configErrors, m.circuit, m.connInfo)
	return m
}

func connLabel(conn uint64) string { return strconv.FormatUint(conn, 10) }

// connection initialises a connection's series, so dashboards see zeros before the first post.
func (m *metrics) connection(c sink.Connection) {
	l := connLabel(c.ID)
	m.connInfo.WithLabelValues(l, c.ProjectID).Set(1)
	m.circuit.WithLabelValues(l).Set(float64(sink.StateClosed))
	for _, k := range []devlake.Kind{devlake.KindDeployments, devlake.KindIssues} {
		m.posts.WithLabelValues(l, string(k), "ok")
	}
	// The usual statuses start at 0, so increase() sees the first fault.
	for _, status := range []string{"401", "403", "404"} {
		m.configErrors.WithLabelValues(l, status)
	}
}

// faultCollector emits config_fault at scrape time: 1 for each connection paused by a
// configuration fault (the connections /readyz names), 0 for the others.
type faultCollector struct {
	desc   *prometheus.Desc
	conns  []uint64
	faults func() []sink.ConfigFault
}

func newFaultCollector(conns map[string]sink.Connection, faults func() []sink.ConfigFault) *faultCollector {
	c := &faultCollector{faults: faults, desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "config_fault"),
		"1 while the connection is paused by a configuration fault (see /readyz and config_errors_total), else 0.",
		[]string{"connection"}, nil)}
	seen := map[uint64]bool{}
	for _, conn := range conns {
		if !seen[conn.ID] {
			seen[conn.ID] = true
			c.conns = append(c.conns, conn.ID)
		}
	}
	slices.Sort(c.conns)
	return c
}

func (c *faultCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *faultCollector) Collect(ch chan<- prometheus.Metric) {
	faulty := map[uint64]bool{}
	for _, f := range c.faults() {
		faulty[f.Connection] = true
	}
	for _, id := range c.conns {
		v := 0.0
		if faulty[id] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, connLabel(id))
	}
}

// Posted implements sink.Observer.
func (m *metrics) Posted(conn uint64, kind devlake.Kind, outcome string, err error) {
	m.posts.WithLabelValues(connLabel(conn), string(kind), outcome).Inc()
	var de *devlake.Error
	if outcome == devlake.ClassConfig.String() && errors.As(err, &de) {
		m.configErrors.WithLabelValues(connLabel(conn), strconv.Itoa(de.Status)).Inc()
	}
}

// LedgerSkip implements sink.Observer.
func (m *metrics) LedgerSkip(kind devlake.Kind, reason string) {
	m.ledgerSkips.WithLabelValues(string(kind), reason).Inc()
}

// Skipped implements sink.Observer.
func (m *metrics) Skipped(kind devlake.Kind, reason string) {
	m.skipped.WithLabelValues(string(kind), reason).Inc()
}

// CircuitChanged implements sink.Observer: it sets the gauge and logs the change once. A circuit
// opened by a 401 or 403 is an error an operator must fix; one opened by an outage is a warning.
func (m *metrics) CircuitChanged(conn uint64, from, to sink.State, cause error) {
	m.circuit.WithLabelValues(connLabel(conn)).Set(float64(to))
	ev := m.log.Info()
	switch {
	case to == sink.StateOpen && devlake.ClassOf(cause) == devlake.ClassConfig:
		ev = m.log.Error()
	case to == sink.StateOpen:
		ev = m.log.Warn()
	}
	msg := "DevLake connection circuit " + to.String()
	var de *devlake.Error
	if to == sink.StateOpen && errors.As(cause, &de) && de.Class == devlake.ClassConfig {
		msg = "DevLake connection misconfigured; posts to it are paused until it is fixed (see /readyz)"
		if de.Status == 401 || de.Status == 403 {
			msg = "DevLake rejected the API key; posts to this connection are paused until it is fixed"
		}
	}
	ev.Uint64("connection", conn).Str("from", from.String()).Str("to", to.String()).Err(cause).Msg(msg)
}
