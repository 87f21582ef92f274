package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"os"
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

// The dashboard stays JSON checked by these tests, not Go built with grafana-foundation-sdk
// (docs/adr/0010-dashboard-as-code.md): the lint below checks what the SDK's types would (panel
// types, unit ids, threshold structure) and what they cannot (PromQL, DORA bands, windows).

// grafanaDashboard is the part of the Grafana dashboard JSON the lint reads.
type grafanaDashboard struct {
	Templating struct{ List []grafanaVariable }
	Panels     []grafanaPanel
}

type grafanaVariable struct {
	Name, Type string
	Query      any
	Options    []struct{ Text, Value string }
}

type grafanaPanel struct {
	ID                       int
	Type, Title, Description string
	Targets                  []grafanaTarget
	FieldConfig              struct {
		Defaults  grafanaFieldConfig
		Overrides []grafanaOverride
	}
	Panels []grafanaPanel // a collapsed row's panels
}

type grafanaTarget struct {
	RefID    string `json:"refId"`
	Expr     string
	Instant  bool
	Exemplar bool
	Format   string
}

type grafanaFieldConfig struct {
	Unit       string
	Thresholds *grafanaThresholds
	Mappings   []grafanaMapping
}

type grafanaThresholds struct {
	Mode  string
	Steps []struct {
		Color string
		Value *float64
	}
}

type grafanaMapping struct {
	Type    string
	Options map[string]struct{ Text, Color string }
}

type grafanaOverride struct {
	Matcher struct {
		ID      string
		Options string
	}
	Properties []struct {
		ID    string
		Value json.RawMessage
	}
}

