package dora

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

// rated is one value and the level a set must give it.
type rated struct {
	v    float64
	want Level
}

// around lists the values just below, exactly at and just above an edge with their levels.
func around(edge float64, below, at, above Level) []rated {
	return []rated{{math.Nextafter(edge, math.Inf(-1)), below}, {edge, at}, {math.Nextafter(edge, math.Inf(1)), above}}
}

func join(rs ...[]rated) []rated {
	var out []rated
	for _, r := range rs {
		out = append(out, r...)
	}
	return out
}

const (
	hour  = 3600.0
	dayS  = 24 * hour
	week  = 7 * dayS
	month = 30 * dayS  // the tables' "1 month"
	six   = 180 * dayS // "6 months"
)

// TestBenchmarkEdges rates values exactly at, just below and just above every edge of every set, as
// each set's published table (and, for dora2021's gaps, the "gap belongs to the better adjoining
// level" rule) says. The expected levels are written out from the tables, not derived from the YAML.
func TestBenchmarkEdges(t *testing.T) {
	E, H, M, L := LevelElite, LevelHigh, LevelMedium, LevelLow
	tests := []struct {
		set, metric string
		values      []rated
	}{
		// 2021: elite on demand · high once per week – once per month · medium once per month – once
		// per 6 months · low less than once per 6 months. The gap between daily and weekly is elite's.
		{"dora2021", MetricDeploymentFrequency, join(
			around(1.0/7, H, H, E), around(1.0/30, M, H, H), around(1.0/180, L, M, M),
			[]rated{{0.5, E}, {1, E}, {0, L}})},
		// elite < 1 h · high 1 d – 1 w · medium 1 month – 6 months · low > 6 months. The 1 h – 1 d gap
		// is elite's, the 1 w – 1 month gap high's.
		{"dora2021", MetricLeadTime, join(
			around(hour, E, E, E), around(dayS, E, H, H), around(week, H, H, H), around(month, H, M, M),
			around(six, M, M, L), []rated{{0, E}, {12 * hour, E}, {14 * dayS, H}})},
		// elite < 1 h · high < 1 d · medium 1 d – 1 w · low > 6 months. The 1 w – 6 months gap is medium's.
		{"dora2021", MetricRecoveryTime, join(
			around(hour, E, H, H), around(dayS, H, M, M), around(week, M, M, M), around(six, M, M, L),
			[]rated{{30 * dayS, M}})},
		// elite 0–15% · high, medium and low 16–30%: the 15–16% gap is elite's, the shared band
		// high's (medium is unreachable), above 30% no band: low.
		{"dora2021", MetricChangeFailRate, join(
			around(0.15, E, E, E), around(0.16, E, H, H), around(0.30, H, H, L),
			[]rated{{0, E}, {0.155, E}, {0.2, H}, {1, L}})},

		{"dora2023", MetricDeploymentFrequency, join(around(1, H, E, E), around(1.0/7, M, H, H), around(1.0/30, L, M, M))},
		{"dora2023", MetricLeadTime, join(around(dayS, E, H, H), around(week, H, M, M), around(month, M, L, L))},
		{"dora2023", MetricChangeFailRate, join(around(0.05, E, E, H), around(0.10, H, H, M), around(0.15, M, M, L))},
		{"dora2023", MetricRecoveryTime, join(around(hour, E, H, H), around(dayS, H, M, M), around(week, M, L, L))},

		// DevLake: week median ≥ 7 elite, ≥ 1 high, month median ≥ 1 medium, else low, on the
		// devlake_deployment_days score (week median + month median ÷ 32).
		{"devlake2023", MetricDeploymentFrequency, join(
			around(7, H, E, E), around(1, M, H, H), around(1.0/32, L, M, M),
			[]rated{{5, H}, {6 + 31.0/32, H}, {31.0 / 32, M}, {0, L}})},
		{"devlake2023", MetricLeadTime, join(around(dayS, E, H, H), around(week, H, M, M), around(month, M, L, L))},
		{"devlake2023", MetricChangeFailRate, join(around(0.05, E, E, H), around(0.10, H, H, M), around(0.15, M, M, L))},
		{"devlake2023", MetricRecoveryTime, join(around(hour, E, H, H), around(dayS, H, M, M), around(week, M, L, L))},

		// Seed 2's targets are the elite edges, all strict ("> 10 deployments/dag", "< 2 uur",
		// "< 5%", "< 30 minuten"); below them the levels are dora2023's high and medium edges.
		{"platform", MetricDeploymentFrequency, join(around(10, H, H, E), around(1.0/7, M, H, H), around(1.0/30, L, M, M),
			[]rated{{1, H}})},
		{"platform", MetricLeadTime, join(around(2*hour, E, H, H), around(week, H, M, M), around(month, M, L, L))},
		{"platform", MetricChangeFailRate, join(around(0.05, E, H, H), around(0.10, H, H, M), around(0.15, M, M, L))},
		{"platform", MetricRecoveryTime, join(around(30*60, E, H, H), around(dayS, H, M, M), around(week, M, L, L))},
	}
	for _, tt := range tests {
		t.Run(tt.set+"/"+tt.metric, func(t *testing.T) {
			b, ok := LookupBenchmark(tt.set)
			if !ok {
				t.Fatalf("no benchmark set %q", tt.set)
			}
			th, ok := b.Metrics[tt.metric]
			if !ok {
				t.Fatalf("%s rates no %s", tt.set, tt.metric)
			}
			var want, got []string
			for _, r := range tt.values {
				want = append(want, fmt.Sprintf("%v: %v", r.v, r.want))
				got = append(got, fmt.Sprintf("%v: %v", r.v, th.Rate(r.v)))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("levels (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBenchmarkMeasures pins what each set compares: a set must name the measure its table is about.
func TestBenchmarkMeasures(t *testing.T) {
	want := map[string]map[string]string{
		"dora2021": {MetricDeploymentFrequency: MeasureDeploymentsPerDay, MetricLeadTime: MeasureLeadTimeMedian,
			MetricChangeFailRate: MeasureChangeFailRate, MetricRecoveryTime: MeasureRecoveryTimeMedian},
		"dora2023": {MetricDeploymentFrequency: MeasureDeploymentsPerDay, MetricLeadTime: MeasureLeadTimeMedian,
			MetricChangeFailRate: MeasureChangeFailRate, MetricRecoveryTime: MeasureRecoveryTimeMedian},
		"devlake2023": {MetricDeploymentFrequency: MeasureDevLakeDeploymentDays, MetricLeadTime: MeasureLeadTimeMedian,
			MetricChangeFailRate: MeasureChangeFailRate, MetricRecoveryTime: MeasureRecoveryTimeMedian},
		// The seed defines MTTR as a mean ("Gemiddelde tijd om te herstellen").
		"platform": {MetricDeploymentFrequency: MeasureDeploymentsPerDay, MetricLeadTime: MeasureLeadTimeMedian,
			MetricChangeFailRate: MeasureChangeFailRate, MetricRecoveryTime: MeasureRecoveryTimeMean},
	}
	got := map[string]map[string]string{}
	for _, name := range BenchmarkNames() {
		b, _ := LookupBenchmark(name)
		got[name] = map[string]string{}
		for m, th := range b.Metrics {
			got[name][m] = th.Measure
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("measures (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"dora2021", "dora2023", "devlake2023", "platform"}, BenchmarkNames()); diff != "" {
		t.Errorf("BenchmarkNames (-want +got):\n%s", diff)
	}
}

func TestParseBenchmarksRejects(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"operator against better", `{sets: [{name: x, metrics: {lead_time: {measure: lead_time_median, better: lower, elite: ">1", high: 2, medium: 3}}}]}`,
			"elite: operator > does not fit better: lower"},
		{"unknown operator", `{sets: [{name: x, metrics: {lead_time: {measure: lead_time_median, better: lower, elite: "=<1", high: 2, medium: 3}}}]}`,
			`edge "=<1": not a number or fraction`},
		{"out of order", `{sets: [{name: x, metrics: {lead_time: {measure: lead_time_median, better: lower, elite: 3, high: 2, medium: 3}}}]}`,
			"edges out of order"},
		{"unknown measure", `{sets: [{name: x, metrics: {lead_time: {measure: lead_time_p90, better: lower, elite: 1, high: 2, medium: 3}}}]}`,
			`unknown measure "lead_time_p90"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseBenchmarks([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseBenchmarks error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestDevLakeMedian is DevLake's median of its SQL: the largest value whose percent_rank()
// ((rank − 1) ÷ (rows − 1), ties share the lowest rank; 0 for one row) is at most 0.5.
func TestDevLakeMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []int
		want int
	}{
		{"one", []int{3}, 3},
		{"two: the lower", []int{7, 1}, 1},
		{"three: the middle", []int{0, 7, 2}, 2},
		{"four: the lower middle", []int{7, 7, 0, 0}, 0},
		{"four, one zero week", []int{0, 7, 7, 7}, 7},
		{"ties share the lowest rank", []int{1, 1, 1, 5, 5}, 1},
		{"ties above the middle", []int{0, 5, 5, 5, 5}, 5},
		{"five", []int{4, 0, 3, 1, 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := devlakeMedian(tt.xs); got != tt.want {
				t.Errorf("devlakeMedian(%v) = %d, want %d", tt.xs, got, tt.want)
			}
		})
	}
}

// levelOf collects s and returns dora_performance_level of one component's production metric per
// window label ("-" when absent).
func levelOf(t *testing.T, s *State, component, metric string, windows ...string) []string {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() { s.Collect(ch); close(ch) }()
	got := map[string]string{}
	for m := range ch {
		if m.Desc() != descLevel {
			continue
		}
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		lv := map[string]string{}
		for _, l := range pb.GetLabel() {
			lv[l.GetName()] = l.GetValue()
		}
		if lv["scope"] == ScopeComponent && lv["component"] == component && lv["metric"] == metric {
			got[lv["window"]] = Level(pb.GetGauge().GetValue()).String()
		}
	}
	out := make([]string, len(windows))
	for i, w := range windows {
		out[i] = w + "=-"
		if l, ok := got[w]; ok {
			out[i] = w + "=" + l
		}
	}
	return out
}

// deployAt returns one production deployment of component per time.
func deployAt(component string, at ...time.Time) []events.Event {
	evs := make([]events.Event, len(at))
	for i, a := range at {
		evs[i] = doratest.Dep{App: component + "-prod", Component: component, Team: "t", Env: events.EnvironmentProduction,
			History: int64(i + 1), Finished: a}.Event()
	}
	return evs
}

// days returns 12:00 UTC of each of n days from first on, skipping weekdays in skip.
func days(first time.Time, n int, skip ...time.Weekday) []time.Time {
	var out []time.Time
	for i := range n {
		d := first.AddDate(0, 0, i)
		ok := true
		for _, s := range skip {
			ok = ok && d.Weekday() != s
		}
		if ok {
			out = append(out, d.Add(12*time.Hour))
		}
	}
	return out
}

// TestDevLakeDeploymentFrequency rates devlake2023's deployment frequency end to end. The scrape is at
// Sunday 2026-03-22 18:00 UTC, so the 28d window is exactly the four calendar weeks Feb 23 – Mar 22
// (DevLake's range: the calendar days of now, now − 1 d, … after now − 28 d) and the 10d window
// Mar 13 – Mar 22: Fri–Sun of one week and the whole next week.
func TestDevLakeDeploymentFrequency(t *testing.T) {
	now := time.Date(2026, 3, 22, 18, 0, 0, 0, time.UTC)
	feb23 := time.Date(2026, 2, 23, 0, 0, 0, 0, time.UTC) // a Monday
	tests := []struct {
		name string
		at   []time.Time
		want []string
	}{
		// Weeks [7 7 0 0]: the mean (3.5 days a week) would be high, DevLake's median is 0. Months
		// (Feb 23–28: 6 days, Mar 1–22: 8 days): median 6 ≥ 1, so medium. 10d: weeks [0 0]: low,
		// months [0]: low.
		{"two busy weeks then none", days(feb23, 14), []string{"1d=low", "10d=low", "28d=medium"}},
		// Weeks [5 5 5 5] (weekdays only): a mean of 5 was elite; DevLake needs a median of 7.
		{"weekdays", days(feb23, 28, time.Saturday, time.Sunday), []string{"1d=low", "10d=high", "28d=high"}},
		// 10d: weeks [3 7] → 3: the partial week is a week of its own, as in DevLake.
		{"every day", days(feb23, 28), []string{"1d=high", "10d=high", "28d=elite"}},
		// Weeks [1 0 0 0] → 0; months [1 0] → 0: low (the mean 0.25 ≥ 7/30 was medium).
		{"one deployment four weeks ago", days(feb23, 1), []string{"1d=low", "10d=low", "28d=low"}},
		// 10d: weeks Mar 13–15 [3] and Mar 16–22 [7]: median 3, high. 28d: weeks [0 0 3 7] → 0 and
		// months (Feb 23–28, Mar 1–22) [0 10] → 0: low, where the mean (2.5 days a week) was high.
		{"the last ten days", days(time.Date(2026, 3, 13, 0, 0, 0, 0, time.UTC), 10),
			[]string{"1d=high", "10d=high", "28d=low"}},
		// Two UTC days inside the last 24 h (Mar 21 23:00, Mar 22 01:00) were 2 days in a 1-day window,
		// "14 days a week" and elite. DevLake's 1-day range is today only: one deployment day, high.
		// 10d: weeks [0 2] → 0, month [2]: medium. 28d: weeks [0 0 0 2], months [0 2]: low.
		{"two days in the last 24 hours", []time.Time{now.Add(-19 * time.Hour), now.Add(-17 * time.Hour)},
			[]string{"1d=high", "10d=medium", "28d=low"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{Windows: []time.Duration{day, 10 * day, 28 * day}, Benchmark: "devlake2023",
				Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			apply(t, s, deployAt("api", tt.at...))
			if diff := cmp.Diff(tt.want, levelOf(t, s, "api", MetricDeploymentFrequency, "1d", "10d", "28d")); diff != "" {
				t.Errorf("deployment_frequency levels (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDeploymentDaysPerWeek: the mean measure counts calendar days (as DevLake's range does), so it
// never exceeds 7, and a window shorter than a week is not rated on it: a partial week extrapolated
// to seven days (one deployment day in a 1d window = "7 a week") says nothing about a week.
func TestDeploymentDaysPerWeek(t *testing.T) {
	now := time.Date(2026, 3, 22, 18, 0, 0, 0, time.UTC)
	windows := []time.Duration{day, 3 * day, 7 * day, 14 * day}
	tests := []struct {
		name string
		at   []time.Time
		want []string // per window: value, or "-" when not rated
	}{
		// Mar 21 23:00 and Mar 22 01:00 are two UTC days inside the last 24 h: 14 a week before.
		{"two days in the last 24 hours", []time.Time{now.Add(-19 * time.Hour), now.Add(-17 * time.Hour)},
			[]string{"-", "-", "2", "1"}},
		// Mar 15 20:00 is in the exact 7d window (after now − 7 d) but not on its calendar days
		// (Mar 16–22), which hold 7 deployment days: 7, not 8.
		{"every day of the week and the evening before", append(days(time.Date(2026, 3, 16, 0, 0, 0, 0, time.UTC), 7),
			time.Date(2026, 3, 15, 20, 0, 0, 0, time.UTC)), []string{"-", "-", "7", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{Windows: windows, Benchmark: "devlake2023", Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			apply(t, s, deployAt("api", tt.at...))
			var got []string
			for _, ser := range s.series {
				for i, w := range seriesWindows(ser, now.UnixMilli(), windows) {
					v, ok := w.values(windows[i]).measure(MeasureDeploymentDaysPerWeek)
					if !ok {
						got = append(got, "-")
						continue
					}
					got = append(got, fmt.Sprint(v))
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("deployment days per week by window %v (-want +got):\n%s", windows, diff)
			}
		})
	}
}

// TestRecoveryTimeMean: the mean the platform set rates (its MTTR target is a mean) next to the median.
func TestRecoveryTimeMean(t *testing.T) {
	w := windowStats{days: map[int32]struct{}{}, recoveries: []int64{600_000, 1_200_000, 4_200_000}}
	v := w.values(7 * day)
	got := map[string]float64{}
	for _, m := range []string{MeasureRecoveryTimeMedian, MeasureRecoveryTimeMean} {
		x, ok := v.measure(m)
		if !ok {
			t.Fatalf("%s: no value", m)
		}
		got[m] = x
	}
	want := map[string]float64{MeasureRecoveryTimeMedian: 1200, MeasureRecoveryTimeMean: 2000}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recovery measures (-want +got):\n%s", diff)
	}
	if _, ok := (&windowStats{days: map[int32]struct{}{}}).values(7 * day).measure(MeasureRecoveryTimeMean); ok {
		t.Error("recovery_time_mean without recoveries has a value")
	}
}
