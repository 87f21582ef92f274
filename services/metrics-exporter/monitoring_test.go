package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

const monitoringDir = "../../deploy/monitoring"

var (
	ruleFiles     = []string{"rules/dora-recording.rules.yaml", "rules/dora-alerts.rules.yaml", "rules/doraflow-integrations.rules.yaml"}
	dashboardFile = "dashboards/doraflow-dora.json"
)

// prometheusBin returns the directory holding prometheus and promtool: PROMETHEUS_BIN_DIR, or the
// directory of promtool on PATH (hack/prometheus.sh installs them). Without them the test skips,
// except in CI, where it fails.
func prometheusBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PROMETHEUS_BIN_DIR")
	if dir == "" {
		if p, err := exec.LookPath("promtool"); err == nil {
			dir = filepath.Dir(p)
		}
	}
	for _, b := range []string{"prometheus", "promtool"} {
		if _, err := os.Stat(filepath.Join(dir, b)); dir == "" || err != nil {
			msg := "prometheus and promtool not found: set PROMETHEUS_BIN_DIR=$(hack/prometheus.sh | tail -n1)"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
}

func runTool(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = monitoringDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// TestRuleFiles checks the rule files with promtool and runs their unit tests (deploy/monitoring/tests).
func TestRuleFiles(t *testing.T) {
	promtool := filepath.Join(prometheusBin(t), "promtool")
	runTool(t, promtool, append([]string{"check", "rules"}, ruleFiles...)...)
	if testing.Short() {
		t.Skip("promtool test rules takes ~20 s")
	}
	tests, err := filepath.Glob(filepath.Join(monitoringDir, "tests", "*.test.yaml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in %s/tests: %v", monitoringDir, err)
	}
	for _, f := range tests {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			runTool(t, promtool, "test", "rules", filepath.Join("tests", filepath.Base(f)))
		})
	}
}

// TestPrometheusRuleMatchesRuleFiles requires the PrometheusRule manifest to carry exactly the
// groups of the plain rule files.
func TestPrometheusRuleMatchesRuleFiles(t *testing.T) {
	var want []any
	for _, f := range ruleFiles {
		var doc struct{ Groups []any }
		readYAML(t, filepath.Join(monitoringDir, f), &doc)
		want = append(want, doc.Groups...)
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string
		Spec       struct{ Groups []any }
	}
	readYAML(t, filepath.Join(monitoringDir, "prometheusrule.yaml"), &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("prometheusrule.yaml is %s %s", pr.APIVersion, pr.Kind)
	}
	if diff := cmp.Diff(want, pr.Spec.Groups); diff != "" {
		t.Errorf("prometheusrule.yaml differs from %v (-files +manifest):\n%s", ruleFiles, diff)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// dashboard is the part of the Grafana dashboard JSON the tests read.
type dashboard struct {
	Templating struct {
		List []struct {
			Name, Type string
			Query      any
		}
	}
	Panels []struct {
		Type, Title string
		Targets     []struct{ Expr string }
	}
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// dashboardQueries returns every query of the dashboard, variable queries included, with the
// template variables substituted.
func dashboardQueries(t *testing.T, vars map[string]string) map[string]string {
	t.Helper()
	d := readDashboard(t)
	out := map[string]string{}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)["query"].(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q)
		}
		out["variable "+v.Name] = m[1]
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
		}
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) }) // $__range before $__r…
	for k, q := range out {
		for _, n := range names {
			q = strings.ReplaceAll(q, "$"+n, vars[n])
		}
		if strings.Contains(q, "$") {
			t.Errorf("%s: unknown variable in %q", k, q)
		}
		out[k] = q
	}
	return out
}

