package dora

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

// withLabel returns a scraped series key with one more label, kept in sorted order.
func withLabel(key, label, value string) string {
	name, labels, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
	return sk(name, labels+fmt.Sprintf(",%s=%q", label, value))
}

// TestWindowBreakdownsSumToNumerators: for every window and scope of the scenario (with and
// without the fleet), dora_window_change_failures summed over detection is the change fail ratio's
// numerator and dora_window_rework_deployments summed over reason the rework ratio's; every value
// of the label is served wherever dora_window_deployments is, 0 included.
func TestWindowBreakdownsSumToNumerators(t *testing.T) {
	for name, evs := range map[string][]events.Event{"scenario": doratest.Scenario(),
		"scenario+fleet": append(doratest.Scenario(), doratest.Fleet()...)} {
		t.Run(name, func(t *testing.T) {
			s := newState(t, "dora2023", defaultWindows...)
			applyAny(t, s, evs)
			all := scrapeValues(t, s)
			checked := 0
			for key, deployments := range pick(all, "dora_window_deployments{") {
				labels := strings.TrimPrefix(key, "dora_window_deployments")
				for _, b := range []struct {
					breakdown, ratio, label string
					values                  []string
				}{
					{"dora_window_change_failures", "dora_window_change_fail_ratio", "detection", detectionNames()},
					{"dora_window_rework_deployments", "dora_window_rework_ratio", "reason", reworkReasons},
				} {
					sum := 0.0
					for _, v := range b.values {
						n, ok := all[withLabel(b.breakdown+labels, b.label, v)]
						if !ok {
							t.Errorf("%s%s: no %s=%q series", b.breakdown, labels, b.label, v)
						}
						sum += n
					}
					want := 0.0
					if ratio, ok := all[b.ratio+labels]; ok {
						want = math.Round(ratio * deployments)
					} else if deployments > 0 {
						t.Errorf("%s%s missing with %v deployments", b.ratio, labels, deployments)
					}
					if sum != want {
						t.Errorf("%s%s summed over %s = %v, want the ratio's numerator %v", b.breakdown, labels, b.label, sum, want)
					}
					checked++
				}
			}
			if checked == 0 {
				t.Fatal("no dora_window_deployments series")
			}
		})
	}
}

func detectionNames() []string {
	out := make([]string, len(detections))
	for i, d := range detections {
		out[i] = string(d)
	}
	return out
}

