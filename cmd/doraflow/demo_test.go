package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestDemoMatchesGolden runs `doraflow demo --exit` from freshly built binaries against a real
// kube-apiserver and compares its final tables (DevLake rows, the exporter's DORA values per team)
// with testdata/demo.golden.txt: the simulation is deterministic for a seed.
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
	out, err := cli(t, "", "demo", "--exit", "--seed", "42", "--bin", bin, "--kube-assets", assets,
		"--dir", filepath.Join(dir, "run"), "--ops-port", "0", "--summary", summary, "--rows", rows)
	if err != nil {
		logs, _ := os.ReadDir(filepath.Join(dir, "run", "logs"))
		t.Fatalf("demo: %v\n%s\n(logs: %v)", err, out, logs)
	}
	compareGolden(t, summary, filepath.Join("testdata", "demo.golden.txt"))
	// Every row and every dora_* series, not only the totals above.
	compareGolden(t, rows, filepath.Join("testdata", "demo.rows.golden.txt"))
	for _, want := range []string{"[116/116]", "rolled back on prod-us", "sync to prod-eu FAILED", "Degraded 10m0s later"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output misses %q", want)
		}
	}
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