// TestEndToEndPrometheus runs a real Prometheus against the exporter replaying the golden scenario,
// scraped by two jobs (two identical replicas): every recording and alert rule evaluates without
// error, every recording rule has data and no NaN, every dashboard query (variables substituted)
// runs, and the organisation view shows the hand-worked golden values, counted once.
func TestEndToEndPrometheus(t *testing.T) {
	bin := prometheusBin(t)
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	srv := natstest.Start(t)
	nc, _ := srv.Connect()
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL(), "LOG_LEVEL": "info"},
		"--config", "testdata/config/valid-scenario.yaml")
	publish(t, nc, s, doratest.Scenario()...)
	prom := startPrometheus(t, bin, strings.TrimPrefix(s.Ops, "http://"))

	// The exporter has applied everything and Prometheus has scraped it, once per job.
	org := `scope="organization", environment="production", window="30d"`
	wait.For(t, 30*time.Second, func() error {
		v, err := prom.scalar(`count(dora_window_deployments{` + org + `} == 12)`)
		if err != nil || v != 2 {
			return fmt.Errorf("replicas serving 12 organisation deployments over 30d = %v (%w), want 2", v, err)
		}
		return nil
	})
	// Every rule evaluated at least once, without error.
	wait.For(t, 30*time.Second, func() error { return prom.rulesHealthy() })
	// Every recording rule has data, and no NaN.
	wait.For(t, 30*time.Second, func() error { return prom.recordedData(t) })

	vars := map[string]string{"environment": "production", "window": "30d", "team": ".*", "component": ".*",
		"benchmark": "dora2023", "__range": "1h", "__rate_interval": "1m"}
	for name, q := range dashboardQueries(t, vars) {
		if _, err := prom.query(q); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The organisation row shows the golden values (internal/dora scenario_want_test.go: 30d), through
	// the recording rules and deduplicated queries: each counted once though two jobs scrape it.
	rule := `{environment="production", window="30d"}`
	level := func(metric string) string {
		return `max by (scope, component, team, environment, window, metric) (dora_performance_level{` + org +
			`, metric="` + metric + `"})`
	}
	golden := map[string]float64{
		`environment:dora_deployments:count` + rule:                         12,
		`environment:dora_deployments:per_day` + rule:                       0.4,
		`environment:dora_change_lead_time_seconds:median` + rule:           86400,
		`environment:dora_change_fail_rate:ratio` + rule:                    5.0 / 12,
		`environment:dora_failed_deployment_recovery_seconds:median` + rule: 12600,
		`environment:dora_rework_rate:ratio` + rule:                         0.25,
		level("deployment_frequency"):                                       3,
		level("lead_time"):                                                  3,
		level("change_fail_rate"):                                           1,
		level("recovery_time"):                                              3,
		`sum(max by (component, team, environment, kind, result) (dora_deployments_total{environment="production", result="success", kind!="redeploy"}))`: 12,
		`sum(max by (component, team, environment, detection) (dora_change_failures_total{environment="production"}))`:                                    5,
		`max by (link) (doraflow_metrics_exporter_incidents{link="unlinked"})`:                                                                            1,
		`doraflow:incidents_unlinked:ratio`: 1.0 / 3,
	}
	// Polled: the three subjects are replayed concurrently, and Prometheus scrapes every second.
	wait.For(t, 30*time.Second, func() error {
		var errs []error
		for q, want := range golden {
			if got, err := prom.scalar(q); err != nil || got != want {
				errs = append(errs, fmt.Errorf("%s = %v (%w), want %v", q, got, err, want))
			}
		}
		return errors.Join(errs...)
	})
	// Exemplars travel: the lead-time histogram's exemplars point at deployments and commits.
	ex, err := prom.get("/api/v1/query_exemplars", url.Values{"query": {"dora_change_lead_time_seconds_bucket"},
		"start": {"2026-01-01T00:00:00Z"}, "end": {time.Now().UTC().Add(time.Hour).Format(time.RFC3339)}})
	if err != nil || !strings.Contains(string(ex), `"deployment_id":"dep-`) || !strings.Contains(string(ex), `"commit":"`) {
		t.Errorf("exemplars of dora_change_lead_time_seconds_bucket: %v %.500s", err, ex)
	}
	s.Stop(t)
}

// rule is the part of a recording or alerting rule the tests read.
type rule struct{ Record, Alert, Expr string }

// readRules returns every rule of the rule files, recording and alerting, in file order.
func readRules(t *testing.T) []rule {
	t.Helper()
	var out []rule
	for _, f := range ruleFiles {
		var doc struct{ Groups []struct{ Rules []rule } }
		readYAML(t, filepath.Join(monitoringDir, f), &doc)
		for _, g := range doc.Groups {
			out = append(out, g.Rules...)
		}
	}
	return out
}

type promServer struct {
	base  string
	rules int // rules in the rule files: all must load
}

