package dora

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

var benchEnvs = []events.Environment{events.EnvironmentProduction, events.EnvironmentStaging,
	events.EnvironmentTesting, events.EnvironmentDevelopment}

// synthetic generates n events over components × 4 environments across the 400 days before
// doratest.Now: 90% deployments with one commit each, 8% change-failure signals, 2% incident states.
func synthetic(components, n int, fn func(events.Event)) {
	span := int64(400 * 24 * time.Hour)
	for i := range n {
		c, env := i%components, benchEnvs[(i/components)%4]
		comp := fmt.Sprintf("component-%04d", c)
		at := doratest.Now.Add(-time.Duration(span - span/int64(n)*int64(i))) // span*i would overflow int64
		dep := doratest.Dep{App: comp + "-" + string(env), Component: comp, Team: fmt.Sprintf("team-%02d", c%40),
			Env: env, History: int64(i), Finished: at}
		switch i % 50 {
		case 0, 1, 2, 3:
			prev := dep
			prev.History = int64(i - components*4)
			fn(doratest.Signal(prev, events.DetectionDegraded, at, at.Add(20*time.Minute), ""))
		case 4:
			fn(doratest.Incident{ID: "i-" + strconv.Itoa(i), Key: "ITN-" + strconv.Itoa(i), Team: dep.Team, Severity: "2",
				Change: events.IncidentResolved, Components: []string{comp}, Created: at, Resolved: at.Add(time.Hour),
				Observed: at.Add(time.Hour)}.Event())
		default:
			dep.Commits = []events.Commit{doratest.Commit(strconv.Itoa(i), comp, at.Add(-5*time.Hour))}
			fn(dep.Event())
		}
	}
}

func add(b *testing.B, s *State) func(events.Event) {
	return func(e events.Event) {
		var err error
		switch e := e.(type) {
		case events.DeploymentEnriched:
			_, err = s.AddDeployment(e)
		case events.IncidentEnriched:
			_, err = s.AddIncident(e)
		case events.ChangeFailureSignal:
			_, err = s.AddSignal(e)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRebuild1M applies 1,000,000 events (1,000 components × 4 environments) to an empty state,
// as a restart does after reading them from JetStream. Event construction is included; JSON
// decoding and JetStream reads are not. It reports the heap the state holds and the process's peak RSS.
func BenchmarkRebuild1M(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		s := newState(b, "dora2023", defaultWindows...)
		synthetic(1000, n, add(b, s))
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/event")
		runtime.KeepAlive(s)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/event")
	b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
}

// BenchmarkScrape gathers the full exposition of 1,000 components × 4 environments (40 teams,
// 30 deployments per component and environment in the last 90 days).
// Guarded: through the Guard the exporter serves (every counter and histogram series marked).
func BenchmarkScrape(b *testing.B) {
	for _, guarded := range []bool{false, true} {
		b.Run(map[bool]string{false: "state", true: "guarded"}[guarded], func(b *testing.B) { benchScrape(b, guarded) })
	}
}

func benchScrape(b *testing.B, guarded bool) {
	s := newState(b, "dora2023", defaultWindows...)
	synthetic(1000, 1000*4*30*4, add(b, s)) // 400 days, so ~30 per series within 90 days
	reg := prometheus.NewRegistry()
	if guarded {
		g := NewGuard(s)
		g.Serve()
		reg.MustRegister(g)
	} else {
		reg.MustRegister(s)
	}
	var series int
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		series = 0
		for _, mf := range mfs {
			series += len(mf.Metric)
		}
	}
	b.ReportMetric(float64(series), "metrics")
}

func peakRSSMiB(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	return 0
}
