package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var doraCommand = command{name: "doraflow dora", args: "[flags]",
	about: `Prints the DORA metrics the metrics exporter serves (its /metrics, exactly what Prometheus scrapes):
one row per team and window, the whole organisation as "(all)" first, with deployment frequency, change
lead time (median), change fail rate, failed deployment recovery time (median) and rework rate, each
with its performance level against the exporter's benchmark. The exporter is --exporter, else the one
of a running doraflow local/demo (its state file), else http://127.0.0.1:8081.`,
	examples: []string{
		"doraflow dora",
		"doraflow dora --team payments --window 30d",
		"doraflow dora --json | jq '.[] | select(.team == \"payments\")'",
		"doraflow dora --exporter http://metrics-exporter.doraflow:8081 --environment staging",
	}}

// doraColumns are the table's metrics: the exporter's windowed gauge, the title, and the metric label
// of dora_performance_level that rates it ("" when it has no level).
var doraColumns = []struct{ metric, title, level string }{
	{"dora_window_deployments_per_day", "DEPLOYMENT FREQUENCY", "deployment_frequency"},
	{"dora_window_change_lead_time_median_seconds", "LEAD TIME (p50)", "lead_time"},
	{"dora_window_change_fail_ratio", "CHANGE FAIL RATE", "change_fail_rate"},
	{"dora_window_failed_deployment_recovery_median_seconds", "RECOVERY (p50)", "recovery_time"},
	{"dora_window_rework_ratio", "REWORK RATE", ""},
}

// levelNames are dora_performance_level's values.
var levelNames = map[float64]string{4: "elite", 3: "high", 2: "medium", 1: "low"}

// doraRow is one team (or the organisation) in one window; its JSON is `doraflow dora --json`.
type doraRow struct {
	Scope       string `json:"scope"` // organization or team
	Team        string `json:"team"`  // empty for the organisation
	Window      string `json:"window"`
	Environment string `json:"environment"`
	// Values are the windowed gauges without their dora_window_ prefix: deployments,
	// deployments_per_day, change_lead_time_median_seconds, change_fail_ratio,
	// failed_deployment_recovery_median_seconds, rework_ratio. Absent without data.
	Values map[string]float64 `json:"values"`
	// Levels are the performance levels by metric (elite, high, medium, low).
	Levels map[string]string `json:"levels,omitempty"`
}

// doraReport is what the exporter serves for one environment.
type doraReport struct {
	Benchmark    string
	Rows         []doraRow
	Windows      []string // every window served, shortest first
	Teams        []string
	Environments []string
}

