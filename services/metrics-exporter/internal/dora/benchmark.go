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
	MeasureDeploymentsPerDay     = "deployments_per_day"
	MeasureDeploymentDaysPerWeek = "deployment_days_per_week"
	MeasureLeadTimeMedian        = "lead_time_median"
	MeasureChangeFailRate        = "change_fail_rate"
	MeasureRecoveryTimeMedian    = "recovery_time_median"
)

// Threshold rates one metric: the edges of elite, high and medium; anything else is low.
type Threshold struct {
	Measure   string `yaml:"measure"`
	Better    string `yaml:"better"` // lower or higher
	Inclusive bool   `yaml:"inclusive"`
	Elite     Edge   `yaml:"elite"`
	High      Edge   `yaml:"high"`
	Medium    Edge   `yaml:"medium"`
}

// Edge is a threshold value. In YAML it is a number or a fraction "a/b", so that "once per week"
// is exactly 1/7 deployments per day, the same float a count of 1 over a 7-day window gives.
type Edge float64

// UnmarshalYAML implements yaml.Unmarshaler.
func (e *Edge) UnmarshalYAML(n *yaml.Node) error {
	num, den, isFrac := strings.Cut(n.Value, "/")
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
	*e = Edge(a)
	return nil
}

// Rate returns the level of value.
func (t Threshold) Rate(v float64) Level {
	meets := func(edge Edge) bool {
		switch {
		case t.Better == "higher":
			return v >= float64(edge)
		case t.Inclusive:
			return v <= float64(edge)
		default:
			return v < float64(edge)
		}
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
	measures := map[string]bool{MeasureDeploymentsPerDay: true, MeasureDeploymentDaysPerWeek: true,
		MeasureLeadTimeMedian: true, MeasureChangeFailRate: true, MeasureRecoveryTimeMedian: true}
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
			ordered := t.Elite <= t.High && t.High <= t.Medium
			if t.Better == "higher" {
				ordered = t.Elite >= t.High && t.High >= t.Medium
			} else if t.Better != "lower" {
				return nil, fmt.Errorf("benchmark %s: %s: better must be lower or higher", s.Name, m)
			}
			if !ordered {
				return nil, fmt.Errorf("benchmark %s: %s: edges out of order", s.Name, m)
			}
		}
	}
	return doc.Sets, nil
}