func loadDashboard(t *testing.T, path string) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// panels returns the dashboard's panels without rows, a collapsed row's panels included.
func (d grafanaDashboard) panels() []grafanaPanel {
	var out []grafanaPanel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// fieldConfig is what Grafana applies to target's values: the defaults, then the overrides that
// match its frame (by refId, or by the name a merged table gives its column).
func (p grafanaPanel) fieldConfig(target grafanaTarget) (grafanaFieldConfig, error) {
	fc := p.FieldConfig.Defaults
	for _, o := range p.FieldConfig.Overrides {
		matches := o.Matcher.ID == "byFrameRefID" && o.Matcher.Options == target.RefID ||
			o.Matcher.ID == "byName" && o.Matcher.Options == "Value #"+target.RefID
		if !matches {
			continue
		}
		for _, prop := range o.Properties {
			var err error
			switch prop.ID {
			case "unit":
				err = json.Unmarshal(prop.Value, &fc.Unit)
			case "thresholds":
				err = json.Unmarshal(prop.Value, &fc.Thresholds)
			case "mappings":
				err = json.Unmarshal(prop.Value, &fc.Mappings)
			}
			if err != nil {
				return fc, fmt.Errorf("override %s=%s property %s: %w", o.Matcher.ID, o.Matcher.Options, prop.ID, err)
			}
		}
	}
	return fc, nil
}

var (
	// grafanaPanelTypes are the panel plugins the dashboard may use (Grafana core panels).
	grafanaPanelTypes = []string{"stat", "gauge", "bargauge", "timeseries", "table"}
	// grafanaUnits are Grafana unit ids (packages/grafana-data/src/valueFormats/categories.ts);
	// "suffix:<text>" is Grafana's custom unit.
	grafanaUnits = []string{"none", "short", "ms", "s", "m", "h", "d", "percentunit", "percent", "dateTimeAsIso"}
	// exporterSeries is a series of the exporter, which runs replicated and so needs deduplication.
	exporterSeries = regexp.MustCompile(`[\w:]*\b(?:dora|doraflow_metrics_exporter)_[\w:]+`)
	dedupBefore    = regexp.MustCompile(`max by \(([\w, ]*)\) \($`)
	rangeFunction  = regexp.MustCompile(`\b(rate|irate|increase|delta|idelta|deriv)\(`)
	rangeLiteral   = regexp.MustCompile(`\[([^\]]+)\]`)
	leMatcher      = regexp.MustCompile(`\ble\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	// bucketBounds are the exporter's classic histogram bounds (README, Metrics).
	bucketBounds = []string{"300", "900", "3600", "14400", "86400", "259200", "604800", "1209600", "2592000", "7776000", "15552000"}
	// defaultWindows are the exporter's default metrics.windows, as labels, shortest first.
	defaultWindows = []string{"1d", "7d", "30d", "90d"}
	// levelNames and levelColors: dora_performance_level's values as Grafana shows them.
	levelNames  = map[int]string{4: "elite", 3: "high", 2: "medium", 1: "low"}
	levelColors = map[int]string{4: "green", 3: "blue", 2: "yellow", 1: "red"}
	// bandedMetrics are the windowed gauges a benchmark rates, by the benchmark metric.
	bandedMetrics = map[string]string{
		"dora_window_deployments_per_day":                       "deployment_frequency",
		"dora_window_change_lead_time_median_seconds":           "lead_time",
		"dora_window_change_fail_ratio":                         "change_fail_rate",
		"dora_window_failed_deployment_recovery_median_seconds": "recovery_time",
	}
	defaultBenchmark = "dora2023"
)

// closingParen returns the index of the parenthesis closing the one opened at s[open].
func closingParen(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(s)
}

// dedupLabels returns, for each exporter series selected in expr, the labels of the max by
// that deduplicates its replicas; a series without one maps to nil.
func dedupLabels(expr string) map[string][][]string {
	out := map[string][][]string{}
	for _, loc := range exporterSeries.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		var labels []string
		if m := dedupBefore.FindStringSubmatch(expr[:loc[0]]); m != nil {
			labels = []string{}
			for l := range strings.SplitSeq(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, l)
				}
			}
		}
		out[name] = append(out[name], labels)
	}
	return out
}

// lintExpr reports what is wrong with one panel query: a series without replica deduplication,
// a recording rule, rate or increase over a DORA series, a bucket bound only one exposition
// format spells that way, the wall clock.
func lintExpr(expr string) []string {
	var problems []string
	for name, uses := range dedupLabels(expr) {
		if strings.Contains(name, ":") {
			problems = append(problems, fmt.Sprintf("%s is a recording rule: query the exporter's series", name))
			continue
		}
		for _, labels := range uses {
			switch {
			case labels == nil:
				problems = append(problems, fmt.Sprintf("%s is not deduplicated: wrap it in max by (<its labels>) (…)", name))
			case slices.ContainsFunc(labels, func(l string) bool { return l == "instance" || l == "pod" || l == "job" }):
				problems = append(problems, fmt.Sprintf("%s: max by (%s) keeps the replicas apart", name, strings.Join(labels, ", ")))
			}
		}
	}
	for _, loc := range rangeFunction.FindAllStringSubmatchIndex(expr, -1) {
		arg := expr[loc[1]-1 : closingParen(expr, loc[1]-1)+1]
		if regexp.MustCompile(`\bdora_`).MatchString(arg) {
			problems = append(problems, fmt.Sprintf("%s%s: the exporter's counters start with all of history, %s over scrape time never sees it",
				expr[loc[2]:loc[3]], arg, expr[loc[2]:loc[3]]))
		}
		for _, r := range rangeLiteral.FindAllStringSubmatch(arg, -1) {
			if strings.HasPrefix(r[1], "$") {
				problems = append(problems, fmt.Sprintf("%s over [%s]: use a fixed range the title can state", expr[loc[2]:loc[3]], r[1]))
			}
		}
	}
	for _, m := range leMatcher.FindAllStringSubmatch(expr, -1) {
		op, value := m[1], strings.ReplaceAll(m[2], `\\`, `\`)
		switch op {
		case "=", "!=":
			if _, err := strconv.ParseFloat(value, 64); err == nil && !strings.ContainsAny(value, ".eEIi") {
				problems = append(problems, fmt.Sprintf(`le%s%q: an OpenMetrics scrape stores le="%s.0"; match both with le=~"%s(\\.0)?"`, op, value, value, value))
			}
		default:
			re, err := regexp.Compile("^(?:" + value + ")$")
			if err != nil {
				problems = append(problems, fmt.Sprintf("le%s%q: %v", op, value, err))
				continue
			}
			for _, b := range bucketBounds {
				if re.MatchString(b) != re.MatchString(b+".0") {
					problems = append(problems, fmt.Sprintf(`le%s%q matches only one of "%s" and "%s.0"`, op, value, b, b))
				}
			}
		}
	}
	if regexp.MustCompile(`\btime\(\)`).MatchString(expr) {
		problems = append(problems, "time() is the wall clock: the exporter's numbers are at event time (doraflow_metrics_exporter_evaluation_timestamp_seconds)")
	}
	return problems
}

// lintThresholds checks the structure Grafana requires: a mode, a base step without value, then
// ascending values, each with a colour.
func lintThresholds(th *grafanaThresholds) error {
	if th == nil {
		return errors.New("no thresholds (Grafana's default paints 80 and above red)")
	}
	if th.Mode != "absolute" && th.Mode != "percentage" {
		return fmt.Errorf("thresholds mode %q, want absolute or percentage", th.Mode)
	}
	if len(th.Steps) == 0 || th.Steps[0].Value != nil {
		return errors.New("thresholds must start with a base step (value null)")
	}
	for i, s := range th.Steps {
		if s.Color == "" {
			return fmt.Errorf("threshold step %d has no colour", i)
		}
		if i > 0 && (s.Value == nil || i > 1 && *s.Value <= *th.Steps[i-1].Value) {
			return fmt.Errorf("threshold step %d: values must ascend after the base", i)
		}
	}
	return nil
}

// thresholdColor is the colour Grafana gives v: the last step at or below it.
func thresholdColor(th *grafanaThresholds, v float64) string {
	c := ""
	for _, s := range th.Steps {
		if s.Value == nil || *s.Value <= v {
			c = s.Color
		}
	}
	return c
}

// benchmarkSet is one set of internal/dora/benchmarks.yaml.
type benchmarkSet map[string]struct {
	Better              string
	Inclusive           bool
	Elite, High, Medium string
}

func loadBenchmark(t *testing.T, name string) benchmarkSet {
	t.Helper()
	var doc struct {
		Sets []struct {
			Name    string
			Metrics benchmarkSet
		}
	}
	b, err := os.ReadFile("internal/dora/benchmarks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range doc.Sets {
		if s.Name == name {
			return s.Metrics
		}
	}
	t.Fatalf("benchmark set %s not in benchmarks.yaml", name)
	return nil
}

// parseEdge reads a benchmark edge: an optional operator, then a number or a fraction.
func parseEdge(s string) (op string, v float64, err error) {
	for _, o := range []string{">=", "<=", ">", "<"} {
		if rest, ok := strings.CutPrefix(s, o); ok {
			op, s = o, rest
			break
		}
	}
	if num, den, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseFloat(num, 64)
		d, err2 := strconv.ParseFloat(den, 64)
		return op, n / d, errors.Join(err1, err2)
	}
	v, err = strconv.ParseFloat(s, 64)
	return op, v, err
}

// level rates v as the exporter does (benchmarks.yaml's header): 4 elite … 1 low.
func (b benchmarkSet) level(metric string, v float64) (int, []float64, error) {
	m := b[metric]
	var edges []float64
	lvl := 0
	for i, e := range []string{m.Elite, m.High, m.Medium} {
		op, edge, err := parseEdge(e)
		if err != nil {
			return 0, nil, fmt.Errorf("%s edge %q: %w", metric, e, err)
		}
		edges = append(edges, edge)
		if op == "" {
			op = map[bool]string{true: ">=", false: map[bool]string{true: "<=", false: "<"}[m.Inclusive]}[m.Better == "higher"]
		}
		meets := map[string]bool{">=": v >= edge, ">": v > edge, "<=": v <= edge, "<": v < edge}[op]
		if lvl == 0 && meets {
			lvl = 4 - i
		}
	}
	return max(lvl, 1), edges, nil
}

// lintBands requires th to paint every value in the colour of the level bench gives it: probes at,
// just below and just above every edge.
func lintBands(bench benchmarkSet, metric string, th *grafanaThresholds) error {
	_, edges, err := bench.level(metric, 0)
	if err != nil {
		return err
	}
	probes := []float64{0}
	for _, e := range edges {
		probes = append(probes, e*0.999, e, e*1.001)
	}
	for _, v := range probes {
		lvl, _, _ := bench.level(metric, v)
		if got := thresholdColor(th, v); got != levelColors[lvl] {
			return fmt.Errorf("%s %g is %s under %s (%s), thresholds paint it %q", metric, v, levelNames[lvl], defaultBenchmark, levelColors[lvl], got)
		}
	}
	return nil
}

// lintDashboard returns every problem of the dashboard a Grafana user would see: wrong panel
// types, missing units or thresholds, thresholds off the DORA bands, queries that are blank,
// doubled by replicas or on the wall clock, titles that hide their window, copied descriptions.
func lintDashboard(d grafanaDashboard, bench benchmarkSet) []string {
	var problems []string
	add := func(p grafanaPanel, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("panel %q: ", p.Title)+fmt.Sprintf(format, args...))
	}
	descriptions := map[string]string{}
	benchmarkUsed := false
	for _, p := range d.panels() {
		if !slices.Contains(grafanaPanelTypes, p.Type) {
			add(p, "type %q is not one of %v", p.Type, grafanaPanelTypes)
		}
		if p.Description == "" {
			add(p, "no description")
		} else if other, dup := descriptions[p.Description]; dup {
			add(p, "same description as panel %q", other)
		} else {
			descriptions[p.Description] = p.Title
		}
		if len(p.Targets) == 0 {
			add(p, "no queries")
		}
		for _, tg := range p.Targets {
			for _, msg := range lintExpr(tg.Expr) {
				add(p, "query %s: %s", tg.RefID, msg)
			}
			if strings.Contains(tg.Expr, "$benchmark") {
				benchmarkUsed = true
			}
			fc, err := p.fieldConfig(tg)
			if err != nil {
				add(p, "%v", err)
			}
			if fc.Unit == "" {
				add(p, "query %s has no unit", tg.RefID)
			} else if !slices.Contains(grafanaUnits, fc.Unit) && !strings.HasPrefix(fc.Unit, "suffix:") {
				add(p, "query %s: unit %q is not a Grafana unit id (%v, suffix:…)", tg.RefID, fc.Unit, grafanaUnits)
			}
			if fc.Thresholds != nil || slices.Contains([]string{"stat", "gauge", "bargauge"}, p.Type) {
				if err := lintThresholds(fc.Thresholds); err != nil {
					add(p, "query %s: %v", tg.RefID, err)
				}
			}
			if p.Type == "table" && (!tg.Instant || tg.Format != "table") {
				add(p, "query %s: a table's query must be instant with format table", tg.RefID)
			}
			if p.Type == "timeseries" && strings.Contains(tg.Expr, "_seconds_bucket") && !tg.Exemplar {
				add(p, "query %s reads a latency histogram: enable exemplars", tg.RefID)
			}
			problems = append(problems, lintMeaning(p, tg, fc, bench)...)
		}
	}
	if !benchmarkUsed {
		problems = append(problems, "no query uses $benchmark: it filters nothing")
	}
	problems = append(problems, lintWindowVariable(d)...)
	return problems
}

// lintMeaning checks a query against what it reads: units by metric, DORA bands and level
// mappings, and a title that states the window.
func lintMeaning(p grafanaPanel, tg grafanaTarget, fc grafanaFieldConfig, bench benchmarkSet) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("panel %q query %s: ", p.Title, tg.RefID)+fmt.Sprintf(format, args...))
	}
	for _, n := range slices.Sorted(maps.Keys(dedupLabels(tg.Expr))) {
		want := ""
		switch {
		case strings.HasSuffix(n, "_per_day"):
			want = "suffix:/day"
		case strings.HasSuffix(n, "_ratio"):
			want = "percentunit"
		case strings.HasSuffix(n, "_median_seconds"), strings.Contains(tg.Expr, "histogram_quantile("):
			want = "s"
		}
		if want != "" && fc.Unit != want {
			add("%s: unit %q, want %q", n, fc.Unit, want)
		}
		if metric, ok := bandedMetrics[n]; ok && fc.Thresholds != nil {
			if err := lintBands(bench, metric, fc.Thresholds); err != nil {
				add("%v", err)
			}
			if p.Type == "stat" && !strings.Contains(p.Description, defaultBenchmark) {
				add("thresholds are %s's bands: say so in the description", defaultBenchmark)
			}
		}
		if metric, ok := bandedMetrics[n]; ok && fc.Thresholds == nil && p.Type != "timeseries" {
			add("%s is rated by %s: give it that benchmark's bands as thresholds", n, metric)
		}
		if n == "dora_performance_level" {
			for lvl, name := range levelNames {
				if !slices.ContainsFunc(fc.Mappings, func(m grafanaMapping) bool { return m.Options[strconv.Itoa(lvl)].Text == name }) {
					add("no value mapping %d → %s", lvl, name)
				}
				if fc.Thresholds == nil || thresholdColor(fc.Thresholds, float64(lvl)) != levelColors[lvl] {
					add("level %d (%s) must be coloured %s", lvl, name, levelColors[lvl])
				}
			}
		}
		if strings.HasPrefix(n, "dora_") && regexp.MustCompile(`_(total|bucket|count|sum)$`).MatchString(n) &&
			!strings.Contains(p.Title, "all history") {
			add("%s holds all of history: say \"all history\" in the title", n)
		}
	}
	if strings.Contains(tg.Expr, `window="$window"`) && !strings.Contains(p.Title, "$window") {
		add("its window is $window: say so in the title")
	}
	for _, r := range rangeLiteral.FindAllStringSubmatch(tg.Expr, -1) {
		if !strings.Contains(p.Title, r[1]) {
			add("ranges over [%s]: say so in the title", r[1])
		}
	}
	return problems
}

// lintWindowVariable requires the window selector to list the exporter's default windows,
// shortest first.
func lintWindowVariable(d grafanaDashboard) []string {
	for _, v := range d.Templating.List {
		if v.Name != "window" {
			continue
		}
		var got []string
		for _, o := range v.Options {
			got = append(got, o.Value)
		}
		if v.Type != "custom" || !slices.Equal(got, defaultWindows) {
			return []string{fmt.Sprintf("window variable: %s with options %v, want custom %v (a query variable sorts 1d, 30d, 7d, 90d)", v.Type, got, defaultWindows)}
		}
		return nil
	}
	return []string{"no window variable"}
}

// TestDashboardLint: the shipped dashboard has none of the problems lintDashboard knows.
func TestDashboardLint(t *testing.T) {
	d := loadDashboard(t, filepath.Join(monitoringDir, dashboardFile))
	for _, p := range lintDashboard(d, loadBenchmark(t, defaultBenchmark)) {
		t.Error(p)
	}
}

// TestDashboardLintCatches: each class of problem is reported, on a panel that has only it.
func TestDashboardLintCatches(t *testing.T) {
	bench := loadBenchmark(t, defaultBenchmark)
	thresholds := `{"mode": "absolute", "steps": [{"color": "green", "value": null}, {"color": "red", "value": 1}]}`
	dfBands := `{"mode": "absolute", "steps": [{"color": "red", "value": null}, {"color": "yellow", "value": 0.0333333}, {"color": "blue", "value": 0.1428571}, {"color": "green", "value": 1}]}`
	good := `{"type": "stat", "title": "Deployments per day over $window", "description": "d (dora2023)",
		"targets": [{"refId": "A", "expr": "max by (scope, component, team, environment, window) (dora_window_deployments_per_day{window=\"$window\"}) and on () max by (benchmark) (doraflow_metrics_exporter_benchmark_info{benchmark=\"$benchmark\"})"}],
		"fieldConfig": {"defaults": {"unit": "suffix:/day", "thresholds": ` + dfBands + `}}}`
	window := `{"name": "window", "type": "custom", "options": [{"value": "1d"}, {"value": "7d"}, {"value": "30d"}, {"value": "90d"}]}`
	dash := func(vars string, panels ...string) grafanaDashboard {
		var d grafanaDashboard
		if err := json.Unmarshal([]byte(`{"templating": {"list": [`+vars+`]}, "panels": [`+strings.Join(panels, ",")+`]}`), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	stat := func(title, expr, unit, th string) string {
		b, _ := json.Marshal(expr)
		return fmt.Sprintf(`{"type": "stat", "title": %q, "description": %q, "targets": [{"refId": "A", "expr": %s}],
			"fieldConfig": {"defaults": {"unit": %q, "thresholds": %s}}}`, title, title, b, unit, th)
	}
	if got := lintDashboard(dash(window, good), bench); len(got) != 0 {
		t.Fatalf("a good panel is reported: %v", got)
	}
	deduped := `max by (component, team, environment) (dora_failed_deployments_unrecovered)`
	tests := []struct {
		name string
		d    grafanaDashboard
		want string
	}{
		{"stat without thresholds", dash(window, good, stat("x", deduped, "none", "null")), "no thresholds"},
		{"stat without unit", dash(window, good, stat("x", deduped, "", thresholds)), "has no unit"},
		{"unknown unit", dash(window, good, stat("x", deduped, "seconds", thresholds)), "not a Grafana unit id"},
		{"threshold without base", dash(window, good, stat("x", deduped, "none", `{"mode": "absolute", "steps": [{"color": "red", "value": 1}]}`)), "base step"},
		{"thresholds descending", dash(window, good, stat("x", deduped, "none", `{"mode": "absolute", "steps": [{"color": "green", "value": null}, {"color": "red", "value": 2}, {"color": "red", "value": 1}]}`)), "ascend"},
		{"unknown panel type", dash(window, good, strings.Replace(stat("x", deduped, "none", thresholds), `"stat"`, `"singlestat"`, 1)), "is not one of"},
		{"no dedup", dash(window, good, stat("x", `sum(dora_failed_deployments_unrecovered)`, "none", thresholds)), "not deduplicated"},
		{"dedup by instance", dash(window, good, stat("x", `max by (instance, component) (dora_failed_deployments_unrecovered)`, "none", thresholds)), "keeps the replicas apart"},
		{"operational series without dedup", dash(window, good, stat("x", `doraflow_metrics_exporter_incidents`, "none", thresholds)), "not deduplicated"},
		{"recording rule", dash(window, good, stat("x", `max by (environment) (environment:dora_change_fail_rate:ratio30d)`, "none", thresholds)), "recording rule"},
		{"increase over dora", dash(window, good, stat("x 1h all history", `sum(increase(max by (component, team, environment) (dora_deployments_total)[1h:]))`, "none", thresholds)), "never sees it"},
		{"rate over dora", dash(window, good, stat("x", `rate(dora_deployments_total[5m])`, "none", thresholds)), "never sees it"},
		{"rate over $__range", dash(window, good, stat("x", `rate(doraflow_messaging_messages_handled_total[$__range])`, "none", thresholds)), "fixed range"},
		{"range not in title", dash(window, good, stat("x", `rate(doraflow_messaging_messages_handled_total[5m])`, "none", thresholds)), "ranges over [5m]"},
		{"le text spelling only", dash(window, good, stat("x all history", `max by (component, team, environment, le) (dora_change_lead_time_seconds_bucket{le="86400"})`, "none", thresholds)), "OpenMetrics"},
		{"le regex one spelling", dash(window, good, stat("x all history", `max by (component, team, environment, le) (dora_change_lead_time_seconds_bucket{le=~"86400|3600"})`, "none", thresholds)), "matches only one"},
		{"time()", dash(window, good, stat("x", `time() - max by (component, team, environment) (dora_last_deployment_timestamp_seconds)`, "s", thresholds)), "wall clock"},
		{"duplicate description", dash(window, good, strings.Replace(good, `"Deployments per day over $window"`, `"Other over $window"`, 1)), "same description"},
		{"no description", dash(window, good, stat("", deduped, "none", thresholds)), "no description"},
		{"window options order", dash(strings.Replace(window, `{"value": "7d"}, {"value": "30d"}`, `{"value": "30d"}, {"value": "7d"}`, 1), good), "window variable"},
		{"window as query variable", dash(`{"name": "window", "type": "query"}`, good), "window variable"},
		{"benchmark only in a title", dash(window, strings.Replace(good, `$benchmark`, `dora2023`, 1)), "$benchmark"},
		{"window not in title", dash(window, strings.Replace(good, `over $window`, `now`, 1)), "say so in the title"},
		{"cumulative without all history", dash(window, good, stat("x", `sum(max by (component, team, environment, kind, result) (dora_deployments_total))`, "none", thresholds)), "all history"},
		{"ratio without percentunit", dash(window, good, stat("CFR $window (dora2023)", `max by (scope, component, team, environment, window) (dora_window_rework_ratio{window="$window"})`, "none", thresholds)), `want "percentunit"`},
		{"bands off the benchmark", dash(window, strings.Replace(good, `"value": 1}`, `"value": 2}`, 1)), "under dora2023"},
		{"bands not said", dash(window, strings.Replace(good, `"d (dora2023)"`, `"d"`, 1)), "say so in the description"},
		{"level without mappings", dash(window, good, stat("Level $window", `max by (scope, component, team, environment, window, metric) (dora_performance_level{window="$window"})`, "none", thresholds)), "value mapping"},
		{"latency without exemplars", dash(window, good, strings.Replace(stat("p50 all history", `histogram_quantile(0.5, sum by (le) (max by (component, team, environment, le) (dora_change_lead_time_seconds_bucket)))`, "s", thresholds), `"stat"`, `"timeseries"`, 1)), "exemplars"},
		{"table column without unit", dash(window, good, `{"type": "table", "title": "t $window", "description": "t", "targets": [
			{"refId": "A", "instant": true, "format": "table", "expr": "max by (scope, component, team, environment, window) (dora_window_deployments{window=\"$window\"})"}]}`), "has no unit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := lintDashboard(tc.d, bench)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("no problem mentions %q; got %q", tc.want, got)
			}
		})
	}
}

// dashboardAllowedEmpty are the panels the golden scenario cannot fill, with the reason.
var dashboardAllowedEmpty = map[string]string{
	"Pipeline event lag p90 (rate over 5m)":     "doraflow_messaging_* comes from the other services; only the exporter is scraped here",
	"Dead-lettered messages (increase over 5m)": "doraflow_messaging_* comes from the other services; only the exporter is scraped here",
}

// promSample is one series of an instant or range query result.
type promSample struct {
	Metric map[string]string
	Value  [2]any
	Values [][2]any
}

func (s promSample) values() []string {
	var out []string
	if s.Value[1] != nil {
		out = append(out, fmt.Sprint(s.Value[1]))
	}
	for _, v := range s.Values {
		out = append(out, fmt.Sprint(v[1]))
	}
	return out
}

// evaluate runs q as an instant query and as a range query over the last minute and returns
// both results' series.
func evaluate(p *promServer, q string) (instant, ranged []promSample, err error) {
	r, err := p.query(q)
	if err != nil {
		return nil, nil, fmt.Errorf("instant: %w", err)
	}
	if r.Data.ResultType == "vector" {
		if err := json.Unmarshal(r.Data.Result, &instant); err != nil {
			return nil, nil, err
		}
	} else {
		instant = []promSample{{Value: [2]any{0, string(r.Data.Result)}}}
	}
	now := time.Now()
	b, err := p.get("/api/v1/query_range", url.Values{"query": {q}, "start": {strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)},
		"end": {strconv.FormatInt(now.Unix(), 10)}, "step": {"2"}})
	if err != nil {
		return nil, nil, fmt.Errorf("range: %w", err)
	}
	var rr queryResult
	if err := json.Unmarshal(b, &rr); err != nil {
		return nil, nil, err
	}
	if rr.Status != "success" {
		return nil, nil, fmt.Errorf("range: %s", rr.Error)
	}
	err = json.Unmarshal(rr.Data.Result, &ranged)
	return instant, ranged, err
}

// exporterLabels returns the exporter's series as label sets by metric name.
func exporterLabels(values map[string]float64) map[string][]map[string]string {
	out := map[string][]map[string]string{}
	pair := regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
	for series, v := range values {
		name, rest, _ := strings.Cut(series, "{")
		labels := map[string]string{"__value__": strconv.FormatFloat(v, 'g', -1, 64)}
		for _, m := range pair.FindAllStringSubmatch(rest, -1) {
			labels[m[1]] = m[2]
		}
		out[name] = append(out[name], labels)
	}
	return out
}

// selectorMatches reports whether labels satisfy the matchers of a PromQL selector's braces.
func selectorMatches(matchers string, labels map[string]string) bool {
	for _, m := range regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`).FindAllStringSubmatch(matchers, -1) {
		v := labels[m[1]]
		re := regexp.MustCompile("^(?:" + strings.ReplaceAll(m[3], `\\`, `\`) + ")$")
		if map[string]bool{"=": v == m[3], "!=": v != m[3], "=~": re.MatchString(v), "!~": !re.MatchString(v)}[m[2]] == false {
			return false
		}
	}
	return true
}

// TestDashboardEndToEnd runs a real Prometheus scraping the exporter that replays the golden
// scenario and evaluates every dashboard query, instant and range, with each value of each
// template variable: no query may fail; with the default selection (production, 30d, all teams
// and components) none may be empty or NaN unless dashboardAllowedEmpty says why; every
// organisation stat equals the exporter's own series; every max by keeps all of a series' labels.
func TestDashboardEndToEnd(t *testing.T) {
	bin := prometheusBin(t)
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	start := time.Now()
	srv := natstest.Start(t)
	nc, _ := srv.Connect()
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL(), "LOG_LEVEL": "info"},
		"--config", "testdata/config/valid-scenario.yaml")
	publish(t, nc, s, doratest.Scenario()...)
	prom := startPrometheus(t, bin, strings.TrimPrefix(s.Ops, "http://"))
	org := `scope="organization", environment="production", window="30d"`
	wait.For(t, 30*time.Second, func() error {
		v, err := prom.scalar(`max(dora_window_deployments{` + org + `})`)
		if err != nil || v != 12 {
			return fmt.Errorf("organisation deployments over 30d = %v (%w), want 12", v, err)
		}
		// A few scrapes, so that a range query has points.
		r, err := prom.query(`count_over_time(max(dora_window_deployments{` + org + `})[1m:1s]) >= 5`)
		if err != nil || string(r.Data.Result) == "[]" {
			return fmt.Errorf("fewer than 5 scrapes yet (%w)", err)
		}
		return nil
	})
	_, body := s.Get(t, "/metrics")
	exported := exporterLabels(parseExposition(t, body, nil).values)

	d := loadDashboard(t, filepath.Join(monitoringDir, dashboardFile))
	defaults := map[string]string{"environment": "production", "window": "30d", "team": ".*", "component": ".*",
		"benchmark": "dora2023", "__range": "1h", "__rate_interval": "1m"}
	// Each variable's values, as Grafana would list them.
	choices := map[string][]string{}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "custom":
			for _, o := range v.Options {
				choices[v.Name] = append(choices[v.Name], o.Value)
			}
		case "query":
			q, _ := v.Query.(map[string]any)["query"].(string)
			m := regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`).FindStringSubmatch(strings.ReplaceAll(q, "$team", ".*"))
			if m == nil {
				t.Fatalf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, q)
			}
			b, err := prom.get("/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {m[1]}})
			var r struct{ Data []string }
			if err == nil {
				err = json.Unmarshal(b, &r)
			}
			if err != nil || len(r.Data) == 0 {
				t.Fatalf("variable %s: %v %s", v.Name, err, b)
			}
			choices[v.Name] = r.Data
		}
	}
	var windows []string
	for _, l := range exported["dora_window_deployments"] {
		if !slices.Contains(windows, l["window"]) {
			windows = append(windows, l["window"])
		}
	}
	if !cmp.Equal(choices["window"], windows, cmp.Transformer("sort", func(s []string) []string { return slices.Sorted(slices.Values(s)) })) {
		t.Errorf("window options %v, the exporter serves %v", choices["window"], windows)
	}

	substitute := func(q string, vars map[string]string) string {
		for _, n := range slices.SortedFunc(maps.Keys(vars), func(a, b string) int { return len(b) - len(a) }) { // $__range before $__r…
			q = strings.ReplaceAll(q, "$"+n, vars[n])
		}
		return q
	}
	evaluated, panels := 0, 0
	for _, p := range d.panels() {
		panels++
		for _, tg := range p.Targets {
			name := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
			// The default selection: data everywhere the scenario has it.
			q := substitute(tg.Expr, defaults)
			instant, ranged, err := evaluate(prom, q)
			evaluated++
			if err != nil {
				t.Errorf("%s: %s: %v", name, q, err)
				continue
			}
			if why, ok := dashboardAllowedEmpty[p.Title]; ok {
				t.Logf("%s may be empty: %s", name, why)
			} else if missing := unservedSeries(tg.Expr, exported); missing != "" {
				t.Logf("%s may be empty: the exporter does not serve %s yet", name, missing)
			} else {
				for kind, res := range map[string][]promSample{"instant": instant, "range": ranged} {
					if len(res) == 0 {
						t.Errorf("%s: %s result empty: %s", name, kind, q)
					}
					for _, smp := range res {
						if slices.Contains(smp.values(), "NaN") {
							t.Errorf("%s: %s result has NaN (%v): %s", name, kind, smp.Metric, q)
						}
					}
				}
			}
			for metric, uses := range dedupLabels(tg.Expr) {
				for _, labels := range uses {
					if labels == nil {
						continue // TestDashboardLint reports it
					}
					for _, series := range exported[metric] {
						for l := range series {
							if l != "__value__" && !slices.Contains(labels, l) {
								t.Errorf("%s: max by (%s) (%s) drops its label %s: distinct series would be merged",
									name, strings.Join(labels, ", "), metric, l)
								break
							}
						}
						break
					}
				}
			}
			if p.Type == "stat" && strings.Contains(tg.Expr, `scope="organization"`) {
				if err := equalsExporter(q, instant, exported); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			// Every other choice of each variable the query uses: it must still evaluate.
			for v, values := range choices {
				if !strings.Contains(tg.Expr, "$"+v) {
					continue
				}
				for _, value := range values {
					vars := withVar(defaults, v, value)
					if _, _, err := evaluate(prom, substitute(tg.Expr, vars)); err != nil {
						t.Errorf("%s with %s=%s: %v", name, v, value, err)
					}
					evaluated++
				}
			}
		}
	}
	t.Logf("%d panels, %d queries evaluated (each instant and range) in %s", panels, evaluated, time.Since(start).Round(time.Millisecond))
	s.Stop(t)
}

