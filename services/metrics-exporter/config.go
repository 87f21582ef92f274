package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora"
)

// rules is the exporter's behaviour, from the YAML file.
type rules struct {
	Metrics metricsRules `yaml:"metrics"`
}

type metricsRules struct {
	// Windows are the trailing windows the exporter computes exact values for.
	Windows []time.Duration `yaml:"windows"`
	// Benchmark is the benchmark set performance levels are rated against.
	Benchmark string `yaml:"benchmark"`
	// EvaluationTime, when set (RFC 3339), pins the end of every window instead of the clock: to
	// reproduce a past report, and for tests. Empty: the windows end now.
	EvaluationTime string `yaml:"evaluation_time"`
	// IncidentLinkLookback bounds the exporter's incident attribution: an incident whose last
	// production deployment finished longer before it is linked to nothing (link reason too_old).
	// 0 disables the limit.
	IncidentLinkLookback time.Duration `yaml:"incident_link_lookback"`

	evaluationTime time.Time
}

func defaultRules() rules {
	day := 24 * time.Hour
	return rules{Metrics: metricsRules{Windows: []time.Duration{day, 7 * day, 30 * day, 90 * day}, Benchmark: "dora2023",
		IncidentLinkLookback: 30 * day}}
}

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	m := &r.Metrics
	if len(m.Windows) == 0 {
		p.Addf("metrics.windows", "at least one window is required, such as 168h")
	}
	seen := map[time.Duration]int{}
	for i, w := range m.Windows {
		path := fmt.Sprintf("metrics.windows[%d]", i)
		switch j, dup := seen[w]; {
		case w < time.Hour || w%time.Hour != 0:
			p.Addf(path, "must be a whole number of hours, at least 1h, got %s", w)
		case dup:
			p.Addf(path, "%s repeats metrics.windows[%d]", w, j)
		default:
			seen[w] = i
		}
	}
	if names := dora.BenchmarkNames(); !slices.Contains(names, m.Benchmark) {
		p.Addf("metrics.benchmark", "%q is not one of %v", m.Benchmark, names)
	}
	if m.IncidentLinkLookback < 0 {
		p.Addf("metrics.incident_link_lookback", "must not be negative (0 disables the limit), got %s", m.IncidentLinkLookback)
	}
	if m.EvaluationTime != "" {
		t, err := time.Parse(time.RFC3339, m.EvaluationTime)
		if err != nil {
			p.Addf("metrics.evaluation_time", "%q is not an RFC 3339 time such as 2026-03-31T00:00:00Z", m.EvaluationTime)
		}
		m.evaluationTime = t
	}
	return p.Err()
}

// clock returns what the windows end at: the pinned evaluation time, or the wall clock.
func (m metricsRules) clock() func() time.Time {
	if t := m.evaluationTime; !t.IsZero() {
		return func() time.Time { return t }
	}
	return time.Now
}
