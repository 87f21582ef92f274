package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

// TestServedCountersNeverReset scrapes the exporter's collector (state behind the guard) every
// hour for two days while five deployments fail (degraded), a rollback signal detected earlier
// than one of those arrives late, and an incident's severity changes; then it evaluates the scraped
// series with promtool test rules, next to the shipped rule files (which must load with them). No
// series ever decreases (no resets), so a user's increase() counts 5 failures; a decrease would be
// read as a counter reset and add the whole remaining count again. (The shipped DORA rules read the
// exact windowed gauges, not increase(): see deploy/monitoring/rules.)
func TestServedCountersNeverReset(t *testing.T) {
	promtool := filepath.Join(prometheusBin(t), "promtool")
	start := doratest.Mar(18, 0, 0)
	now := start
	st, err := dora.New(dora.Options{Windows: []time.Duration{24 * time.Hour}, Benchmark: "dora2023",
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	guard := dora.NewGuard(st)
	guard.Serve()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(guard)

	var deps []doratest.Dep
	at := map[int][]events.Event{}
	for i := range 5 {
		d := doratest.Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: events.EnvironmentProduction,
			History: int64(60 + i), Finished: start.Add(time.Duration(20+i) * time.Hour)}
		deps = append(deps, d)
		at[20+i] = append(at[20+i], d.Event())
		at[30] = append(at[30], doratest.Signal(d, events.DetectionDegraded, d.Finished.Add(30*time.Minute), time.Time{}, ""))
	}
	// Detected before the degraded signal, arriving later: the exact detection becomes rollback.
	at[32] = append(at[32], doratest.Signal(deps[0], events.DetectionRollback, deps[0].Finished.Add(10*time.Minute), time.Time{}, ""))
	inc := doratest.Incident{ID: "i-8", Key: "ITN-8", Team: "payments", Severity: "2", Change: events.IncidentOpened,
		Components: []string{"login"}, Created: start.Add(26 * time.Hour), Observed: start.Add(26 * time.Hour)}
	at[26] = append(at[26], inc.Event())
	inc.Severity, inc.Change, inc.Observed = "1", events.IncidentUpdated, start.Add(34*time.Hour)
	at[34] = append(at[34], inc.Event())

	const hours = 48
	samples := map[string][]string{} // series → value per hour ("_" while absent)
	for h := 0; h <= hours; h++ {
		now = start.Add(time.Duration(h) * time.Hour)
		for _, e := range at[h] {
			var err error
			switch e := e.(type) {
			case events.DeploymentEnriched:
				_, err = st.AddDeployment(e)
			case events.ChangeFailureSignal:
				_, err = st.AddSignal(e)
			case events.IncidentEnriched:
				_, err = st.AddIncident(e)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for series, v := range gatherText(t, reg) {
			if !strings.HasPrefix(series, "dora_change_failures_total") && !strings.HasPrefix(series, "dora_incidents_total") {
				continue
			}
			if samples[series] == nil {
				samples[series] = slices.Repeat([]string{"_"}, hours+1)
			}
			samples[series][h] = fmt.Sprint(v)
		}
	}
	var in strings.Builder
	keys := make([]string, 0, len(samples))
	for k := range samples {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&in, "      - series: '%s'\n        values: '%s'\n", k, strings.Join(samples[k], " "))
	}
	rules, err := filepath.Abs(filepath.Join(monitoringDir, ruleFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	test := fmt.Sprintf(`rule_files:
  - %s
evaluation_interval: 1h
tests:
  - interval: 1h
    input_series:
%s    promql_expr_test:
      - expr: sum by (component, team, environment) (increase(dora_change_failures_total[1d]))
        eval_time: 48h
        exp_samples:
          - labels: '{component="checkout-api",team="payments",environment="production"}'
            value: 5
      - expr: sum(resets(dora_change_failures_total[2d])) + sum(resets(dora_incidents_total[2d]))
        eval_time: 48h
        exp_samples:
          - labels: '{}'
            value: 0
      - expr: sum(dora_incidents_total)
        eval_time: 48h
        exp_samples:
          - labels: '{}'
            value: 1
`, rules, in.String())
	path := filepath.Join(t.TempDir(), "served.test.yaml")
	if err := os.WriteFile(path, []byte(test), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, promtool, "test", "rules", path)
	if t.Failed() {
		t.Logf("rule test:\n%s", test)
	}
}

// gatherText gathers reg and returns its sample lines by series, as text exposition names them.
func gatherText(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
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
	return parseExposition(t, b.String(), nil).values
}
