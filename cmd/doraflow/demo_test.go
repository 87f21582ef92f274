package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/doraflow/doraflow/internal/devlaketest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestDemoMatchesGolden runs `doraflow demo --exit` from freshly built binaries against a real
// kube-apiserver and compares its final tables (DevLake rows, the exporter's DORA values per team)
// with testdata/demo.golden.txt: the simulation is deterministic for a seed. Beyond the golden, it
// checks what must hold whatever the numbers: one logical deployment per change in DevLake and in
// the exporter (not one per cluster), the GitOps revert as a change failure, a rollback on one of
// two clusters as one failure, the rolling update's new commit, and counters that never decrease
// across the scrapes taken while the demo runs and once it has settled.
func TestDemoMatchesGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services and starts kube-apiserver")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is unset in CI; make test sets it")
		}
		t.Skip("KUBEBUILDER_ASSETS unset (hack/tools.sh kube prints it)")
	}
	bin := t.TempDir()
	for _, s := range services {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, s), ".")
		cmd.Dir = filepath.Join("..", "..", "services", s)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", s, err, out)
		}
	}
	dir := t.TempDir()
	summary, rows := filepath.Join(dir, "summary.txt"), filepath.Join(dir, "rows.txt")
	var (
		scrapes  = &monotonic{}
		stop     = make(chan struct{})
		scraping sync.WaitGroup
		exporter string
		lake     *devlaketest.DevLake
		conns    map[string]devlaketest.Connection
		did      expectations
		final    map[string]*dto.MetricFamily
	)
	observe := &demoObserver{
		started: func(ops map[string]string) {
			exporter = ops["metrics-exporter"] + "/metrics"
			scraping.Go(func() { scrapes.poll(t.Context(), exporter, stop) })
		},
		settled: func(l *devlaketest.DevLake, c map[string]devlaketest.Connection, d expectations) {
			close(stop)
			scraping.Wait()
			lake, conns, did = l, c, d
			var err error
			if final, err = scrape(t.Context(), exporter); err != nil {
				t.Errorf("scrape after the run: %v", err)
				return
			}
			scrapes.add(final)
		},
	}
	var out bytes.Buffer
	err := demoObserved(t.Context(), []string{"--exit", "--seed", "42", "--bin", bin, "--kube-assets", assets,
		"--dir", filepath.Join(dir, "run"), "--ops-port", "0", "--summary", summary, "--rows", rows},
		func(k string) string {
			if k == "DORAFLOW_STATE_FILE" {
				return filepath.Join(dir, "pipeline.json")
			}
			return ""
		}, &out, observe)
	if err != nil {
		logs, _ := os.ReadDir(filepath.Join(dir, "run", "logs"))
		t.Fatalf("demo: %v\n%s\n(logs: %v)", err, out.String(), logs)
	}
	compareGolden(t, summary, filepath.Join("testdata", "demo.golden.txt"))
	// Every row and every dora_* series, not only the totals above.
	compareGolden(t, rows, filepath.Join("testdata", "demo.rows.golden.txt"))
	applied := 0
	start, _ := demoWeeks(time.Now())
	for _, s := range timeline(42, start) {
		if s.kind != stepIncident {
			applied++
		}
	}
	for _, want := range []string{fmt.Sprintf("[%d/%d]", applied, applied), "rolled back on prod-us", "sync to prod-eu FAILED", "Degraded 10m0s later",
		"GitOps revert synced to prod-eu", "GitOps revert synced to prod-us", "rolling update (old and new pods live for 6m0s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress output misses %q", want)
		}
	}
	if lake == nil || final == nil {
		t.Fatal("the demo never settled")
	}

	t.Run("one logical deployment per change", func(t *testing.T) {
		perComponent := map[string]int{}
		for _, d := range lake.Deployments(conns["global"].ID) {
			if d.Environment == "PRODUCTION" {
				perComponent[componentOf(d)]++
			}
		}
		for _, c := range demoComponents {
			want := len(did.production[c.name])
			if got := perComponent[c.name]; got != want {
				t.Errorf("%s: DevLake holds %d production deployments, want %d (one per change, rollback, revert and failed sync, not one per cluster)",
					c.name, got, want)
			}
			if got := int(sumWhere(final["dora_deployments_total"], "component", c.name, "environment", "production")); got != want {
				t.Errorf("%s: dora_deployments_total{environment=\"production\"} sums to %d, want %d", c.name, got, want)
			}
		}
	})
	t.Run("a GitOps revert is a change failure detected by revert", func(t *testing.T) {
		if len(did.reverted) == 0 {
			t.Fatal("the world reverted nothing")
		}
		for _, c := range did.reverted {
			if got := sumWhere(final["dora_change_failures_total"], "component", c, "environment", "production", "detection", "revert"); got < 1 {
				t.Errorf("%s: dora_change_failures_total{detection=\"revert\",environment=\"production\"} = %v, want > 0", c, got)
			}
			if got := sumWhere(final["dora_deployments_total"], "component", c, "environment", "production", "kind", "rollback"); got < 1 {
				t.Errorf("%s: no production deployment of kind rollback: the revert should be one", c)
			}
		}
	})
	t.Run("a rollback on one of two clusters fails the change once", func(t *testing.T) {
		if len(did.rolledBack) == 0 {
			t.Fatal("the world rolled nothing back")
		}
		for _, c := range did.rolledBack {
			// The incident and the rollback both blame the one change.
			got := sumWhere(final["dora_change_failures_total"], "component", c, "environment", "production")
			if want := did.failures[c]; int(got) != want {
				t.Errorf("%s: %v production change failures, want %d", c, got, want)
			}
		}
	})
	t.Run("the rolling update deployed its new commit", func(t *testing.T) {
		if len(did.rolling) == 0 {
			t.Fatal("the world made no rolling update")
		}
		global := conns["global"].ID
		commits := map[string][]string{}
		for _, r := range lake.DeploymentCommits(global) {
			commits[r.CicdDeploymentID] = append(commits[r.CicdDeploymentID], r.CommitSha)
		}
		for _, r := range did.rolling {
			found := false
			for _, d := range lake.Deployments(global) {
				if componentOf(d) != r.component || !d.FinishedDate.Equal(r.finished) {
					continue
				}
				found = true
				if got := commits[d.ID]; len(got) != 1 || got[0] != r.new {
					t.Errorf("%s on %s: DevLake deployment %q has commits %v, want the new image's %s (the old one is %s)",
						r.component, r.cluster, d.DisplayTitle, got, r.new, r.old)
				}
			}
			if !found {
				t.Errorf("%s on %s: no DevLake deployment finished at %s", r.component, r.cluster, r.finished)
			}
		}
	})
	t.Run("counters never decrease", func(t *testing.T) {
		if scrapes.n < 2 {
			t.Fatalf("only %d scrapes of the exporter", scrapes.n)
		}
		for _, d := range scrapes.decreases {
			t.Error(d)
		}
		t.Logf("%d scrapes, %d counter and histogram series in the last", scrapes.n, len(scrapes.last))
	})
}

