package dora

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

// applyAny applies scenario events, the enricher's inferred change failures included.
func applyAny(t testing.TB, s *State, evs []events.Event) {
	t.Helper()
	for _, e := range evs {
		if inf, ok := e.(events.ChangeFailureInferred); ok {
			if _, err := s.AddInferred(inf); err != nil {
				t.Fatal(err)
			}
			continue
		}
		apply(t, s, []events.Event{e})
	}
}

// scrapeValues gathers c and returns every sample by series name with its labels in order:
// counters and gauges by value, histograms as _count, _sum and one _bucket per le.
func scrapeValues(t testing.TB, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series := func(suffix string, extra ...string) string {
				var l []string
				for _, p := range m.GetLabel() {
					l = append(l, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
				}
				l = append(l, extra...)
				sort.Strings(l)
				return mf.GetName() + suffix + "{" + strings.Join(l, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[series("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[series("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[series("_count")] = float64(h.GetSampleCount())
				out[series("_sum")] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[series("_bucket", fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
			default:
				t.Fatalf("unexpected type of %s", mf.GetName())
			}
		}
	}
	return out
}

// pick returns the values of the series whose text contains every one of parts.
func pick(all map[string]float64, parts ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range all {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(k, p)
		}
		if ok {
			out[k] = v
		}
	}
	return out
}

// orders returns evs in its own order, reversed, and in n shuffles.
func orders(evs []events.Event, n int) [][]events.Event {
	rev := slices.Clone(evs)
	slices.Reverse(rev)
	out := [][]events.Event{evs, rev}
	rnd := rand.New(rand.NewPCG(7, uint64(len(evs))))
	for range n {
		p := slices.Clone(evs)
		rnd.Shuffle(len(p), func(a, b int) { p[a], p[b] = p[b], p[a] })
		out = append(out, p)
	}
	return out
}

const cp = `component="checkout-api",environment="production",team="payments"`

func sk(name, labels string) string {
	l := strings.Split(labels, ",")
	sort.Strings(l)
	return name + "{" + strings.Join(l, ",") + "}"
}

// multiCluster is a change to checkout-api rolled out to three production clusters (policy first).
var multiCluster = doratest.FleetCheckout

// TestLogicalDeployments: one change rolled out to three clusters counts as one deployment, and a
// failure signal naming any of its children makes it one change failure, in every arrival order.
func TestLogicalDeployments(t *testing.T) {
	eu, us, ap := multiCluster[0], multiCluster[1], multiCluster[2]
	deps := []events.Event{eu.Event(), us.Event(), ap.Event()}
	rolled := doratest.Signal(ap, events.DetectionRollback, doratest.Mar(18, 11, 0), time.Time{}, "")
	incident := doratest.Incident{ID: "i-9", Key: "ITN-9", Team: "payments", Severity: "2", Change: events.IncidentOpened,
		Components: []string{"checkout-api"}, Created: doratest.Mar(18, 12, 0), Observed: doratest.Mar(18, 12, 1)}.Event()
	incident.CausedBy = &events.DeploymentLink{DeploymentID: us.ID(), Component: "checkout-api",
		Environment: events.EnvironmentProduction, FinishedAt: us.Finished, Reason: events.LinkExplicit}
	w7 := `scope="organization",component="",team="",environment="production",window="7d"`
	tests := []struct {
		name string
		evs  []events.Event
		want map[string]float64
	}{
		{"three clusters, no failure", deps, map[string]float64{
			sk("dora_deployments_total", cp+`,kind="deploy",result="success"`):                                 1,
			sk("dora_window_deployments", w7):                                                                  1,
			sk("dora_change_failures_total", cp+`,detection="rollback"`):                                       0,
			sk("dora_change_lead_time_seconds_count", cp):                                                      1,
			sk("doraflow_metrics_exporter_rollout_children_total", `environment="production",counted="true"`):  1,
			sk("doraflow_metrics_exporter_rollout_children_total", `environment="production",counted="false"`): 2,
		}},
		{"rollback on one of three clusters", append(slices.Clone(deps), rolled), map[string]float64{
			sk("dora_deployments_total", cp+`,kind="deploy",result="success"`):               1,
			sk("dora_change_failures_total", cp+`,detection="rollback"`):                     1,
			sk("dora_window_change_fail_ratio", w7):                                          1,
			sk("doraflow_metrics_exporter_signal_deployments", `state="joined"`):             1,
			sk("doraflow_metrics_exporter_signal_deployments", `state="deployment_unknown"`): 0,
		}},
		{"signals on every cluster count once", append(slices.Clone(deps), rolled,
			doratest.Signal(eu, events.DetectionDegraded, doratest.Mar(18, 10, 30), time.Time{}, ""),
			doratest.Signal(us, events.DetectionDegraded, doratest.Mar(18, 10, 40), time.Time{}, "")), map[string]float64{
			// The counted detection is the first that made it a failure (arrival order); see
			// TestCountersNeverGoDown. The exact values do not depend on the order.
			sk("dora_change_failure_signals_total", cp+`,signal="degraded"`): 1,
			sk("dora_change_failure_signals_total", cp+`,signal="rollback"`): 1,
			sk("dora_window_change_fail_ratio", w7):                          1,
			sk("dora_window_failed_deployment_recovery_median_seconds", w7):  3600,
		}},
		{"explicit incident link to a child", append(slices.Clone(deps), incident), map[string]float64{
			sk("dora_change_failures_total", cp+`,detection="incident"`): 1,
			sk("dora_window_change_fail_ratio", w7):                      1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, evs := range orders(tt.evs, 10) {
				s := newState(t, "dora2023", defaultWindows...)
				applyAny(t, s, evs)
				got := scrapeValues(t, s)
				gotSome := map[string]float64{}
				for k := range tt.want {
					gotSome[k] = got[k]
				}
				if diff := cmp.Diff(tt.want, gotSome); diff != "" {
					t.Fatalf("order %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestInferredRevert: the enricher's inferred revert makes the reverted logical deployment a change
// failure with detection revert; the reverting deployment (kind rollback, quality revert) is rework
// with reason revert, while a plain Argo CD rollback stays reason rollback.
func TestInferredRevert(t *testing.T) {
	b := doratest.Dep{App: "cart-prod", Component: "cart", Team: "payments", Env: events.EnvironmentProduction, History: 21,
		Finished: doratest.Mar(19, 10, 0), Commits: []events.Commit{doratest.Commit("r1", "cart", doratest.Mar(19, 9, 0))}}
	b.Rollout = &events.Rollout{LogicalID: events.LogicalDeploymentID("cart", b.Env, b.ID()), Policy: events.RolloutFirst,
		Counted: true, Clusters: []string{"prod-eu"}, Complete: true}
	revert := doratest.Dep{App: "cart-prod", Component: "cart", Team: "payments", Env: events.EnvironmentProduction, History: 22,
		Finished: doratest.Mar(19, 11, 0), Kind: events.KindRollback, Quality: []events.QualityFlag{events.QualityRevert}}
	revert.Rollout = &events.Rollout{LogicalID: events.LogicalDeploymentID("cart", revert.Env, revert.ID()),
		Policy: events.RolloutFirst, Counted: true, Clusters: []string{"prod-eu"}, Complete: true}
	plain := doratest.Dep{App: "cart-prod", Component: "cart", Team: "payments", Env: events.EnvironmentProduction, History: 23,
		Finished: doratest.Mar(19, 12, 0), Kind: events.KindRollback}
	cart := `component="cart",environment="production",team="payments"`
	evs := []events.Event{b.Event(), revert.Event(), plain.Event(), doratest.Inferred(b, revert.Finished, revert.LogicalID())}
	want := map[string]float64{
		sk("dora_change_failures_total", cart+`,detection="revert"`):                  1,
		sk("dora_rework_deployments_total", cart+`,reason="revert"`):                  1,
		sk("dora_rework_deployments_total", cart+`,reason="rollback"`):                1,
		sk("dora_failed_deployment_recovery_seconds_sum", cart+`,detection="revert"`): 3600,
	}
	for i, evs := range orders(evs, 6) {
		s := newState(t, "dora2023", defaultWindows...)
		applyAny(t, s, evs)
		got := scrapeValues(t, s)
		gotSome := map[string]float64{}
		for k := range want {
			gotSome[k] = got[k]
		}
		if diff := cmp.Diff(want, gotSome); diff != "" {
			t.Fatalf("order %d (-want +got):\n%s", i, diff)
		}
	}
}

// counterSeries reports whether a scraped series belongs to a counter or a histogram, which must
// never go down.
func counterSeries(name string) bool {
	base, _, _ := strings.Cut(name, "{")
	return strings.HasSuffix(base, "_total") || strings.HasSuffix(base, "_count") ||
		strings.HasSuffix(base, "_sum") || strings.HasSuffix(base, "_bucket")
}

// decreases lists the counter and histogram series of before that are lower or gone in after.
func decreases(before, after map[string]float64) []string {
	var out []string
	for k, v := range before {
		if !counterSeries(k) {
			continue
		}
		if w, ok := after[k]; !ok || w < v {
			out = append(out, fmt.Sprintf("%s: %v → %v (present %v)", k, v, w, ok))
		}
	}
	sort.Strings(out)
	return out
}

// TestCountersNeverGoDown scrapes after every step of a history in which an incident's severity
// changes and a signal detected earlier than the counted one arrives late: no counter or histogram
// series ever decreases. Labels stay at the first observation; the open gauge follows the latest.
func TestCountersNeverGoDown(t *testing.T) {
	d := doratest.Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: events.EnvironmentProduction,
		History: 31, Finished: doratest.Mar(19, 12, 0), Commits: []events.Commit{doratest.Commit("m1", "checkout-api", doratest.Mar(19, 11, 0))}}
	inc := doratest.Incident{ID: "i-7", Key: "ITN-7", Team: "payments", Severity: "2", Change: events.IncidentOpened,
		Components: []string{"login"}, Created: doratest.Mar(19, 13, 0), Observed: doratest.Mar(19, 13, 1)}
	sev1 := inc
	sev1.Severity, sev1.Change, sev1.Observed = "1", events.IncidentUpdated, doratest.Mar(19, 14, 0)
	resolved := sev1
	resolved.Change, resolved.Resolved, resolved.Observed = events.IncidentResolved, doratest.Mar(19, 15, 0), doratest.Mar(19, 15, 1)
	steps := []events.Event{
		d.Event(),
		inc.Event(),
		sev1.Event(),
		doratest.Signal(d, events.DetectionDegraded, doratest.Mar(19, 12, 30), time.Time{}, ""),
		doratest.Signal(d, events.DetectionRollback, doratest.Mar(19, 12, 5), time.Time{}, ""), // detected earlier, arrives later
		resolved.Event(),
	}
	s := newState(t, "dora2023", defaultWindows...)
	before := scrapeValues(t, s)
	for i, e := range steps {
		applyAny(t, s, []events.Event{e})
		after := scrapeValues(t, s)
		if d := decreases(before, after); len(d) > 0 {
			t.Errorf("step %d (%T) lowered counters:\n%s", i, e, strings.Join(d, "\n"))
		}
		before = after
	}
	login := `component="login",source="webrca",team="payments"`
	want := map[string]float64{
		sk("dora_incidents_total", login+`,severity="2"`):                1,
		sk("dora_incident_restore_seconds_count", login+`,severity="2"`): 1,
		sk("dora_incidents_open", login+`,severity="1"`):                 0,
		sk("dora_incidents_open", login+`,severity="2"`):                 0,
		sk("dora_change_failures_total", cp+`,detection="degraded"`):     1,
		sk("dora_change_failures_total", cp+`,detection="rollback"`):     0,
	}
	got := map[string]float64{}
	for k := range want {
		got[k] = before[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("final values (-want +got):\n%s", diff)
	}
	if v, ok := before[sk("dora_incidents_total", login+`,severity="1"`)]; ok {
		t.Errorf("the incident is also counted under its later severity: %v", v)
	}
}

// TestIncidentLinking: the exporter links incidents by event time against its own history. The
// enricher's "last production deployment" link is recomputed (a deployment that finished before the
// incident but arrived late takes it over), explicit links stay, rollbacks and reverts are skipped
// so the incident blames the deployment that introduced the failing state, and a last deployment
// older than the look-back limit links nothing (too_old).
func TestIncidentLinking(t *testing.T) {
	mk := func(h int64, finished time.Time, kind events.Kind, q ...events.QualityFlag) doratest.Dep {
		return doratest.Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: events.EnvironmentProduction,
			History: h, Finished: finished, Kind: kind, Quality: q,
			Commits: []events.Commit{doratest.Commit(fmt.Sprint("l", h), "checkout-api", finished.Add(-time.Hour))}}
	}
	a := mk(41, doratest.Mar(10, 10, 0), "")
	b := mk(42, doratest.Mar(12, 10, 0), "")
	// The rollback and the revert are routed to another team, so cp's failure count says whether b
	// got the blame.
	rb := mk(43, doratest.Mar(12, 11, 0), events.KindRollback)
	rv := mk(44, doratest.Mar(12, 12, 0), "", events.QualityRevert)
	rb.Team, rv.Team = "sre", "sre"
	incident := func(reason events.LinkReason, to doratest.Dep) events.IncidentEnriched {
		e := doratest.Incident{ID: "i-5", Key: "ITN-5", Team: "payments", Severity: "2", Change: events.IncidentOpened,
			Components: []string{"checkout-api"}, Created: doratest.Mar(12, 13, 0), Observed: doratest.Mar(12, 13, 1)}.Event()
		if reason != "" {
			e.CausedBy = &events.DeploymentLink{DeploymentID: to.ID(), Component: to.Component, Environment: to.Env,
				FinishedAt: to.Finished, Reason: reason}
		}
		return e
	}
	tests := []struct {
		name     string
		lookback time.Duration
		evs      []events.Event
		failures float64 // dora_change_failures_total{detection="incident"}
		link     string
		cfr      float64 // 30d window
	}{
		{"enricher's last-production link is recomputed", 0,
			[]events.Event{a.Event(), b.Event(), incident(events.LinkLastProductionDeployment, a)}, 1, LinkExporterFallback, 0.5},
		{"explicit link stays", 0,
			[]events.Event{a.Event(), b.Event(), incident(events.LinkExplicit, a)}, 1, string(events.LinkExplicit), 0.5},
		{"rollback and revert after the culprit are skipped", 0,
			[]events.Event{a.Event(), b.Event(), rb.Event(), rv.Event(), incident("", doratest.Dep{})}, 1, LinkExporterFallback, 0.25},
		{"too old", 24 * time.Hour,
			[]events.Event{a.Event(), incident("", doratest.Dep{})}, 0, LinkTooOld, 0},
		{"within the look-back", 7 * 24 * time.Hour,
			[]events.Event{a.Event(), incident("", doratest.Dep{})}, 1, LinkExporterFallback, 1},
	}
	w30 := `scope="organization",component="",team="",environment="production",window="30d"`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, evs := range orders(tt.evs, 8) {
				s, err := New(Options{Windows: defaultWindows, Benchmark: "dora2023", Now: func() time.Time { return doratest.Now },
					IncidentLinkLookback: tt.lookback})
				if err != nil {
					t.Fatal(err)
				}
				applyAny(t, s, evs)
				got := scrapeValues(t, s)
				want := map[string]float64{
					sk("dora_change_failures_total", cp+`,detection="incident"`):               tt.failures,
					sk("doraflow_metrics_exporter_incidents", fmt.Sprintf("link=%q", tt.link)): 1,
					sk("dora_window_change_fail_ratio", w30):                                   tt.cfr,
				}
				gotSome := map[string]float64{}
				for k := range want {
					gotSome[k] = got[k]
				}
				if diff := cmp.Diff(want, gotSome); diff != "" {
					t.Fatalf("order %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestRebuildLabelsFollowHistory: while rebuilding (the subjects replay interleaved in no fixed
// order) the counters' detection follows the exact value, so every replay of one history ends
// with the same labels; after Rebuilt it stays at what it was when first observed.
func TestRebuildLabelsFollowHistory(t *testing.T) {
	d := doratest.Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: events.EnvironmentProduction,
		History: 51, Finished: doratest.Mar(19, 12, 0)}
	s, err := New(Options{Windows: defaultWindows, Benchmark: "dora2023", Now: func() time.Time { return doratest.Now }, Rebuilding: true})
	if err != nil {
		t.Fatal(err)
	}
	applyAny(t, s, []events.Event{d.Event(),
		doratest.Signal(d, events.DetectionDegraded, doratest.Mar(19, 12, 30), time.Time{}, ""),
		doratest.Signal(d, events.DetectionRollback, doratest.Mar(19, 12, 20), time.Time{}, "")})
	s.Rebuilt()
	applyAny(t, s, []events.Event{doratest.Signal(d, events.DetectionManual, doratest.Mar(19, 12, 10), time.Time{}, "")})
	got := pick(scrapeValues(t, s), "dora_change_failures_total", `detection="`)
	want := map[string]float64{}
	for _, det := range detections {
		want[sk("dora_change_failures_total", cp+fmt.Sprintf(",detection=%q", det))] = 0
	}
	want[sk("dora_change_failures_total", cp+`,detection="rollback"`)] = 1
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestFleetScenario adds the fleet (doratest.Fleet) to the golden scenario: three clusters of one
// checkout-api change count one deployment and, rolled back on one cluster, one failure; the cart
// change on two clusters and its GitOps revert (kind rollback, flagged revert) count one each, the
// inferred revert makes the change a failure and the revert rework with reason revert.
func TestFleetScenario(t *testing.T) {
	base := newState(t, "dora2023", defaultWindows...)
	applyAny(t, base, doratest.Scenario())
	fleet := newState(t, "dora2023", defaultWindows...)
	applyAny(t, fleet, append(doratest.Scenario(), doratest.Fleet()...))
	b, f := scrapeValues(t, base), scrapeValues(t, fleet)
	cart := `component="cart",environment="production",team="payments"`
	delta := map[string]float64{}
	for _, k := range []string{
		sk("dora_deployments_total", cp+`,kind="deploy",result="success"`),
		sk("dora_deployments_total", cart+`,kind="deploy",result="success"`),
		sk("dora_deployments_total", cart+`,kind="rollback",result="success"`),
		sk("dora_change_failures_total", cp+`,detection="rollback"`),
		sk("dora_change_failures_total", cart+`,detection="revert"`),
		sk("dora_rework_deployments_total", cart+`,reason="revert"`),
		sk("dora_rework_deployments_total", cart+`,reason="rollback"`),
		sk("doraflow_metrics_exporter_rollout_children_total", `environment="production",counted="true"`),
		sk("doraflow_metrics_exporter_rollout_children_total", `environment="production",counted="false"`),
	} {
		delta[k] = f[k] - b[k]
	}
	want := map[string]float64{
		sk("dora_deployments_total", cp+`,kind="deploy",result="success"`):                                 1,
		sk("dora_deployments_total", cart+`,kind="deploy",result="success"`):                               1,
		sk("dora_deployments_total", cart+`,kind="rollback",result="success"`):                             1,
		sk("dora_change_failures_total", cp+`,detection="rollback"`):                                       1,
		sk("dora_change_failures_total", cart+`,detection="revert"`):                                       1,
		sk("dora_rework_deployments_total", cart+`,reason="revert"`):                                       1,
		sk("dora_rework_deployments_total", cart+`,reason="rollback"`):                                     0,
		sk("doraflow_metrics_exporter_rollout_children_total", `environment="production",counted="true"`):  3,
		sk("doraflow_metrics_exporter_rollout_children_total", `environment="production",counted="false"`): 4,
	}
	if diff := cmp.Diff(want, delta); diff != "" {
		t.Errorf("what the fleet adds (-want +got):\n%s", diff)
	}
}
