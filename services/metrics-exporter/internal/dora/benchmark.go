package dora

import (
	_ "embed" // benchmarks.yaml
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Level is a DORA performance level. Its number is the value of dora_performance_level, so higher is
// better and dashboards can map 1–4 to names.
type Level int

// Levels.
const (
	LevelLow    Level = 1
	LevelMedium Level = 2
	LevelHigh   Level = 3
	LevelElite  Level = 4
)

func (l Level) String() string {
	switch l {
	case LevelLow:
		return "low"
	case LevelMedium:
		return "medium"
	case LevelHigh:
		return "high"
	case LevelElite:
		return "elite"
	}
	return "none"
}

// Rated metrics, the values of the metric label of dora_performance_level.
const (
	MetricDeploymentFrequency = "deployment_frequency"
	MetricLeadTime            = "lead_time"
	MetricChangeFailRate      = "change_fail_rate"
	MetricRecoveryTime        = "recovery_time"
)

// Measures a benchmark rates: which windowed value is compared with its edges.
const (
	MeasureDeploymentsPerDay = "deployments_per_day"
	// MeasureDeploymentDaysPerWeek is the mean: distinct UTC deployment days on the window's
	// calendar days ÷ (those days ÷ 7). It is at most 7 and has no value for windows shorter than a
	// week, which would rate a partial week extrapolated to seven days.
	MeasureDeploymentDaysPerWeek = "deployment_days_per_week"
	// MeasureDevLakeDeploymentDays is DevLake's deployment frequency as one number: the median
	// deployment days per calendar week, plus the median deployment days per calendar month ÷ 32.
	// The fraction stays below 1, so edges of 1 and more read the week median alone and an edge of
	// 1/32 reads "at least one deployment day in the median month", DevLake's last test.
	MeasureDevLakeDeploymentDays = "devlake_deployment_days"
	MeasureLeadTimeMedian        = "lead_time_median"
	MeasureChangeFailRate        = "change_fail_rate"
	MeasureRecoveryTimeMedian    = "recovery_time_median"
	// MeasureRecoveryTimeMean is the mean failed deployment recovery time, for targets stated as a
	// mean (MTTR). DORA's own tables are about the median.
	MeasureRecoveryTimeMean = "recovery_time_mean"
)

var measures = map[string]bool{MeasureDeploymentsPerDay: true, MeasureDeploymentDaysPerWeek: true,
	MeasureDevLakeDeploymentDays: true, MeasureLeadTimeMedian: true, MeasureChangeFailRate: true,
	MeasureRecoveryTimeMedian: true, MeasureRecoveryTimeMean: true}

// Threshold rates one metric: the edges of elite, high and medium; anything else is low.
type Threshold struct {
	Measure   string `yaml:"measure"`
	Better    string `yaml:"better"`    // lower or higher
	Inclusive bool   `yaml:"inclusive"` // the default operator of "lower" edges is <= instead of <
	Elite     Edge   `yaml:"elite"`
	High      Edge   `yaml:"high"`
	Medium    Edge   `yaml:"medium"`
}

// Edge is a threshold value and how a value meets it. In YAML it is a number or a fraction "a/b"
// (so that "once per week" is exactly 1/7 deployments per day, the same float a count of 1 over a
// 7-day window gives), optionally after an operator: ">", ">=", "<" or "<=". Without one, "higher"
// metrics meet an edge with >=, "lower" metrics with < (<= when the threshold is inclusive).
type Edge struct {
	Value float64
	Op    string // "" (the threshold's default), ">", ">=", "<" or "<="
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (e *Edge) UnmarshalYAML(n *yaml.Node) error {
	text := strings.TrimSpace(n.Value)
	op := ""
	for _, o := range []string{">=", "<=", ">", "<"} {
		if rest, ok := strings.CutPrefix(text, o); ok {
			op, text = o, strings.TrimSpace(rest)
			break
		}
	}
	num, den, isFrac := strings.Cut(text, "/")
	a, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return fmt.Errorf("line %d: edge %q: not a number or fraction", n.Line, n.Value)
	}
	if isFrac {
		b, err := strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err != nil || b == 0 {
			return fmt.Errorf("line %d: edge %q: bad denominator", n.Line, n.Value)
		}
		a /= b
	}
	*e = Edge{Value: a, Op: op}
	return nil
}

// op returns the operator value meets edge with.
func (t Threshold) op(edge Edge) string {
	switch {
	case edge.Op != "":
		return edge.Op
	case t.Better == "higher":
		return ">="
	case t.Inclusive:
		return "<="
	}
	return "<"
}

// Rate returns the level of value.
func (t Threshold) Rate(v float64) Level {
	meets := func(edge Edge) bool {
		switch t.op(edge) {
		case ">=":
			return v >= edge.Value
		case ">":
			return v > edge.Value
		case "<=":
			return v <= edge.Value
		}
		return v < edge.Value
	}
	switch {
	case meets(t.Elite):
		return LevelElite
	case meets(t.High):
		return LevelHigh
	case meets(t.Medium):
		return LevelMedium
	}
	return LevelLow
}

// Benchmark is a named set of thresholds, keyed by rated metric.
type Benchmark struct {
	Name    string               `yaml:"name"`
	Metrics map[string]Threshold `yaml:"metrics"`
}

//go:embed benchmarks.yaml
var benchmarksYAML []byte

// benchmarkSets are the sets in benchmarks.yaml, in file order.
var benchmarkSets = mustLoadBenchmarks(benchmarksYAML)

// BenchmarkNames lists the known benchmark sets in file order.
func BenchmarkNames() []string {
	names := make([]string, len(benchmarkSets))
	for i, b := range benchmarkSets {
		names[i] = b.Name
	}
	return names
}

// LookupBenchmark returns the named set.
func LookupBenchmark(name string) (Benchmark, bool) {
	for _, b := range benchmarkSets {
		if b.Name == name {
			return b, true
		}
	}
	return Benchmark{}, false
}

// mustLoadBenchmarks parses the embedded table; a broken table is a build defect, caught by every test.
func mustLoadBenchmarks(b []byte) []Benchmark {
	sets, err := parseBenchmarks(b)
	if err != nil {
		panic(err)
	}
	return sets
}

func parseBenchmarks(b []byte) ([]Benchmark, error) {
	var doc struct {
		Sets []Benchmark `yaml:"sets"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse benchmarks: %w", err)
	}
	for _, s := range doc.Sets {
		for m, t := range s.Metrics {
			switch m {
			case MetricDeploymentFrequency, MetricLeadTime, MetricChangeFailRate, MetricRecoveryTime:
			default:
				return nil, fmt.Errorf("benchmark %s: unknown metric %q", s.Name, m)
			}
			if !measures[t.Measure] {
				return nil, fmt.Errorf("benchmark %s: %s: unknown measure %q", s.Name, m, t.Measure)
			}
			if t.Better != "higher" && t.Better != "lower" {
				return nil, fmt.Errorf("benchmark %s: %s: better must be lower or higher", s.Name, m)
			}
			for _, e := range []struct {
				level string
				edge  Edge
			}{{"elite", t.Elite}, {"high", t.High}, {"medium", t.Medium}} {
				if op := t.op(e.edge); (t.Better == "higher") != strings.HasPrefix(op, ">") {
					return nil, fmt.Errorf("benchmark %s: %s: %s: operator %s does not fit better: %s", s.Name, m, e.level, op, t.Better)
				}
			}
			ordered := t.Elite.Value <= t.High.Value && t.High.Value <= t.Medium.Value
			if t.Better == "higher" {
				ordered = t.Elite.Value >= t.High.Value && t.High.Value >= t.Medium.Value
			}
			if !ordered {
				return nil, fmt.Errorf("benchmark %s: %s: edges out of order", s.Name, m)
			}
		}
	}
	return doc.Sets, nil
}