// componentOf reads a DevLake deployment's component from its title ("checkout-api deploy #3 to …").
func componentOf(d devlaketest.Deployment) string {
	c, _, _ := strings.Cut(d.DisplayTitle, " ")
	return c
}

// sumWhere adds the counter values of the series of mf whose labels have the given name/value pairs.
func sumWhere(mf *dto.MetricFamily, pairs ...string) float64 {
	var total float64
	for _, m := range mf.GetMetric() {
		match := true
		for i := 0; i+1 < len(pairs); i += 2 {
			match = match && label(m, pairs[i]) == pairs[i+1]
		}
		if match {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// monotonic compares each scrape of the exporter with the one before: no counter, histogram bucket,
// count or sum may decrease, and none may disappear.
type monotonic struct {
	n         int
	last      map[string]float64
	decreases []string
}

// poll scrapes url until stop is closed. The exporter may refuse scrapes while it rebuilds.
func (m *monotonic) poll(ctx context.Context, url string, stop <-chan struct{}) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		if families, err := scrape(ctx, url); err == nil {
			m.add(families)
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (m *monotonic) add(families map[string]*dto.MetricFamily) {
	now := cumulative(families)
	for k, before := range m.last {
		after, ok := now[k]
		switch {
		case !ok:
			m.decreases = append(m.decreases, fmt.Sprintf("scrape %d: %s disappeared (was %v)", m.n+1, k, before))
		case after < before:
			m.decreases = append(m.decreases, fmt.Sprintf("scrape %d: %s went from %v down to %v", m.n+1, k, before, after))
		}
	}
	m.n++
	m.last = now
}

// cumulative flattens every counter (_total), histogram (_bucket, _count, _sum) and summary
// (_count, _sum) series to "name{labels}" → value.
func cumulative(families map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := func(suffix string, extra ...string) string {
				return name + suffix + "{" + strings.Join(append(append([]string(nil), labels...), extra...), ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					out[key("_bucket", fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
				out[key("_count")] = float64(h.GetSampleCount())
				out[key("_sum")] = h.GetSampleSum()
			case dto.MetricType_SUMMARY:
				out[key("_count")] = float64(m.GetSummary().GetSampleCount())
				out[key("_sum")] = m.GetSummary().GetSampleSum()
			default:
				if strings.HasSuffix(name, "_total") {
					out[key("")] = m.GetGauge().GetValue() + m.GetUntyped().GetValue()
				}
			}
		}
	}
	return out
}

// compareGolden compares the file got with the golden file (rewritten with -update).
func compareGolden(t *testing.T, gotPath, golden string) {
	t.Helper()
	got, err := os.ReadFile(gotPath)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (go test -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("demo output differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}
