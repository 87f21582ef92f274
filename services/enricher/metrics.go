package main

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

const (
	namespace = "doraflow"
	subsystem = "enricher"
)

// Kinds of enriched events, the values of the kind label.
const (
	kindDeployment = "deployment"
	kindIncident   = "incident"
)

var qualityFlags = []events.QualityFlag{
	events.QualityFirstDeployment, events.QualityNoAppSHA, events.QualityUnknownRepo, events.QualityRepoNotFound,
	events.QualityRepoForbidden, events.QualityDivergedHistory, events.QualityBehind, events.QualityNoTeam,
	events.QualityUnknownEnvironment, events.QualityAmbiguousImage, events.QualityRevert,
}

// metrics are the enricher's own metrics. It implements github.Observer and github.CacheObserver.
type metrics struct {
	githubRequests *prometheus.CounterVec
	rateRemaining  *prometheus.GaugeVec
	rateReset      *prometheus.GaugeVec
	cacheLookups   *prometheus.CounterVec
	enriched       *prometheus.CounterVec
	quality        *prometheus.CounterVec
	ranges         *prometheus.CounterVec
	commits        prometheus.Counter
	duplicates     *prometheus.CounterVec
	cacheWriteErrs prometheus.Counter
	stateMoved     prometheus.Counter
	inferred       prometheus.Counter
	configErrors   *prometheus.CounterVec
	configFault    prometheus.Gauge
	// onConfigFault is told of each transition of the GitHub client's circuit (for the log).
	onConfigFault func(cause *github.ConfigError)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	name := func(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }
	m := &metrics{
		githubRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("github_requests_total"),
			Help: "Requests to GitHub by endpoint and outcome (deferred: not sent, the quota is known to be spent)."},
			[]string{"endpoint", "outcome"}),
		rateRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("github_rate_limit_remaining"),
			Help: "Requests left in GitHub's rate-limit window, by resource (core, graphql), from the last response."},
			[]string{"resource"}),
		rateReset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name("github_rate_limit_reset_timestamp_seconds"),
			Help: "When GitHub's rate-limit window resets, by resource, as a Unix time."}, []string{"resource"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("github_cache_lookups_total"),
			Help: "Lookups in the GitHub answer cache by kind (compare, commit, pull_request) and result (hit, miss)."},
			[]string{"kind", "result"}),
		enriched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("enriched_total"),
			Help: "Enriched events published, by kind (deployment, incident)."}, []string{"kind"}),
		quality: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("quality_flags_total"),
			Help: "Data-quality flags raised on published events, by kind and flag."}, []string{"kind", "flag"}),
		ranges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("commit_ranges_total"),
			Help: "Commit ranges computed for deployments, by compare status (ahead, identical, behind, diverged, first)."},
			[]string{"status"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: name("commits_total"),
			Help: "Commits attributed to deployments."}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("duplicates_skipped_total"),
			Help: "Observed events skipped because they were already enriched, by kind."}, []string{"kind"}),
		cacheWriteErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: name("github_cache_write_errors_total"),
			Help: "GitHub answers not written to the cache (each costs one GitHub call on a later miss)."}),
		stateMoved: prometheus.NewCounter(prometheus.CounterOpts{Name: name("state_conflicts_total"),
			Help: "Deployments recomputed because another replica changed their state since this one read it."}),
		inferred: prometheus.NewCounter(prometheus.CounterOpts{Name: name("change_failures_inferred_total"),
			Help: "Change failures inferred from commit history (GitOps reverts) and published."}),
		configErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("config_errors_total"),
			Help: "GitHub answers that paused the client as misconfigured, by HTTP status: 401 (the token or app credentials rejected), 404 (no such app installation, or a base URL answering a page that is not GitHub's), 200 (a web page instead of the API)."},
			[]string{"status"}),
		configFault: prometheus.NewGauge(prometheus.GaugeOpts{Name: name("config_fault"),
			Help: "1 while a configuration fault pauses every GitHub request (see /readyz and config_errors_total), else 0."}),
	}
	reg.MustRegister(m.githubRequests, m.rateRemaining, m.rateReset, m.cacheLookups, m.enriched, m.quality,
		m.ranges, m.commits, m.duplicates, m.cacheWriteErrs, m.stateMoved, m.inferred, m.configErrors, m.configFault)
	// The usual faults start at 0, so increase() sees the first one.
	for _, status := range []string{"200", "401", "404"} {
		m.configErrors.WithLabelValues(status)
	}
	for _, k := range []string{kindDeployment, kindIncident} {
		m.enriched.WithLabelValues(k)
		m.duplicates.WithLabelValues(k)
	}
	for _, f := range qualityFlags {
		m.quality.WithLabelValues(kindDeployment, string(f))
	}
	m.quality.WithLabelValues(kindIncident, string(events.QualityNoTeam))
	m.quality.WithLabelValues(kindIncident, string(events.QualityNoLinkedDeployment))
	m.quality.WithLabelValues(kindIncident, string(events.QualityLinkTooOld))
	for _, s := range []events.CompareStatus{events.CompareAhead, events.CompareIdentical, events.CompareBehind,
		events.CompareDiverged, events.CompareFirst} {
		m.ranges.WithLabelValues(string(s))
	}
	for _, k := range []string{github.CacheCompare, github.CacheCommit, github.CachePullRequest} {
		m.cacheLookups.WithLabelValues(k, "hit")
		m.cacheLookups.WithLabelValues(k, "miss")
	}
	return m
}

// Call implements github.Observer.
func (m *metrics) Call(endpoint, outcome string) {
	m.githubRequests.WithLabelValues(endpoint, outcome).Inc()
}

// RateLimit implements github.Observer.
func (m *metrics) RateLimit(resource string, remaining int, reset time.Time) {
	m.rateRemaining.WithLabelValues(resource).Set(float64(remaining))
	m.rateReset.WithLabelValues(resource).Set(float64(reset.Unix()))
}

// CacheLookup implements github.CacheObserver.
func (m *metrics) CacheLookup(kind string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(kind, result).Inc()
}

func (m *metrics) deploymentEnriched(d events.DeploymentEnriched) {
	m.enriched.WithLabelValues(kindDeployment).Inc()
	for _, f := range d.Quality {
		m.quality.WithLabelValues(kindDeployment, string(f)).Inc()
	}
	for _, r := range d.Ranges {
		m.ranges.WithLabelValues(string(r.Status)).Inc()
	}
	m.commits.Add(float64(len(d.Commits)))
}

func (m *metrics) incidentEnriched(i events.IncidentEnriched) {
	m.enriched.WithLabelValues(kindIncident).Inc()
	for _, f := range i.Quality {
		m.quality.WithLabelValues(kindIncident, string(f)).Inc()
	}
}

func (m *metrics) duplicate(kind string) { m.duplicates.WithLabelValues(kind).Inc() }

// ConfigError implements github.Observer.
func (m *metrics) ConfigError(status int) {
	m.configErrors.WithLabelValues(strconv.Itoa(status)).Inc()
}

// ConfigFault implements github.Observer.
func (m *metrics) ConfigFault(cause *github.ConfigError) {
	if cause != nil {
		m.configFault.Set(1)
	} else {
		m.configFault.Set(0)
	}
	if m.onConfigFault != nil {
		m.onConfigFault(cause)
	}
}