// startPrometheus runs Prometheus scraping target every second, by two jobs (metrics-exporter and
// metrics-exporter-replica, standing in for a second replica: the same series under other target
// labels), and evaluating the rule files every second (their groups' intervals rewritten to 1s),
// with exemplar storage.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	var rules []string
	for _, f := range ruleFiles {
		b, err := os.ReadFile(filepath.Join(monitoringDir, f))
		if err != nil {
			t.Fatal(err)
		}
		fast := regexp.MustCompile(`(?m)^(\s+interval:) \w+$`).ReplaceAll(b, []byte("$1 1s"))
		p := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(p, fast, 0o644); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, p)
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%s]
scrape_configs:
  - job_name: metrics-exporter
    static_configs: [{targets: [%[2]q]}]
  - job_name: metrics-exporter-replica
    static_configs: [{targets: [%[2]q]}]
`, strings.Join(rules, ", "), target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := servicetest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "prometheus"), "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--enable-feature=exemplar-storage", "--log.level=warn")
	logs := &servicetest.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs)
		}
	})
	p := &promServer{base: "http://" + addr, rules: len(readRules(t))}
	wait.For(t, 30*time.Second, func() error {
		code, _, err := servicetest.HTTPGet(t.Context(), p.base+"/-/ready")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/-/ready %d", code)
		}
		return err
	})
	return p
}

func (p *promServer) get(path string, q url.Values) ([]byte, error) {
	code, body, err := servicetest.HTTPGet(context.Background(), p.base+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s: %d %s", path, code, body)
	}
	return []byte(body), nil
}

type queryResult struct {
	Status string
	Error  string
	Data   struct {
		ResultType string
		Result     json.RawMessage
	}
}

// query runs an instant query and returns its result; a PromQL error is an error.
func (p *promServer) query(q string) (queryResult, error) {
	var r queryResult
	b, err := p.get("/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Status != "success" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// scalar runs a query that must return exactly one sample, and returns its value.
func (p *promServer) scalar(q string) (float64, error) {
	r, err := p.query(q)
	if err != nil {
		return 0, err
	}
	var vec []struct {
		Value [2]any
	}
	if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
		return 0, err
	}
	if len(vec) != 1 {
		return 0, fmt.Errorf("%d samples", len(vec))
	}
	s, _ := vec[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// rulesHealthy reports an error until every rule has been evaluated at least once, healthy.
func (p *promServer) rulesHealthy() error {
	b, err := p.get("/api/v1/rules", nil)
	if err != nil {
		return err
	}
	var r struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []struct {
					Name, Health, LastError string
					LastEvaluation          time.Time
				}
			}
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health != "ok" || rule.LastError != "" || rule.LastEvaluation.Year() < 2000 {
				return fmt.Errorf("group %s rule %s: health %q, last error %q, last evaluation %s",
					g.Name, rule.Name, rule.Health, rule.LastError, rule.LastEvaluation)
			}
		}
	}
	if want := p.rules; n != want {
		return fmt.Errorf("%d rules loaded, want the %d of %v", n, want, ruleFiles)
	}
	return nil
}

// recordedData reports an error until every recording rule returns data without NaN: the golden
// scenario has data for each (none is allowed to be empty).
func (p *promServer) recordedData(t *testing.T) error {
	t.Helper()
	var errs []error
	for _, rule := range readRules(t) {
		name := rule.Record
		if name == "" {
			continue
		}
		r, err := p.query(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		var vec []struct {
			Metric map[string]string
			Value  [2]any
		}
		if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if len(vec) == 0 {
			errs = append(errs, fmt.Errorf("%s: no data", name))
		}
		for _, s := range vec {
			if v, _ := s.Value[1].(string); v == "NaN" {
				errs = append(errs, fmt.Errorf("%s%v: NaN", name, s.Metric))
			}
		}
	}
	return errors.Join(errs...)
}

// TestOperationsDocListsEveryAlert requires docs/operations.md's Alerts table to list exactly the
// shipped alerts, each with what it means and the first steps.
func TestOperationsDocListsEveryAlert(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, r := range readRules(t) {
		if r.Alert != "" {
			want = append(want, r.Alert)
		}
	}
	row := regexp.MustCompile("(?m)^\\| `(\\w+)` \\([a-z]+\\) \\|([^|]+)\\|([^|]+)\\|$")
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		got = append(got, m[1])
		if strings.TrimSpace(m[2]) == "" || strings.TrimSpace(m[3]) == "" {
			t.Errorf("docs/operations.md: alert %s needs what it means and the first steps", m[1])
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alerts in docs/operations.md (-rules +doc):\n%s", diff)
	}
}
