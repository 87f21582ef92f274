package dora

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

var update = flag.Bool("update", false, "rewrite golden files")

const day = 24 * time.Hour

// DefaultWindows are the exporter's default windows.
var defaultWindows = []time.Duration{day, 7 * day, 30 * day, 90 * day}

func newState(t testing.TB, benchmark string, windows ...time.Duration) *State {
	t.Helper()
	s, err := New(Options{Windows: windows, Benchmark: benchmark, Now: func() time.Time { return doratest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t testing.TB, s *State, evs []events.Event) {
	t.Helper()
	for _, e := range evs {
		var err error
		switch e := e.(type) {
		case events.DeploymentEnriched:
			_, err = s.AddDeployment(e)
		case events.IncidentEnriched:
			_, err = s.AddIncident(e)
		case events.ChangeFailureSignal:
			_, err = s.AddSignal(e)
		default:
			err = fmt.Errorf("unexpected %T", e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestScenarioHandWorked checks the scenario (doratest) against values worked out by hand. Times are
// March 2026 UTC; the windows end at Mar 22 00:00. The arithmetic is in the comments; the test uses
// the 7d and 30d windows to keep the expected text readable (1d and 90d are in the golden file).
//
// Qualifying deployments (successful, not redeploys) and their facts:
//
//	checkout-api/production: D1 Mar 2 10:00, D2 Mar 5 12:00 (degraded 12:10, healthy 12:40),
//	  D3 Mar 9 09:00 (INC1 10:00–15:00, enricher link), D4 Mar 9 13:00 (hotfix: INC1 open),
//	  D5 Mar 15 10:00 (rolled back by D6 at 11:00), D6 Mar 15 11:00 (rollback), D7 Mar 20 10:00.
//	  Not counted: F1 Mar 12 (failed sync), D8 Mar 21 (redeploy).
//	checkout-api/staging: S1 Mar 2 08:00, S2 Mar 14 23:00.
//	cart/production: C1 Mar 3 10:00, C2 Mar 10 10:00 (no commits; reverted by C3), C3 Mar 17 10:00
//	  (the revert: rework; INC2 Mar 18 12:00 attributed to it by the exporter's fallback, open).
//	login/production: L1 Mar 1 12:00, L2 Mar 21 12:00. INC3 (Feb 25) predates L1: unlinked.
//
// Change lead times per commit (first deployment to the environment − commit start):
//
//	checkout prod: c1 Mar1 10:00→D1 = 86400; c2 squash, PR first commit Feb 28 10:00→D1 = 172800;
//	  c3 Mar5 11:00→D2 = 3600; c4 Mar8 09:00→D3 = 86400; c5 Mar9 12:00→D4 = 3600;
//	  c6 Mar14 22:00→D5 = 43200 (D7 repeats c6: not a new sample); c7 Mar19 10:00→D7 = 86400.
//	checkout staging: c1→S1 = 79200; c2→S1 = 165600; c6→S2 = 3600.
//	cart: k1 Mar3 09:30→C1 = 1800; k2 Mar16 10:00→C3 = 86400.
//	login: m1 Feb20 12:00→L1 = 777600; m2 Mar21 06:00→L2 = 21600; m3 no time; m4 after L2: skipped.
//
// Recovery times: D2 12:00→12:40 = 2400; D3 09:00→INC1 resolved 15:00 = 21600; D5 10:00→rollback
// 11:00 = 3600; C2 Mar10 10:00→revert Mar17 10:00 = 604800; C3 unrecovered.
func TestScenarioHandWorked(t *testing.T) {
	s := newState(t, "dora2023", 7*day, 30*day)
	apply(t, s, doratest.Scenario())

	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{"deployments", []string{"dora_deployments_total", "dora_deployment_dates_total",
			"dora_last_deployment_timestamp_seconds", "doraflow_metrics_exporter_deployments_without_commits_total"}, `
# HELP dora_deployments_total Deployments (one per logical deployment), by kind (deploy, redeploy, rollback) and result (success, failure).
# TYPE dora_deployments_total counter
dora_deployments_total{component="cart",environment="production",kind="deploy",result="failure",team="payments"} 0
dora_deployments_total{component="cart",environment="production",kind="deploy",result="success",team="payments"} 3
dora_deployments_total{component="cart",environment="production",kind="redeploy",result="success",team="payments"} 0
dora_deployments_total{component="cart",environment="production",kind="rollback",result="failure",team="payments"} 0
dora_deployments_total{component="cart",environment="production",kind="rollback",result="success",team="payments"} 0
dora_deployments_total{component="checkout-api",environment="production",kind="deploy",result="failure",team="payments"} 1
dora_deployments_total{component="checkout-api",environment="production",kind="deploy",result="success",team="payments"} 6
dora_deployments_total{component="checkout-api",environment="production",kind="redeploy",result="success",team="payments"} 1
dora_deployments_total{component="checkout-api",environment="production",kind="rollback",result="failure",team="payments"} 0
dora_deployments_total{component="checkout-api",environment="production",kind="rollback",result="success",team="payments"} 1
dora_deployments_total{component="checkout-api",environment="staging",kind="deploy",result="failure",team="payments"} 0
dora_deployments_total{component="checkout-api",environment="staging",kind="deploy",result="success",team="payments"} 2
dora_deployments_total{component="checkout-api",environment="staging",kind="redeploy",result="success",team="payments"} 0
dora_deployments_total{component="checkout-api",environment="staging",kind="rollback",result="failure",team="payments"} 0
dora_deployments_total{component="checkout-api",environment="staging",kind="rollback",result="success",team="payments"} 0
dora_deployments_total{component="login",environment="production",kind="deploy",result="failure",team="identity"} 0
dora_deployments_total{component="login",environment="production",kind="deploy",result="success",team="identity"} 2
dora_deployments_total{component="login",environment="production",kind="redeploy",result="success",team="identity"} 0
dora_deployments_total{component="login",environment="production",kind="rollback",result="failure",team="identity"} 0
dora_deployments_total{component="login",environment="production",kind="rollback",result="success",team="identity"} 0
# HELP dora_deployment_dates_total Distinct UTC days with at least one successful non-redeploy deployment (DevLake's deployment days).
# TYPE dora_deployment_dates_total counter
dora_deployment_dates_total{component="cart",environment="production",team="payments"} 3
dora_deployment_dates_total{component="checkout-api",environment="production",team="payments"} 5
dora_deployment_dates_total{component="checkout-api",environment="staging",team="payments"} 2
dora_deployment_dates_total{component="login",environment="production",team="identity"} 2
# HELP dora_last_deployment_timestamp_seconds Finish time of the newest successful non-redeploy deployment, as a Unix time (for staleness alerts).
# TYPE dora_last_deployment_timestamp_seconds gauge
dora_last_deployment_timestamp_seconds{component="cart",environment="production",team="payments"} 1.7737416e+09
dora_last_deployment_timestamp_seconds{component="checkout-api",environment="production",team="payments"} 1.7740008e+09
dora_last_deployment_timestamp_seconds{component="checkout-api",environment="staging",team="payments"} 1.7735292e+09
dora_last_deployment_timestamp_seconds{component="login",environment="production",team="identity"} 1.7740944e+09
# HELP doraflow_metrics_exporter_deployments_without_commits_total Successful deploy-kind deployments expected to carry commit data (not first deployments, not a later cluster's copy of a change under rollout policy each) that carried none, so no lead time.
# TYPE doraflow_metrics_exporter_deployments_without_commits_total counter
doraflow_metrics_exporter_deployments_without_commits_total{component="cart",environment="production",team="payments"} 1
doraflow_metrics_exporter_deployments_without_commits_total{component="checkout-api",environment="production",team="payments"} 0
doraflow_metrics_exporter_deployments_without_commits_total{component="checkout-api",environment="staging",team="payments"} 0
doraflow_metrics_exporter_deployments_without_commits_total{component="login",environment="production",team="identity"} 0
`},
		{"failures", []string{"dora_change_failures_total", "dora_change_failure_signals_total",
			"dora_rework_deployments_total", "dora_failed_deployments_unrecovered"}, `
# HELP dora_change_failures_total Successful non-redeploy deployments that became change failures, by detection (the first-detected signal when the deployment became a failure; ties go to the strongest).
# TYPE dora_change_failures_total counter
dora_change_failures_total{component="cart",detection="degraded",environment="production",team="payments"} 0
dora_change_failures_total{component="cart",detection="incident",environment="production",team="payments"} 1
dora_change_failures_total{component="cart",detection="manual",environment="production",team="payments"} 0
dora_change_failures_total{component="cart",detection="revert",environment="production",team="payments"} 1
dora_change_failures_total{component="cart",detection="rollback",environment="production",team="payments"} 0
dora_change_failures_total{component="cart",detection="sync_failed",environment="production",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="degraded",environment="production",team="payments"} 1
dora_change_failures_total{component="checkout-api",detection="incident",environment="production",team="payments"} 1
dora_change_failures_total{component="checkout-api",detection="manual",environment="production",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="revert",environment="production",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="rollback",environment="production",team="payments"} 1
dora_change_failures_total{component="checkout-api",detection="sync_failed",environment="production",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="degraded",environment="staging",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="incident",environment="staging",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="manual",environment="staging",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="revert",environment="staging",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="rollback",environment="staging",team="payments"} 0
dora_change_failures_total{component="checkout-api",detection="sync_failed",environment="staging",team="payments"} 0
dora_change_failures_total{component="login",detection="degraded",environment="production",team="identity"} 0
dora_change_failures_total{component="login",detection="incident",environment="production",team="identity"} 0
dora_change_failures_total{component="login",detection="manual",environment="production",team="identity"} 0
dora_change_failures_total{component="login",detection="revert",environment="production",team="identity"} 0
dora_change_failures_total{component="login",detection="rollback",environment="production",team="identity"} 0
dora_change_failures_total{component="login",detection="sync_failed",environment="production",team="identity"} 0
# HELP dora_change_failure_signals_total Change-failure evidence per deployment and signal type (incident, rollback, revert, degraded, sync_failed, manual): counts each type once per deployment.
# TYPE dora_change_failure_signals_total counter
dora_change_failure_signals_total{component="cart",environment="production",signal="incident",team="payments"} 1
dora_change_failure_signals_total{component="cart",environment="production",signal="revert",team="payments"} 1
dora_change_failure_signals_total{component="checkout-api",environment="production",signal="degraded",team="payments"} 1
dora_change_failure_signals_total{component="checkout-api",environment="production",signal="incident",team="payments"} 1
dora_change_failure_signals_total{component="checkout-api",environment="production",signal="rollback",team="payments"} 1
# HELP dora_rework_deployments_total Deployments that were rework, by reason (rollback, revert, hotfix: a production deploy while an incident on the component was open).
# TYPE dora_rework_deployments_total counter
dora_rework_deployments_total{component="cart",environment="production",reason="hotfix",team="payments"} 0
dora_rework_deployments_total{component="cart",environment="production",reason="revert",team="payments"} 1
dora_rework_deployments_total{component="cart",environment="production",reason="rollback",team="payments"} 0
dora_rework_deployments_total{component="checkout-api",environment="production",reason="hotfix",team="payments"} 1
dora_rework_deployments_total{component="checkout-api",environment="production",reason="revert",team="payments"} 0
dora_rework_deployments_total{component="checkout-api",environment="production",reason="rollback",team="payments"} 1
dora_rework_deployments_total{component="checkout-api",environment="staging",reason="hotfix",team="payments"} 0
dora_rework_deployments_total{component="checkout-api",environment="staging",reason="revert",team="payments"} 0
dora_rework_deployments_total{component="checkout-api",environment="staging",reason="rollback",team="payments"} 0
dora_rework_deployments_total{component="login",environment="production",reason="hotfix",team="identity"} 0
dora_rework_deployments_total{component="login",environment="production",reason="revert",team="identity"} 0
dora_rework_deployments_total{component="login",environment="production",reason="rollback",team="identity"} 0
# HELP dora_failed_deployments_unrecovered Change failures with no recovery yet.
# TYPE dora_failed_deployments_unrecovered gauge
dora_failed_deployments_unrecovered{component="cart",environment="production",team="payments"} 1
dora_failed_deployments_unrecovered{component="checkout-api",environment="production",team="payments"} 0
dora_failed_deployments_unrecovered{component="checkout-api",environment="staging",team="payments"} 0
dora_failed_deployments_unrecovered{component="login",environment="production",team="identity"} 0
`},
		{"recovery histograms", []string{"dora_failed_deployment_recovery_seconds"}, `
# HELP dora_failed_deployment_recovery_seconds Failed deployment recovery time (DORA 2023+): the failed deployment's finish to its recovery, by detection.
# TYPE dora_failed_deployment_recovery_seconds histogram
` + histText("dora_failed_deployment_recovery_seconds", `component="cart",detection="revert",environment="production",team="payments"`, 604800) +
			histText("dora_failed_deployment_recovery_seconds", `component="checkout-api",detection="degraded",environment="production",team="payments"`, 2400) +
			histText("dora_failed_deployment_recovery_seconds", `component="checkout-api",detection="incident",environment="production",team="payments"`, 21600) +
			histText("dora_failed_deployment_recovery_seconds", `component="checkout-api",detection="rollback",environment="production",team="payments"`, 3600)},
		{"lead time histograms", []string{"dora_change_lead_time_seconds", "dora_deployment_lead_time_seconds"}, `
# HELP dora_change_lead_time_seconds Change lead time per commit: commit (its pull request's first commit when known) to the first successful deployment to this environment that contains it.
# TYPE dora_change_lead_time_seconds histogram
` + histText("dora_change_lead_time_seconds", `component="cart",environment="production",team="payments"`, 1800, 86400) +
			// 86400 + 172800 + 3600 + 86400 + 3600 + 43200 + 86400 = 482400
			histText("dora_change_lead_time_seconds", `component="checkout-api",environment="production",team="payments"`,
				86400, 172800, 3600, 86400, 3600, 43200, 86400) +
			histText("dora_change_lead_time_seconds", `component="checkout-api",environment="staging",team="payments"`, 79200, 165600, 3600) +
			histText("dora_change_lead_time_seconds", `component="login",environment="production",team="identity"`, 777600, 21600) + `
# HELP dora_deployment_lead_time_seconds Lead time per deployment: its oldest newly deployed commit to the deployment's finish.
# TYPE dora_deployment_lead_time_seconds histogram
` + histText("dora_deployment_lead_time_seconds", `component="cart",environment="production",team="payments"`, 1800, 86400) +
			// D1 oldest c2 172800, D2 3600, D3 86400, D4 3600, D5 43200, D7 oldest c6 Mar14 22:00→Mar20 10:00 = 475200.
			histText("dora_deployment_lead_time_seconds", `component="checkout-api",environment="production",team="payments"`,
				172800, 3600, 86400, 3600, 43200, 475200) +
			histText("dora_deployment_lead_time_seconds", `component="checkout-api",environment="staging",team="payments"`, 165600, 3600) +
			histText("dora_deployment_lead_time_seconds", `component="login",environment="production",team="identity"`, 777600, 21600)},
		{"incidents", []string{"dora_incidents_total", "dora_incidents_open", "dora_incident_restore_seconds"}, `
# HELP dora_incidents_total Incidents (one per incident, labelled from its first observed state).
# TYPE dora_incidents_total counter
dora_incidents_total{component="cart",severity="1",source="webrca",team="payments"} 1
dora_incidents_total{component="checkout-api",severity="2",source="webrca",team="payments"} 1
dora_incidents_total{component="login",severity="3",source="webrca",team="identity"} 1
# HELP dora_incidents_open Incidents not resolved in their latest state, labelled from that state.
# TYPE dora_incidents_open gauge
dora_incidents_open{component="cart",severity="1",source="webrca",team="payments"} 1
dora_incidents_open{component="checkout-api",severity="2",source="webrca",team="payments"} 0
dora_incidents_open{component="login",severity="3",source="webrca",team="identity"} 0
# HELP dora_incident_restore_seconds Classic time to restore service (MTTR, DORA 2021): incident created to resolved, once per incident (its first resolved state), labelled from its first observed state. Not failed deployment recovery time.
# TYPE dora_incident_restore_seconds histogram
` + histText("dora_incident_restore_seconds", `component="cart",severity="1",source="webrca",team="payments"`) +
			// INC1 10:00→15:00 = 18000; INC3 Feb 25 10:00→12:00 = 7200.
			histText("dora_incident_restore_seconds", `component="checkout-api",severity="2",source="webrca",team="payments"`, 18000) +
			histText("dora_incident_restore_seconds", `component="login",severity="3",source="webrca",team="identity"`, 7200)},
		{"windows", []string{"dora_window_deployments", "dora_window_deployments_per_day", "dora_window_deployment_dates",
			"dora_window_change_lead_time_median_seconds", "dora_window_change_fail_ratio",
			"dora_window_failed_deployment_recovery_median_seconds", "dora_window_rework_ratio"}, windowsWant},
		{"levels", []string{"dora_performance_level", "doraflow_metrics_exporter_benchmark_info"}, levelsWant},
		{"quality", []string{"doraflow_metrics_exporter_deployment_quality_flags_total",
			"doraflow_metrics_exporter_deployments_excluded_total", "doraflow_metrics_exporter_signal_deployments",
			"doraflow_metrics_exporter_commits", "doraflow_metrics_exporter_incidents", "doraflow_metrics_exporter_state_objects",
			"doraflow_metrics_exporter_evaluation_timestamp_seconds"}, qualityWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := testutil.CollectAndCompare(s, strings.NewReader(tt.want), tt.names...); err != nil {
				t.Error(err)
			}
		})
	}
}

// histText renders the exposition of a classic histogram of values (seconds) over Buckets, so the
// expected bucket counts follow from the listed samples.
func histText(name, labels string, values ...float64) string {
	var b strings.Builder
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	for _, le := range append(slices.Clone(Buckets), 0) {
		n, leText := 0, "+Inf"
		for _, v := range values {
			if le == 0 || v <= le {
				n++
			}
		}
		if le != 0 {
			leText = fmt.Sprint(le)
		}
		fmt.Fprintf(&b, "%s_bucket{%s,le=%q} %d\n", name, labels, leText, n)
	}
	fmt.Fprintf(&b, "%s_sum{%s} %v\n%s_count{%s} %d\n", name, labels, sum, name, labels, len(values))
	return b.String()
}

// exposition gathers the state through a pedantic registry and renders it in the protobuf text
// format, which includes native buckets and exemplars.
func exposition(t testing.TB, s prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoText))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestScenarioGolden pins the whole exposition of the scenario with the default windows, and lints
// it with promlint.
func TestScenarioGolden(t *testing.T) {
	for _, bench := range BenchmarkNames() {
		t.Run(bench, func(t *testing.T) {
			s := newState(t, bench, defaultWindows...)
			apply(t, s, doratest.Scenario())
			golden := filepath.Join("testdata", "scenario-"+bench+".prom")
			if *update {
				reg := prometheus.NewPedanticRegistry()
				reg.MustRegister(s)
				mfs, err := reg.Gather()
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
				for _, mf := range mfs {
					if err := enc.Encode(mf); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.Open(golden)
			if err != nil {
				t.Fatalf("open golden (go test -update writes it): %v", err)
			}
			defer f.Close()
			if err := testutil.CollectAndCompare(s, f); err != nil {
				t.Error(err)
			}
			lintClean(t, s)
		})
	}
}

// lintClean fails the test on any promlint problem of c's metrics.
func lintClean(t *testing.T, c prometheus.Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestOrderIndependence applies the scenario in many orders, and in two halves with a scrape in
// between: the exposition (native buckets and exemplars included) is always the same, except that
// the counters whose label is fixed when a deployment first became a failure or rework (detection,
// reason: README "Counter semantics") are compared summed over that label.
func TestOrderIndependence(t *testing.T) {
	for name, evs := range map[string][]events.Event{"scenario": doratest.Scenario(),
		"scenario+fleet": append(doratest.Scenario(), doratest.Fleet()...)} {
		t.Run(name, func(t *testing.T) { orderIndependence(t, evs) })
	}
}

func orderIndependence(t *testing.T, evs []events.Event) {
	ref := newState(t, "dora2023", defaultWindows...)
	applyAny(t, ref, evs)
	want, wantSticky := exposition(t, withoutSticky{ref}), stickySums(t, ref)

	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 25 {
		perm := slices.Clone(evs)
		name := fmt.Sprintf("shuffle-%d", i)
		if i == 0 {
			slices.Reverse(perm)
			name = "reversed"
		} else {
			rnd.Shuffle(len(perm), func(a, b int) { perm[a], perm[b] = perm[b], perm[a] })
		}
		t.Run(name, func(t *testing.T) {
			s := newState(t, "dora2023", defaultWindows...)
			applyAny(t, s, perm[:len(perm)/2])
			_ = exposition(t, s) // a scrape in between changes nothing
			applyAny(t, s, perm[len(perm)/2:])
			if diff := cmp.Diff(want, exposition(t, withoutSticky{s})); diff != "" {
				t.Errorf("exposition differs from publication order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantSticky, stickySums(t, s)); diff != "" {
				t.Errorf("sums over the first-observation labels differ (-want +got):\n%s", diff)
			}
		})
	}
}

// sticky are the families whose detection or reason label is fixed at first observation.
var sticky = map[*prometheus.Desc]string{descFailures: "detection", descFDRT: "detection", descRework: "reason"}

// withoutSticky is a State's collector without the sticky families.
type withoutSticky struct{ s *State }

func (w withoutSticky) Describe(ch chan<- *prometheus.Desc) { w.s.Describe(ch) }

func (w withoutSticky) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { w.s.Collect(all); close(all) }()
	for m := range all {
		if _, ok := sticky[m.Desc()]; !ok {
			ch <- m
		}
	}
}

// stickySums returns the sticky families' values summed over their sticky label.
func stickySums(t *testing.T, s *State) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, v := range scrapeValues(t, s) {
		for _, label := range []string{"detection", "reason"} {
			if !strings.HasPrefix(k, "dora_change_failures_total") && !strings.HasPrefix(k, "dora_failed_deployment_recovery_seconds") &&
				!strings.HasPrefix(k, "dora_rework_deployments_total") {
				continue
			}
			if i := strings.Index(k, label+"="); i >= 0 {
				j := i + len(label) + 2 + strings.IndexByte(k[i+len(label)+2:], '"') + 1
				k = k[:i] + k[j:]
				out[k] += v
			}
		}
	}
	return out
}
