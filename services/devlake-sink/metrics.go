package main

import (
	"errors"
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
			Help: "401 and 403 answers by connection and status: a missing, wrong, expired or out-of-scope API key."},
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
	if to == sink.StateOpen && devlake.ClassOf(cause) == devlake.ClassConfig {
		msg = "DevLake rejected the API key; posts to this connection are paused until it is fixed"
	}
	ev.Uint64("connection", conn).Str("from", from.String()).Str("to", to.String()).Err(cause).Msg(msg)
}
