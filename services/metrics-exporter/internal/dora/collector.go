package dora

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/pkg/events"
)

var (
	seriesLabels = []string{"component", "team", "environment"}
	windowLabels = []string{"scope", "component", "team", "environment", "window"}
	incLabels    = []string{"component", "team", "severity", "source"}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func with(base []string, more ...string) []string { return append(slices.Clone(base), more...) }

// Descriptors of every metric the state exports. The README's metric catalogue documents each.
var (
	descDeployments = desc("dora_deployments_total",
		"Deployments (one per logical deployment), by kind (deploy, redeploy, rollback) and result (success, failure).",
		with(seriesLabels, "kind", "result")...)
	descDeploymentDays = desc("dora_deployment_dates_total",
		"Distinct UTC days with at least one successful non-redeploy deployment (DevLake's deployment days).",
		seriesLabels...)
	descChangeLT = desc("dora_change_lead_time_seconds",
		"Change lead time per commit: commit (its pull request's first commit when known) to the first successful deployment to this environment that contains it.",
		seriesLabels...)
	descDeployLT = desc("dora_deployment_lead_time_seconds",
		"Lead time per deployment: its oldest newly deployed commit to the deployment's finish.",
		seriesLabels...)
	descFailures = desc("dora_change_failures_total",
		"Successful non-redeploy deployments that became change failures, by detection (the first-detected signal when the deployment became a failure; ties go to the strongest).",
		with(seriesLabels, "detection")...)
	descSignals = desc("dora_change_failure_signals_total",
		"Change-failure evidence per deployment and signal type (incident, rollback, revert, degraded, sync_failed, manual): counts each type once per deployment.",
		with(seriesLabels, "signal")...)
	descRework = desc("dora_rework_deployments_total",
		"Deployments that were rework, by reason (rollback, revert, hotfix: a production deploy while an incident on the component was open).",
		with(seriesLabels, "reason")...)
	descFDRT = desc("dora_failed_deployment_recovery_seconds",
		"Failed deployment recovery time (DORA 2023+): the failed deployment's finish to its recovery, by detection.",
		with(seriesLabels, "detection")...)
	descUnrecovered = desc("dora_failed_deployments_unrecovered",
		"Change failures with no recovery yet.", seriesLabels...)
	descLastDeploy = desc("dora_last_deployment_timestamp_seconds",
		"Finish time of the newest successful non-redeploy deployment, as a Unix time (for staleness alerts).",
		seriesLabels...)
	descIncidents = desc("dora_incidents_total",
		"Incidents (one per incident, labelled from its first observed state).", incLabels...)
	descIncidentsOpen = desc("dora_incidents_open", "Incidents not resolved in their latest state, labelled from that state.", incLabels...)
	descRestore       = desc("dora_incident_restore_seconds",
		"Classic time to restore service (MTTR, DORA 2021): incident created to resolved, once per incident (its first resolved state), labelled from its first observed state. Not failed deployment recovery time.",
		incLabels...)

	descWDeployments = desc("dora_window_deployments",
		"Successful non-redeploy deployments finished in the trailing window.", windowLabels...)
	descWPerDay = desc("dora_window_deployments_per_day",
		"Deployment frequency: dora_window_deployments divided by the window's days.", windowLabels...)
	descWDays = desc("dora_window_deployment_dates",
		"Distinct UTC days with a successful non-redeploy deployment in the trailing window.", windowLabels...)
	descWLeadTime = desc("dora_window_change_lead_time_median_seconds",
		"Exact median change lead time of the commits first deployed in the trailing window.", windowLabels...)
	descWCFR = desc("dora_window_change_fail_ratio",
		"Change fail rate: change failures among the deployments finished in the trailing window, divided by them.",
		windowLabels...)
	descWRecovery = desc("dora_window_failed_deployment_recovery_median_seconds",
		"Exact median failed deployment recovery time of the recovered change failures deployed in the trailing window.",
		windowLabels...)
	descWRework = desc("dora_window_rework_ratio",
		"Deployment rework rate: rework deployments among the deployments finished in the trailing window, divided by them.",
		windowLabels...)
	descWFailures = desc("dora_window_change_failures",
		"Change failures among the deployments finished in the trailing window, by detection (the first-detected signal; ties go to the strongest): dora_window_change_fail_ratio's numerator.",
		with(windowLabels, "detection")...)
	descWReworkDeployments = desc("dora_window_rework_deployments",
		"Rework deployments among the deployments finished in the trailing window, by reason (rollback, revert, hotfix): dora_window_rework_ratio's numerator.",
		with(windowLabels, "reason")...)
	descWCommitData = desc("dora_window_commit_data_ratio",
		"Share of the deploy-kind deployments finished in the trailing window and expected to carry commit data (not first deployments, not a later cluster's copy of a change under rollout policy each) that carried it.",
		windowLabels...)
	descLevel = desc("dora_performance_level",
		"Performance level against the configured benchmark set, production only: 4 elite, 3 high, 2 medium, 1 low; absent without data.",
		with(windowLabels, "metric")...)

	descBenchmark = desc("doraflow_metrics_exporter_benchmark_info",
		"The benchmark set dora_performance_level rates against; always 1.", "benchmark")
	descNow = desc("doraflow_metrics_exporter_evaluation_timestamp_seconds",
		"The time the trailing windows end at, as a Unix time (the clock, or metrics.evaluation_time).")
	descNoCommits = desc("doraflow_metrics_exporter_deployments_without_commits_total",
		"Successful deploy-kind deployments expected to carry commit data (not first deployments, not a later cluster's copy of a change under rollout policy each) that carried none, so no lead time.",
		seriesLabels...)
	descDepFlags = desc("doraflow_metrics_exporter_deployment_quality_flags_total",
		"Enrichment quality flags on deployments, by environment and flag.", "environment", "flag")
	descIncFlags = desc("doraflow_metrics_exporter_incident_quality_flags_total",
		"Enrichment quality flags on incident states, by flag.", "flag")
	descExcluded = desc("doraflow_metrics_exporter_deployments_excluded_total",
		"Deployments excluded from every DORA number, by reason (unknown_environment).", "reason")
	descSignalState = desc("doraflow_metrics_exporter_signal_deployments",
		"Deployments named by change-failure signals, by state: joined, deployment_unknown (not seen yet), deployment_not_a_change (failed or redeploy).",
		"state")
	descCommits = desc("doraflow_metrics_exporter_commits",
		"Distinct commits per component and environment, by lead-time outcome: measured, no_commit_time, commit_after_deployment.",
		"lead_time")
	descIncLinks = desc("doraflow_metrics_exporter_incidents",
		"Incidents by how they are attributed to a deployment: the enricher's reason, the exporter's fallback, or unlinked.",
		"link")
	descRolloutChildren = desc("doraflow_metrics_exporter_rollout_children_total",
		"Child rollouts (one cluster's deployment of a logical deployment), by environment and whether the child is the one counted.",
		"environment", "counted")
	descHeld = desc("doraflow_metrics_exporter_state_objects",
		"Objects held in memory, by kind.", "kind")
)

var allDescs = []*prometheus.Desc{descDeployments, descDeploymentDays, descChangeLT, descDeployLT, descFailures,
	descSignals, descRework, descFDRT, descUnrecovered, descLastDeploy, descIncidents, descIncidentsOpen, descRestore,
	descWDeployments, descWPerDay, descWDays, descWLeadTime, descWCFR, descWRecovery, descWRework, descWFailures, descWReworkDeployments, descWCommitData, descLevel,
	descBenchmark, descNow, descNoCommits, descDepFlags, descIncFlags, descExcluded, descSignalState, descCommits,
	descIncLinks, descRolloutChildren, descHeld}

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it builds every metric from the state, at the clock's now.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	keys := make([]seriesKey, 0, len(s.series))
	for k := range s.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b seriesKey) int {
		return cmp.Or(cmp.Compare(a.component, b.component), cmp.Compare(a.team, b.team), cmp.Compare(a.env, b.env))
	})
	for _, k := range keys {
		ser := s.series[k]
		lv := []string{k.component, k.team, string(k.env)}
		for ki, kind := range kinds {
			for ri, res := range results {
				if v := ser.deploys[ki][ri]; v > 0 || kind != events.KindRedeploy || res == events.ResultSuccess {
					counter(descDeployments, v, with(lv, string(kind), string(res))...)
				}
			}
		}
		counter(descDeploymentDays, uint64(len(ser.days)), lv...)
		ch <- ser.changeLT.metric(descChangeLT, lv...)
		ch <- ser.deployLT.metric(descDeployLT, lv...)
		for i, det := range detections {
			counter(descFailures, ser.failures[i], with(lv, string(det))...)
			if ser.signals[i] > 0 {
				counter(descSignals, ser.signals[i], with(lv, string(det))...)
			}
			if h := ser.fdrt[i]; h != nil && h.count > 0 {
				ch <- h.metric(descFDRT, with(lv, string(det))...)
			}
		}
		for i, r := range reworkReasons {
			counter(descRework, ser.rework[i], with(lv, r)...)
		}
		gauge(descUnrecovered, float64(ser.unrecovered), lv...)
		if ser.last != 0 {
			gauge(descLastDeploy, float64(ser.last)/1e3, lv...)
		}
		counter(descNoCommits, ser.noCommits, lv...)
	}
	s.collectIncidents(ch)
	s.collectWindows(ch, now, keys)
	s.collectQuality(ch)
	gauge(descBenchmark, 1, s.bench.Name)
	gauge(descNow, float64(now.UnixMilli())/1e3)
}