// TestWindowBreakdownsHandWorked checks the breakdowns against the scenario's hand-worked facts
// (TestScenarioHandWorked): 30d checkout-api/production fails D2 (degraded), D3 (incident, INC1)
// and D5 (rollback), its rework is D4 (hotfix) and D6 (rollback); 7d keeps D5 and D6. cart fails
// C2 (revert) and C3 (incident, INC2); C3 is rework (revert). Team payments adds them up.
func TestWindowBreakdownsHandWorked(t *testing.T) {
	s := newState(t, "dora2023", 7*day, 30*day)
	apply(t, s, doratest.Scenario())
	all := scrapeValues(t, s)
	w := func(scope, component, team, window string) string {
		return fmt.Sprintf("component=%q,environment=\"production\",scope=%q,team=%q,window=%q", component, scope, team, window)
	}
	checkout30, checkout7 := w("component", "checkout-api", "payments", "30d"), w("component", "checkout-api", "payments", "7d")
	cart30, team30 := w("component", "cart", "payments", "30d"), w("team", "", "payments", "30d")
	want := map[string]float64{}
	set := func(name, labels, label string, values []string, nonzero map[string]float64) {
		for _, v := range values {
			want[sk(name, labels+fmt.Sprintf(",%s=%q", label, v))] = nonzero[v]
		}
	}
	f, r := "dora_window_change_failures", "dora_window_rework_deployments"
	set(f, checkout30, "detection", detectionNames(), map[string]float64{"degraded": 1, "incident": 1, "rollback": 1})
	set(f, checkout7, "detection", detectionNames(), map[string]float64{"rollback": 1})
	set(f, cart30, "detection", detectionNames(), map[string]float64{"revert": 1, "incident": 1})
	set(f, team30, "detection", detectionNames(), map[string]float64{"degraded": 1, "incident": 2, "rollback": 1, "revert": 1})
	set(r, checkout30, "reason", reworkReasons, map[string]float64{"hotfix": 1, "rollback": 1})
	set(r, checkout7, "reason", reworkReasons, map[string]float64{"rollback": 1})
	set(r, cart30, "reason", reworkReasons, map[string]float64{"revert": 1})
	set(r, team30, "reason", reworkReasons, map[string]float64{"hotfix": 1, "rollback": 1, "revert": 1})
	got := map[string]float64{}
	for k := range want {
		if v, ok := all[k]; ok {
			got[k] = v
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("windowed breakdowns (-want +got):\n%s", diff)
	}
}

// eachCluster is one cluster's deployment of payments-api under rollout policy each: every cluster
// counts as its own deployment (logical ID = own ID), and the change's commits stay with the first.
func eachCluster(cluster string, finished time.Time, fingerprint string, commits ...events.Commit) doratest.Dep {
	d := doratest.Dep{App: "payments-api-" + cluster, Component: "payments-api", Team: "payments",
		Env: events.EnvironmentProduction, History: finished.Unix(), Finished: finished, Cluster: cluster, Commits: commits}
	d.Rollout = &events.Rollout{LogicalID: d.ID(), Policy: events.RolloutEach, Fingerprint: fingerprint, Counted: true,
		Clusters: []string{cluster}, Complete: true, StartedAt: finished.Add(-2 * time.Minute), FirstFinishedAt: finished}
	return d
}

// TestCommitData: dora_window_commit_data_ratio and deployments_without_commits_total count only the
// deployments expected to carry commit data. Not expected: a first deployment (no range by design)
// and, under policy each, a later cluster's deployment of a fingerprint an earlier counted
// deployment already carried (the enricher keeps a change's commits with its first cluster). A
// deployment whose commits could not be fetched is expected, and counted as missing. In every
// arrival order.
func TestCommitData(t *testing.T) {
	pay := `component="payments-api",environment="production",team="payments"`
	without := sk("doraflow_metrics_exporter_deployments_without_commits_total", pay)
	// ratio is the served ratio of payments-api, its team and the organisation, which are the same.
	ratio := func(v float64) map[string]float64 {
		out := map[string]float64{without: 0}
		for _, l := range []string{`component="payments-api",scope="component",team="payments"`,
			`component="",scope="team",team="payments"`, `component="",scope="organization",team=""`} {
			out[sk("dora_window_commit_data_ratio", l+`,environment="production",window="7d"`)] = v
		}
		return out
	}
	missingOne := func(m map[string]float64) map[string]float64 { m[without] = 1; return m }
	at := doratest.Mar(18, 10, 0)
	commit := func(name string, at time.Time) events.Commit { return doratest.Commit(name, "payments-api", at) }
	missing := func(d doratest.Dep) doratest.Dep {
		d.Commits, d.Quality = nil, []events.QualityFlag{events.QualityRepoNotFound}
		return d
	}
	first := func(d doratest.Dep) doratest.Dep {
		d.Commits, d.Quality, d.Rollout = nil, []events.QualityFlag{events.QualityFirstDeployment}, nil
		return d
	}
	tests := []struct {
		name string
		deps []doratest.Dep
		want map[string]float64 // absent: the series must not exist
	}{
		{"two clusters under each, one change: only the first carries commits", []doratest.Dep{
			eachCluster("eu", at, "fp-1", commit("p1", at.Add(-time.Hour))),
			eachCluster("us", at.Add(5*time.Minute), "fp-1"),
		}, ratio(1)},
		{"two changes on two clusters under each", []doratest.Dep{
			eachCluster("eu", at, "fp-1", commit("p1", at.Add(-time.Hour))),
			eachCluster("us", at.Add(5*time.Minute), "fp-1"),
			eachCluster("us", at.Add(time.Hour), "fp-2", commit("p2", at.Add(30*time.Minute))),
			eachCluster("eu", at.Add(time.Hour+5*time.Minute), "fp-2"),
		}, ratio(1)},
		{"a first deployment is not expected to carry commits", []doratest.Dep{
			first(eachCluster("eu", at, "")),
		}, map[string]float64{without: 0}},
		{"commits that could not be fetched are missing", []doratest.Dep{
			missing(eachCluster("eu", at, "")),
		}, missingOne(ratio(0))},
		{"a missing change under each is missing once, not once per cluster", []doratest.Dep{
			missing(eachCluster("eu", at, "fp-1")),
			missing(eachCluster("us", at.Add(5*time.Minute), "fp-1")),
			eachCluster("eu", at.Add(time.Hour), "fp-2", commit("p2", at.Add(30*time.Minute))),
		}, missingOne(ratio(0.5))},
		{"without a fingerprint every cluster's deployment is its own change", []doratest.Dep{
			eachCluster("eu", at, "", commit("p1", at.Add(-time.Hour))),
			missing(eachCluster("us", at.Add(5*time.Minute), "")),
		}, missingOne(ratio(0.5))},
		{"a rollback is not a deploy", []doratest.Dep{
			eachCluster("eu", at, "", commit("p1", at.Add(-time.Hour))),
			func() doratest.Dep {
				d := eachCluster("eu", at.Add(time.Hour), "")
				d.Kind = events.KindRollback
				return d
			}(),
		}, ratio(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evs []events.Event
			for _, d := range tt.deps {
				evs = append(evs, d.Event())
			}
			for i, order := range orders(evs, 5) {
				s := newState(t, "dora2023", 7*day)
				apply(t, s, order)
				all := scrapeValues(t, s)
				got := map[string]float64{}
				for k, v := range pick(all, "commit_data_ratio") {
					got[k] = v
				}
				got[without] = all[without]
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("order %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestCommitDataScenario: in the scenario, D1, S1 and L1 are first deployments (not expected), C2
// has no commits (no_app_sha: missing), D6 is a rollback. 30d production: checkout D2–D5, D7 carry
// commits (5/5), cart C1, C3 of C1–C3 (2/3), login L2 (1/1), organisation 8/9; 7d: D5, D7, C3, L2
// carry; staging 7d has no deployment, so no ratio.
func TestCommitDataScenario(t *testing.T) {
	s := newState(t, "dora2023", 7*day, 30*day)
	apply(t, s, doratest.Scenario())
	w := func(scope, component, team, env, window string) string {
		return sk("dora_window_commit_data_ratio",
			fmt.Sprintf("component=%q,environment=%q,scope=%q,team=%q,window=%q", component, env, scope, team, window))
	}
	want := map[string]float64{
		w("component", "checkout-api", "payments", "production", "30d"): 1,
		w("component", "checkout-api", "payments", "production", "7d"):  1,
		w("component", "checkout-api", "payments", "staging", "30d"):    1,
		w("component", "cart", "payments", "production", "30d"):         2.0 / 3,
		w("component", "cart", "payments", "production", "7d"):          1,
		w("component", "login", "identity", "production", "30d"):        1,
		w("component", "login", "identity", "production", "7d"):         1,
		w("team", "", "payments", "production", "30d"):                  7.0 / 8,
		w("team", "", "payments", "production", "7d"):                   1,
		w("team", "", "payments", "staging", "30d"):                     1,
		w("team", "", "identity", "production", "30d"):                  1,
		w("team", "", "identity", "production", "7d"):                   1,
		w("organization", "", "", "production", "30d"):                  8.0 / 9,
		w("organization", "", "", "production", "7d"):                   1,
		w("organization", "", "", "staging", "30d"):                     1,
	}
	if diff := cmp.Diff(want, pick(scrapeValues(t, s), "dora_window_commit_data_ratio")); diff != "" {
		t.Errorf("commit data ratios (-want +got):\n%s", diff)
	}
}