// withVar returns a copy of m with k set to v.
func withVar(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		if mk != k {
			out[mk] = mv
		}
	}
	return out
}

// unservedSeries names the first exporter series expr reads that the exporter does not serve.
func unservedSeries(expr string, exported map[string][]map[string]string) string {
	for name := range dedupLabels(expr) {
		if _, ok := exported[name]; !ok && strings.HasPrefix(name, "dora_window_") {
			return name
		}
	}
	return ""
}

// equalsExporter requires an organisation stat's instant result to equal the exporter's own
// series of the selector it reads, label set by label set.
func equalsExporter(q string, instant []promSample, exported map[string][]map[string]string) error {
	m := regexp.MustCompile(`\b(dora_window_\w+|dora_performance_level)\{([^}]*)\}`).FindStringSubmatch(q)
	if m == nil {
		return fmt.Errorf("reads no dora_window_* or dora_performance_level: %s", q)
	}
	want := map[string]float64{}
	for _, labels := range exported[m[1]] {
		if selectorMatches(m[2], labels) {
			v, _ := strconv.ParseFloat(labels["__value__"], 64)
			if strings.HasPrefix(q, "1 - ") { // a share of what the exporter serves the complement of
				v = 1 - v
			}
			want[labelKey(labels)] = v
		}
	}
	got := map[string]float64{}
	for _, smp := range instant {
		v, _ := strconv.ParseFloat(fmt.Sprint(smp.Value[1]), 64)
		if math.IsNaN(v) {
			v = -1
		}
		got[labelKey(smp.Metric)] = v
	}
	if diff := cmp.Diff(want, got); diff != "" || len(want) == 0 {
		return fmt.Errorf("differs from the exporter's %s{%s} (-exporter +dashboard):\n%s", m[1], m[2], diff)
	}
	return nil
}

// labelKey identifies a series by its labels other than the name, value and scrape target;
// Prometheus stores no empty label.
func labelKey(labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		if v != "" && !slices.Contains([]string{"__name__", "__value__", "instance", "job"}, k) {
			parts = append(parts, k+"="+v)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