func (s *State) collectIncidents(ch chan<- prometheus.Metric) {
	keys := make([]incKey, 0, len(s.incSeries))
	for k, is := range s.incSeries {
		if is.count > 0 || is.everOpen {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b incKey) int {
		return cmp.Or(cmp.Compare(a.component, b.component), cmp.Compare(a.team, b.team),
			cmp.Compare(a.severity, b.severity), cmp.Compare(a.source, b.source))
	})
	for _, k := range keys {
		is := s.incSeries[k]
		lv := []string{k.component, k.team, k.severity, k.source}
		ch <- prometheus.MustNewConstMetric(descIncidentsOpen, prometheus.GaugeValue, float64(is.open), lv...)
		if is.count > 0 {
			ch <- prometheus.MustNewConstMetric(descIncidents, prometheus.CounterValue, float64(is.count), lv...)
			ch <- is.restore.metric(descRestore, lv...)
		}
	}
}

// collectWindows exports the exact windowed values and performance levels of every component, team
// and the organisation, per environment.
func (s *State) collectWindows(ch chan<- prometheus.Metric, now time.Time, keys []seriesKey) {
	windows := slices.Clone(s.opts.Windows)
	slices.Sort(windows)
	nowMS := now.UnixMilli()
	groups := map[groupKey][]*windowStats{}
	var order []groupKey
	add := func(g groupKey, st []*windowStats) {
		acc, ok := groups[g]
		if !ok {
			acc = make([]*windowStats, len(st))
			for i := range acc {
				acc[i] = &windowStats{days: map[int32]struct{}{}}
			}
			groups[g] = acc
			order = append(order, g)
		}
		for i := range st {
			acc[i].merge(st[i])
		}
	}
	for _, k := range keys {
		st := seriesWindows(s.series[k], nowMS, windows)
		add(groupKey{ScopeComponent, k.component, k.team, k.env}, st)
		add(groupKey{ScopeTeam, "", k.team, k.env}, st)
		add(groupKey{scope: ScopeOrganization, env: k.env}, st)
	}
	for _, g := range order {
		for i, w := range windows {
			v := groups[g][i].values(w)
			lv := []string{g.scope, g.component, g.team, string(g.env), WindowLabel(w)}
			gauge := func(d *prometheus.Desc, x float64, extra ...string) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, with(lv, extra...)...)
			}
			gauge(descWDeployments, v.deployments)
			gauge(descWPerDay, v.perDay)
			gauge(descWDays, v.days)
			if v.hasLT {
				gauge(descWLeadTime, v.leadTime)
			}
			if v.hasRatio {
				gauge(descWCFR, v.changeF)
				gauge(descWRework, v.rework)
			}
			if v.hasRecovery {
				gauge(descWRecovery, v.recovery)
			}
			for i, det := range detections {
				gauge(descWFailures, float64(v.failedBy[i]), string(det))
			}
			for i, r := range reworkReasons {
				gauge(descWReworkDeployments, float64(v.reworkBy[i]), r)
			}
			if v.hasCommitData {
				gauge(descWCommitData, v.commitData)
			}
			if g.env != events.EnvironmentProduction {
				continue
			}
			for _, m := range []string{MetricDeploymentFrequency, MetricLeadTime, MetricChangeFailRate, MetricRecoveryTime} {
				t, ok := s.bench.Metrics[m]
				if !ok {
					continue
				}
				if x, ok := v.measure(t.Measure); ok {
					gauge(descLevel, float64(t.Rate(x)), m)
				}
			}
		}
	}
}

