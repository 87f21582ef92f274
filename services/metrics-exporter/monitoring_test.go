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

// TestEndToEndPrometheus runs a real Prometheus against the exporter replaying the golden scenario:
// every recording and alert rule evaluates without error, every dashboard query (variables
// substituted) runs, and the organisation view shows the hand-worked golden values.
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

	// The exporter has applied everything and Prometheus has scraped it.
	org := `scope="organization", environment="production", window="30d"`
	wait.For(t, 30*time.Second, func() error {
		v, err := prom.scalar(`dora_window_deployments{` + org + `}`)
		if err != nil || v != 12 {
			return fmt.Errorf("organisation deployments over 30d = %v (%w), want 12", v, err)
		}
		return nil
	})
	// Every rule evaluated at least once, without error.
	wait.For(t, 30*time.Second, func() error { return prom.rulesHealthy() })

	vars := map[string]string{"environment": "production", "window": "30d", "team": ".*", "component": ".*",
		"benchmark": "dora2023", "__range": "1h", "__rate_interval": "1m"}
	for name, q := range dashboardQueries(t, vars) {
		if _, err := prom.query(q); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The organisation row shows the golden values (internal/dora scenario_want_test.go: 30d).
	golden := map[string]float64{
		`dora_window_deployments_per_day{` + org + `}`:                                              0.4,
		`dora_window_change_lead_time_median_seconds{` + org + `}`:                                  86400,
		`dora_window_change_fail_ratio{` + org + `}`:                                                5.0 / 12,
		`dora_window_failed_deployment_recovery_median_seconds{` + org + `}`:                        12600,
		`dora_window_rework_ratio{` + org + `}`:                                                     0.25,
		`dora_performance_level{` + org + `, metric="deployment_frequency"}`:                        3,
		`dora_performance_level{` + org + `, metric="lead_time"}`:                                   3,
		`dora_performance_level{` + org + `, metric="change_fail_rate"}`:                            1,
		`dora_performance_level{` + org + `, metric="recovery_time"}`:                               3,
		`sum(dora_deployments_total{environment="production", result="success", kind!="redeploy"})`: 12,
		`sum(dora_change_failures_total{environment="production"})`:                                 5,
		`doraflow_metrics_exporter_incidents{link="unlinked"}`:                                      1,
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

type promServer struct{ base string }

// startPrometheus runs Prometheus scraping target every second and evaluating the rule files every
// second (their groups' intervals rewritten to 1s), with exemplar storage.
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
    static_configs: [{targets: [%q]}]
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
	p := &promServer{base: "http://" + addr}
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
	if n < 100 {
		return fmt.Errorf("%d rules loaded, want every rule of %v", n, ruleFiles)
	}
	return nil
}