// dora prints the DORA table the metrics exporter serves.
func dora(ctx context.Context, args []string, p pipeline, out io.Writer) error {
	fs := doraCommand.flags()
	exporterFlag := fs.String("exporter", "", "metrics-exporter ops `URL` (default: the running local pipeline's, else http://127.0.0.1:8081)")
	window := fs.String("window", "", "only this `window` (one of the exporter's metrics.windows, e.g. 7d or 30d; default: every window)")
	team := fs.String("team", "", "only this `team` (default: every team and the organisation)")
	env := fs.String("environment", "production", "the `environment` the values are for")
	asJSON := fs.Bool("json", false, "print a JSON array of rows instead of a table")
	if err := doraCommand.parse(fs, args, out, 0); err != nil {
		return err
	}
	exporter := strings.TrimSuffix(p.exporterURL(*exporterFlag), "/")
	families, err := scrape(ctx, exporter+"/metrics")
	if err != nil {
		return err
	}
	if err := isExporter(exporter, families); err != nil {
		return err
	}
	rep := buildDoraReport(families, *env)
	if len(rep.Rows) > 0 && !contains(rep.Environments, *env) {
		return fmt.Errorf("no DORA values for environment %q; the exporter serves %s", *env, strings.Join(rep.Environments, ", "))
	}
	if *window != "" && len(rep.Windows) > 0 && !contains(rep.Windows, *window) {
		return fmt.Errorf("the exporter serves no window %q; its windows (metrics.windows) are %s", *window, strings.Join(rep.Windows, ", "))
	}
	if *team != "" && len(rep.Rows) > 0 && !contains(rep.Teams, *team) {
		return fmt.Errorf("no team %q in %s; the exporter knows %s", *team, *env, orNone(rep.Teams))
	}
	rows := rep.Rows[:0:0]
	for _, r := range rep.Rows {
		if (*window == "" || r.Window == *window) && (*team == "" || r.Team == *team) {
			rows = append(rows, r)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		fmt.Fprintf(out, "The exporter at %s serves no DORA values for %s yet (no deployments observed?).\n", exporter, *env)
		return nil
	}
	title := "DORA metrics, " + *env
	if rep.Benchmark != "" {
		title += ", levels against " + rep.Benchmark
	}
	fmt.Fprintf(out, "%s (%s):\n", title, exporter)
	return printDoraTable(out, rows)
}

// isExporter tells a doraflow metrics exporter from any other /metrics endpoint: it serves dora_* or
// doraflow_metrics_exporter_* series.
func isExporter(url string, families map[string]*dto.MetricFamily) error {
	for name := range families {
		if strings.HasPrefix(name, "dora_") || strings.HasPrefix(name, "doraflow_metrics_exporter_") {
			return nil
		}
	}
	what := "it serves no dora_* or doraflow_metrics_exporter_* series"
	for _, m := range families["doraflow_build_info"].GetMetric() {
		if s := label(m, "service"); s != "" {
			what = "it is " + s + "'s ops endpoint"
		}
	}
	return fmt.Errorf("%s is not a doraflow metrics exporter: %s (pass the exporter's ops URL with --exporter)", url, what)
}

// buildDoraReport collects the per-team and organisation rows of one environment.
func buildDoraReport(families map[string]*dto.MetricFamily, env string) doraReport {
	var rep doraReport
	for _, m := range families["doraflow_metrics_exporter_benchmark_info"].GetMetric() {
		rep.Benchmark = label(m, "benchmark")
	}
	type key struct{ team, window string }
	rows := map[key]*doraRow{}
	windows, teams, envs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	row := func(m *dto.Metric) *doraRow {
		scope := label(m, "scope")
		if scope != "organization" && scope != "team" {
			return nil // per-component rows are for dashboards
		}
		w, e := label(m, "window"), label(m, "environment")
		windows[w], envs[e] = true, true
		if scope == "team" {
			teams[label(m, "team")] = true
		}
		if e != env {
			return nil
		}
		k := key{label(m, "team"), w}
		if rows[k] == nil {
			rows[k] = &doraRow{Scope: scope, Team: k.team, Window: w, Environment: e, Values: map[string]float64{}}
		}
		return rows[k]
	}
	for name, mf := range families {
		if !strings.HasPrefix(name, "dora_window_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			if r := row(m); r != nil {
				r.Values[strings.TrimPrefix(name, "dora_window_")] = m.GetGauge().GetValue()
			}
		}
	}
	for _, m := range families["dora_performance_level"].GetMetric() {
		if r := row(m); r != nil {
			if r.Levels == nil {
				r.Levels = map[string]string{}
			}
			r.Levels[label(m, "metric")] = levelNames[m.GetGauge().GetValue()]
		}
	}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, *r)
	}
	rep.Windows = sortedWindows(windows)
	order := map[string]int{}
	for i, w := range rep.Windows {
		order[w] = i
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		a, b := rep.Rows[i], rep.Rows[j]
		if a.Team != b.Team {
			return a.Team < b.Team // the organisation ("") first
		}
		return order[a.Window] < order[b.Window]
	})
	rep.Teams, rep.Environments = sortedKeys(teams), sortedKeys(envs)
	return rep
}

// printDoraTable prints rows as a team × metric table, each value with its unit and level.
func printDoraTable(out io.Writer, rows []doraRow) error {
	tw := table(out)
	header := []string{"TEAM", "WINDOW"}
	for _, c := range doraColumns {
		header = append(header, c.title)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		team := r.Team
		if r.Scope == "organization" {
			team = "(all)"
		}
		cells := []string{team, r.Window}
		for _, c := range doraColumns {
			v, ok := r.Values[strings.TrimPrefix(c.metric, "dora_window_")]
			cell := "-"
			if ok {
				cell = formatValue(c.metric, v)
				if strings.HasSuffix(c.metric, "_per_day") {
					cell = formatFrequency(v)
				}
				if lv := r.Levels[c.level]; lv != "" {
					cell += " (" + lv + ")"
				}
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// formatFrequency renders deployments per day, or per week or month when rarer.
func formatFrequency(perDay float64) string {
	switch {
	case perDay == 0:
		return "0/day"
	case perDay >= 1:
		return fmt.Sprintf("%.2f/day", perDay)
	case perDay*7 >= 1:
		return fmt.Sprintf("%.2f/week", perDay*7)
	default:
		return fmt.Sprintf("%.2f/month", perDay*30)
	}
}

// formatValue renders durations in days, hours or minutes and ratios as percentages.
func formatValue(col string, v float64) string {
	switch {
	case strings.HasSuffix(col, "_seconds"):
		return humanDuration(time.Duration(v * float64(time.Second)))
	case strings.HasSuffix(col, "_ratio"):
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	return fmt.Sprintf("%.4g", v)
}

func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%.1f hours", d.Hours())
	default:
		return fmt.Sprintf("%.0f min", d.Minutes())
	}
}

// sortedWindows sorts window labels (7d, 30d, 1w) by their duration.
func sortedWindows(set map[string]bool) []string {
	ws := sortedKeys(set)
	dur := func(w string) time.Duration {
		d, err := model.ParseDuration(w)
		if err != nil {
			return 0
		}
		return time.Duration(d)
	}
	sort.SliceStable(ws, func(i, j int) bool { return dur(ws[i]) < dur(ws[j]) })
	return ws
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w (is the metrics exporter running? pass its ops URL with --exporter)", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s (is this a doraflow metrics exporter?)", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s is not Prometheus metrics (is this a doraflow metrics exporter?): %w", url, err)
	}
	return families, nil
}
