package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/doraflow/doraflow/internal/config"
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
}

// benchmarks are the benchmark sets the exporter knows (reference/dora.md).
var benchmarks = []string{"dora2021", "dora2023", "devlake2023"}

func defaultRules() rules {
	day := 24 * time.Hour
	return rules{Metrics: metricsRules{Windows: []time.Duration{day, 7 * day, 30 * day, 90 * day}, Benchmark: "dora2023"}}
}

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	m := r.Metrics
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
	if !slices.Contains(benchmarks, m.Benchmark) {
		p.Addf("metrics.benchmark", "%q is not one of %v", m.Benchmark, benchmarks)
	}
	return p.Err()
}
