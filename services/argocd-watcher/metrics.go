package main

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/detect"
)

const (
	namespace = "doraflow"
	subsystem = "argocd_watcher"
)

// metrics are the watcher's operational metrics. Label values are bounded: kinds, results, reasons
// and stages are fixed sets; no application names, SHAs or messages.
type metrics struct {
	deployments    *prometheus.CounterVec
	changeFailures *prometheus.CounterVec
	malformed      *prometheus.CounterVec
	historyGaps    prometheus.Counter
	skipped        *prometheus.CounterVec
	unresolved     *prometheus.CounterVec
	informerEvents *prometheus.CounterVec
	watchErrors    prometheus.Counter
	processErrors  *prometheus.CounterVec
	checkpoints    *prometheus.CounterVec
	held           *prometheus.CounterVec
	released       *prometheus.CounterVec
	ambiguous      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	name := func(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }
	m := &metrics{
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("deployments_published_total"),
			Help: "DeploymentObserved events published, by kind (deploy, redeploy, rollback) and result (success, failure).",
		}, []string{"kind", "result"}),
		changeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("change_failures_published_total"),
			Help: "ChangeFailureSignal events published, by detection (rollback, degraded) and phase (detected, recovered).",
		}, []string{"detection", "phase"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("malformed_applications_total"),
			Help: "Applications found malformed, by reason; counted once per application and reason until it is fixed.",
		}, []string{"reason"}),
		historyGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("history_gap_entries_total"),
			Help: "History entries lost to truncation (revisionHistoryLimit) before the watcher saw them.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("skipped_total"),
			Help: "Conditions seen but deliberately not published, by reason (ignored_component, cancelled_operation, failed_same_revision, ...).",
		}, []string{"reason"}),
		unresolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("unresolved_deployments_total"),
			Help: "Published deployments whose field (cluster, environment) no rule could resolve; they carry unknown.",
		}, []string{"field"}),
		informerEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("informer_events_total"),
			Help: "Application informer notifications, by type (add, update, delete).",
		}, []string{"type"}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("watch_errors_total"),
			Help: "Failed lists or watches of Applications; the informer retries them with backoff.",
		}),
		processErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("process_errors_total"),
			Help: "Applications whose processing failed and was requeued with backoff, by stage (checkpoint_read, publish, checkpoint_write).",
		}, []string{"stage"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("checkpoint_operations_total"),
			Help: "Checkpoint KV writes and deletes, by operation (write, delete, collect).",
		}, []string{"op"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("deployments_held_total"),
			Help: "New history entries held until their rollout settled, by reason (progressing, unchanged_images).",
		}, []string{"reason"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name("held_deployments_released_total"),
			Help: "Held history entries published, by reason (settled, timeout, superseded, recreated).",
		}, []string{"reason"}),
		ambiguous: prometheus.NewCounter(prometheus.CounterOpts{
			Name: name("ambiguous_image_deployments_total"),
			Help: "DeploymentObserved published with flag ambiguous_image: live pods ran several commits of one image and none could be told to be the new revision's.",
		}),
	}
	reg.MustRegister(m.deployments, m.changeFailures, m.malformed, m.historyGaps, m.skipped, m.unresolved,
		m.informerEvents, m.watchErrors, m.processErrors, m.checkpoints, m.held, m.released, m.ambiguous)
	for _, k := range []events.Kind{events.KindDeploy, events.KindRedeploy, events.KindRollback} {
		m.deployments.WithLabelValues(string(k), string(events.ResultSuccess))
	}
	m.deployments.WithLabelValues(string(events.KindDeploy), string(events.ResultFailure))
	for _, t := range []string{"add", "update", "delete"} {
		m.informerEvents.WithLabelValues(t)
	}
	for _, r := range []string{detect.HoldProgressing, detect.HoldUnchangedImages} {
		m.held.WithLabelValues(r)
	}
	for _, r := range []string{detect.ReleaseSettled, detect.ReleaseTimeout, detect.ReleaseSuperseded, detect.ReleaseRecreated} {
		m.released.WithLabelValues(r)
	}
	return m
}

// watcherGauges exports the cache size and queue depth of w at scrape time.
func (m *metrics) watcherGauges(reg prometheus.Registerer, w *argocd.Watcher) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prometheus.BuildFQName(namespace, subsystem, "queue_depth"),
			Help: "Application keys waiting to be processed.",
		}, func() float64 { return float64(w.QueueDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prometheus.BuildFQName(namespace, subsystem, "cached_applications"),
			Help: "Applications in the informer cache.",
		}, func() float64 { return float64(w.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prometheus.BuildFQName(namespace, subsystem, "cache_synced"),
			Help: "1 when the Application cache has synced with the API server.",
		}, func() float64 {
			if w.Synced() {
				return 1
			}
			return 0
		}),
	)
}

// InformerEvent implements argocd.Observer.
func (m *metrics) InformerEvent(kind string) { m.informerEvents.WithLabelValues(kind).Inc() }

// WatchError implements argocd.Observer.
func (m *metrics) WatchError(error) { m.watchErrors.Inc() }

func (m *metrics) published(ev events.Event) {
	switch e := ev.(type) {
	case *events.DeploymentObserved:
		m.deployments.WithLabelValues(string(e.Kind), string(e.Result)).Inc()
	case *events.ChangeFailureSignal:
		phase := "detected"
		if !e.RecoveredAt.IsZero() {
			phase = "recovered"
		}
		m.changeFailures.WithLabelValues(string(e.Detection), phase).Inc()
	}
}

// settled counts what happened to held entries and the ambiguous deployments among evs, once the
// checkpoint is written (a retried attempt does not count twice).
func (m *metrics) settled(held, released []string, evs []events.Event) {
	for _, r := range held {
		m.held.WithLabelValues(r).Inc()
	}
	for _, r := range released {
		m.released.WithLabelValues(r).Inc()
	}
	for _, ev := range evs {
		if d, ok := ev.(*events.DeploymentObserved); ok && slices.Contains(d.Flags, events.QualityAmbiguousImage) {
			m.ambiguous.Inc()
		}
	}
}

func (m *metrics) malformedApp(r argocd.Reason) { m.malformed.WithLabelValues(string(r)).Inc() }
func (m *metrics) gap(n int64)                  { m.historyGaps.Add(float64(n)) }
func (m *metrics) skip(reason string)           { m.skipped.WithLabelValues(reason).Inc() }
func (m *metrics) unresolvedField(f string)     { m.unresolved.WithLabelValues(f).Inc() }
func (m *metrics) processError(stage string)    { m.processErrors.WithLabelValues(stage).Inc() }
func (m *metrics) checkpoint(op string)         { m.checkpoints.WithLabelValues(op).Inc() }