// measure returns the value a benchmark measure compares, and whether there is one.
func (v windowValues) measure(m string) (float64, bool) {
	switch m {
	case MeasureDeploymentsPerDay:
		return v.perDay, true
	case MeasureDeploymentDaysPerWeek:
		return v.daysPerWeek, v.hasDaysPerWeek
	case MeasureDevLakeDeploymentDays:
		return v.devlakeDeploymentDays(), true
	case MeasureLeadTimeMedian:
		return v.leadTime, v.hasLT
	case MeasureChangeFailRate:
		return v.changeF, v.hasRatio
	case MeasureRecoveryTimeMedian:
		return v.recovery, v.hasRecovery
	case MeasureRecoveryTimeMean:
		return v.recoveryMean, v.hasRecovery
	}
	return 0, false
}

func (s *State) collectQuality(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	for k, v := range s.q.deploymentFlags {
		counter(descDepFlags, v, string(k.env), k.flag)
	}
	for f, v := range s.q.incidentFlags {
		counter(descIncFlags, v, f)
	}
	counter(descExcluded, s.q.excludedUnknownEnv, "unknown_environment")
	for k, v := range s.q.rolloutChildren {
		counter(descRolloutChildren, v, string(k.env), fmt.Sprint(k.counted))
	}
	for i, st := range signalStates[1:] {
		gauge(descSignalState, float64(s.q.signals[i+1]), st)
	}
	measured := uint64(0)
	for _, ser := range s.series {
		measured += uint64(len(ser.commits))
	}
	gauge(descCommits, float64(measured), "measured")
	for i, r := range skipReasons[1:] {
		gauge(descCommits, float64(s.q.leadTimeSkipped[i+1]), r)
	}
	for _, l := range linkReasons {
		gauge(descIncLinks, float64(s.q.incidentLinks[l]), l)
	}
	for l, v := range s.q.incidentLinks {
		if !slices.Contains(linkReasons, l) {
			gauge(descIncLinks, float64(v), l) // a link reason newer than this build
		}
	}
	gauge(descHeld, float64(s.known), "deployment")
	gauge(descHeld, float64(len(s.alias)), "deployment_alias")
	gauge(descHeld, float64(len(s.deployments)-s.known), "deployment_placeholder")
	gauge(descHeld, float64(len(s.commits)), "commit")
	gauge(descHeld, float64(len(s.incidents)), "incident")
	gauge(descHeld, float64(len(s.seen)), "signal_or_incident_state")
}
