package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/pkg/events"
)

// TestEveryCommandHasHelp requires --help of every command and subcommand to exit 0 with a
// description and examples, without doing the command (NATS_URL points nowhere).
func TestEveryCommandHasHelp(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"status", []string{"status", "--help"}, "Usage: doraflow status"},
		{"dlq", []string{"dlq", "--help"}, "Usage: doraflow dlq list|replay"},
		{"dlq help", []string{"dlq", "help"}, "Usage: doraflow dlq list|replay"},
		{"dlq list", []string{"dlq", "list", "--help"}, "Usage: doraflow dlq list [flags]"},
		{"dlq replay", []string{"dlq", "replay", "-h"}, "Usage: doraflow dlq replay (--all | --seq N,…)"},
		{"backfill", []string{"backfill", "--help"}, "Usage: doraflow backfill --instance NAME"},
		{"dora", []string{"dora", "--help"}, "Usage: doraflow dora [flags]"},
		{"check-config", []string{"check-config", "--help"}, "Usage: doraflow check-config FILE"},
		{"local", []string{"local", "--help"}, "Usage: doraflow local [flags]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := cliEnv(t, map[string]string{"NATS_URL": "nats://127.0.0.1:1", "XDG_RUNTIME_DIR": t.TempDir()}, tc.args...)
			if err != nil {
				t.Fatalf("%v = %v, want nil (exit 0)\n%s", tc.args, err, out)
			}
			if !strings.HasPrefix(out, tc.want) || !strings.Contains(out, "Examples:\n  doraflow ") {
				t.Errorf("help misses its usage line %q or examples:\n%s", tc.want, out)
			}
			if strings.Contains(out, "STREAM") || strings.Contains(out, " long\n") || regexp.MustCompile(`\n  -[a-z]`).MatchString(out) || errOut != "" {
				t.Errorf("help ran the command, shows a Go placeholder or single-dash flags, or wrote to stderr:\n%s\nstderr: %s", out, errOut)
			}
		})
	}
	if out, _ := cli(t, "", "backfill", "--help"); !strings.Contains(out, "--wait duration") {
		t.Errorf("backfill --help should name --wait's value a duration:\n%s", out)
	}
	if out, err := cli(t, "", "status", "--frobnicate"); err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -frobnicate") || out != "" {
		t.Errorf("status --frobnicate = %v, output %q; want one error and no usage dump", err, out)
	}
}

// TestDLQSelectionAndJSON: a bogus --service is an error naming the services, an empty DLQ is [] in
// JSON, and deliveries is a number.
func TestDLQSelectionAndJSON(t *testing.T) {
	srv := natstest.Start(t)
	for _, args := range [][]string{{"dlq", "list", "--service", "bogus"}, {"dlq", "replay", "--all", "--service", "bogus"}} {
		_, err := cli(t, srv.URL(), args...)
		if err == nil || !strings.Contains(err.Error(), `unknown service "bogus"`) || !strings.Contains(err.Error(), "argocd-watcher, devlake-sink, enricher, metrics-exporter, webrca-poller") {
			t.Errorf("%v = %v, want an error listing the services", args, err)
		}
	}
	out, err := cli(t, srv.URL(), "dlq", "list", "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("dlq list --json on an empty DLQ = %v %q, want []", err, out)
	}

	_, js := srv.Connect()
	topo := messaging.Topology{Replicas: 1, MaxAge: time.Hour, DeadLetterMaxAge: time.Hour, Duplicates: time.Minute}
	if err := topo.EnsureStreams(t.Context(), js, events.StreamDeadLetter); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(events.SubjectDeadLetterPrefix + "devlake-sink")
	m.Data = []byte(`{"id":"dep-1"}`)
	m.Header.Set(events.HeaderDeadDeliveries, "5")
	m.Header.Set(events.HeaderDeadReason, "DevLake answered 400")
	m.Header.Set(events.HeaderDeadSubject, events.SubjectDeploymentEnriched)
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, srv.URL(), "dlq", "list", "--json", "--service", "devlake-sink")
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if len(got) != 1 || got[0]["deliveries"] != float64(5) || got[0]["reason"] != "DevLake answered 400" {
		t.Errorf("dlq list --json = %v, want one letter with deliveries 5 (a number)", got)
	}
	if out, _ := cli(t, srv.URL(), "dlq", "list"); !strings.Contains(out, "  5  ") {
		t.Errorf("the table shows no delivery count 5:\n%s", out)
	}
}

// exporterText is what a metrics exporter serves, trimmed to two teams and two windows.
const exporterText = `# TYPE doraflow_metrics_exporter_benchmark_info gauge
doraflow_metrics_exporter_benchmark_info{benchmark="dora2023"} 1
# TYPE dora_last_deployment_timestamp_seconds gauge
dora_last_deployment_timestamp_seconds{component="api",environment="production",team="payments"} 1.7957e+09
# TYPE dora_window_deployments_per_day gauge
dora_window_deployments_per_day{component="",environment="production",scope="organization",team="",window="30d"} 1.8666666666666667
dora_window_deployments_per_day{component="",environment="production",scope="organization",team="",window="7d"} 3.2857142857142856
dora_window_deployments_per_day{component="",environment="production",scope="team",team="payments",window="30d"} 1.2333333333333334
dora_window_deployments_per_day{component="",environment="production",scope="team",team="platform",window="30d"} 0.1
dora_window_deployments_per_day{component="api",environment="production",scope="component",team="payments",window="30d"} 1.2333333333333334
dora_window_deployments_per_day{component="",environment="staging",scope="team",team="payments",window="30d"} 0.5
# TYPE dora_window_change_lead_time_median_seconds gauge
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="organization",team="",window="30d"} 110340
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="team",team="payments",window="30d"} 140460
# TYPE dora_window_change_fail_ratio gauge
dora_window_change_fail_ratio{component="",environment="production",scope="organization",team="",window="30d"} 0.05357142857142857
dora_window_change_fail_ratio{component="",environment="production",scope="team",team="payments",window="30d"} 0.05405405405405406
# TYPE dora_window_failed_deployment_recovery_median_seconds gauge
dora_window_failed_deployment_recovery_median_seconds{component="",environment="production",scope="organization",team="",window="30d"} 3600
# TYPE dora_window_rework_ratio gauge
dora_window_rework_ratio{component="",environment="production",scope="team",team="payments",window="30d"} 0.08108108108108109
# TYPE dora_performance_level gauge
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="organization",team="",window="30d"} 4
dora_performance_level{component="",environment="production",metric="lead_time",scope="organization",team="",window="30d"} 3
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="organization",team="",window="30d"} 3
dora_performance_level{component="",environment="production",metric="recovery_time",scope="organization",team="",window="30d"} 3
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="team",team="platform",window="30d"} 2
`

func serve(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDoraTable: the compact team × metric table with units and levels, --team, --window, --json,
// and errors for an unknown window or team and for an endpoint that is not the exporter.
func TestDoraTable(t *testing.T) {
	exporter := serve(t, exporterText)
	enricher := serve(t, "# TYPE doraflow_build_info gauge\ndoraflow_build_info{goversion=\"go1.26\",service=\"enricher\",version=\"dev\"} 1\n# TYPE go_goroutines gauge\ngo_goroutines 12\n")
	empty := serve(t, "# TYPE doraflow_metrics_exporter_benchmark_info gauge\ndoraflow_metrics_exporter_benchmark_info{benchmark=\"dora2023\"} 1\n")
	for _, tc := range []struct {
		name    string
		args    []string
		want    string // the whole output
		wantErr string
	}{
		{name: "every team and window", args: []string{"--exporter", exporter},
			want: "DORA metrics, production, levels against dora2023 (" + exporter + "):\n" +
				"TEAM      WINDOW  DEPLOYMENT FREQUENCY  LEAD TIME (p50)    CHANGE FAIL RATE  RECOVERY (p50)  REWORK RATE\n" +
				"(all)     7d      3.29/day              -                  -                 -               -\n" +
				"(all)     30d     1.87/day (elite)      30.6 hours (high)  5.4% (high)       60 min (high)   -\n" +
				"payments  30d     1.23/day              39.0 hours         5.4%              -               8.1%\n" +
				"platform  30d     3.00/month (medium)   -                  -                 -               -\n"},
		{name: "one team, one window", args: []string{"--exporter", exporter, "--team", "payments", "--window", "30d"},
			want: "DORA metrics, production, levels against dora2023 (" + exporter + "):\n" +
				"TEAM      WINDOW  DEPLOYMENT FREQUENCY  LEAD TIME (p50)  CHANGE FAIL RATE  RECOVERY (p50)  REWORK RATE\n" +
				"payments  30d     1.23/day              39.0 hours       5.4%              -               8.1%\n"},
		{name: "unknown window", args: []string{"--exporter", exporter, "--window", "1d"},
			wantErr: `the exporter serves no window "1d"; its windows (metrics.windows) are 7d, 30d`},
		{name: "unknown team", args: []string{"--exporter", exporter, "--team", "nobody"},
			wantErr: `no team "nobody" in production; the exporter knows payments, platform`},
		{name: "not the exporter", args: []string{"--exporter", enricher},
			wantErr: enricher + " is not a doraflow metrics exporter: it is enricher's ops endpoint"},
		{name: "not metrics at all", args: []string{"--exporter", enricher + "/nothing"}, wantErr: "404 Not Found"},
		{name: "an exporter without data", args: []string{"--exporter", empty},
			want: "The exporter at " + empty + " serves no DORA values for production yet (no deployments observed?).\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := cli(t, "", append([]string{"dora"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q\n%s", err, tc.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}

	out, err := cli(t, "", "dora", "--exporter", exporter, "--json", "--team", "payments")
	if err != nil {
		t.Fatal(err)
	}
	var rows []doraRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []doraRow{{Scope: "team", Team: "payments", Window: "30d", Environment: "production",
		Values: map[string]float64{"deployments_per_day": 1.2333333333333334, "change_lead_time_median_seconds": 140460,
			"change_fail_ratio": 0.05405405405405406, "rework_ratio": 0.08108108108108109}}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("--json (-want +got):\n%s", diff)
	}
}

// TestStateFileFindsThePipeline: the file a running pipeline writes is where status, dlq and dora
// find NATS and the exporter without NATS_URL or --exporter; a stale one is ignored, saying so; the
// remover deletes it.
func TestStateFileFindsThePipeline(t *testing.T) {
	srv := natstest.Start(t)
	exporter := serve(t, exporterText)
	runtime := t.TempDir()
	env := map[string]string{"XDG_RUNTIME_DIR": runtime}
	var announce strings.Builder
	remove := writePipelineState(&announce, func(k string) string { return env[k] }, "demo", srv.URL(),
		map[string]string{"metrics-exporter": exporter})
	path := filepath.Join(runtime, "doraflow", "pipeline.json")
	for _, want := range []string{"export NATS_URL=" + srv.URL(), path} {
		if !strings.Contains(announce.String(), want) {
			t.Errorf("announcement misses %q:\n%s", want, announce.String())
		}
	}
	out, errOut, err := cliEnv(t, env, "status")
	if err != nil || !strings.Contains(out, "STREAM") || errOut != "" {
		t.Errorf("status through the state file = %v\n%s\nstderr: %s", err, out, errOut)
	}
	if out, _, err := cliEnv(t, env, "dlq", "list", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("dlq list through the state file = %v %q", err, out)
	}
	if out, _, err := cliEnv(t, env, "dora"); err != nil || !strings.Contains(out, exporter) {
		t.Errorf("dora through the state file = %v\n%s", err, out)
	}
	remove()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file is still there after a clean stop: %v", err)
	}

	// A pipeline that died without removing its file: a process that has exited.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(pipelineState{Command: "local", PID: gone.Process.Pid, NATSURL: srv.URL(), StartedAt: time.Now()})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	p := pipeline{getenv: func(k string) string { return env[k] }, stderr: &stderr}
	url, from := p.natsURL()
	if url != "" || !strings.Contains(from, "the default") {
		t.Errorf("natsURL with a stale file = %q (%s), want the default", url, from)
	}
	if want := fmt.Sprintf("ignoring stale state file %s: doraflow local (pid %d", path, gone.Process.Pid); !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
	env["NATS_URL"] = srv.URL()
	stderr.Reset()
	if url, _ := p.natsURL(); url != srv.URL() || stderr.Len() != 0 {
		t.Errorf("NATS_URL must win over the state file without reading it: %q %q", url, stderr.String())
	}
}

// TestPreflightDisablesHalfConfiguredSources: a source that could not start is disabled with its
// reason in one line, and its variables are not passed to the service.
func TestPreflightDisablesHalfConfiguredSources(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://127.0.0.1:6443}\n"+
		"contexts:\n- name: x\n  context: {cluster: c}\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     []string // notes
		disabled []string // sections with enabled: false
		hidden   []string // variables not passed on
	}{
		{name: "nothing configured", env: map[string]string{"HOME": dir},
			want: []string{"argocd-watcher: disabled (no KUBECONFIG and no ~/.kube/config)",
				"webrca-poller: disabled (set OFFLINE_TOKEN or WEBRCA_CLIENT_ID/WEBRCA_CLIENT_SECRET)",
				"devlake-sink: disabled (set DEVLAKE_URL and DEVLAKE_WEBHOOK_TOKEN)",
				"enricher: no GITHUB_TOKEN: GitHub is called anonymously, at most 60 requests per hour (commits of many deployments will be missing); set GITHUB_TOKEN or a GitHub App"},
			disabled: []string{"argocd", "webrca", "devlake"}},
		{name: "half configured", env: map[string]string{"KUBECONFIG": filepath.Join(dir, "nowhere"), "DEVLAKE_URL": "http://localhost:8080",
			"WEBRCA_CLIENT_ID": "id", "GITHUB_TOKEN_FILE": filepath.Join(dir, "missing-token")},
			want: []string{"argocd-watcher: disabled (KUBECONFIG=" + filepath.Join(dir, "nowhere") + ": no such file)",
				"webrca-poller: disabled (WEBRCA_CLIENT_ID is set but WEBRCA_CLIENT_SECRET (or _FILE) is not)",
				"devlake-sink: disabled (DEVLAKE_URL is set but DEVLAKE_WEBHOOK_TOKEN (or _FILE) is not)",
				"enricher: GITHUB_TOKEN_FILE: read " + filepath.Join(dir, "missing-token") + ": no such file or directory: ignored; GitHub is called anonymously, at most 60 requests per hour (commits of many deployments will be missing); set GITHUB_TOKEN or a GitHub App"},
			disabled: []string{"argocd", "webrca", "devlake"}, hidden: []string{"KUBECONFIG", "WEBRCA_CLIENT_ID", "GITHUB_TOKEN_FILE"}},
		{name: "token without URL, bad kubeconfig context", env: map[string]string{"KUBECONFIG": kc + "-bad", "DEVLAKE_WEBHOOK_TOKEN": "t", "GITHUB_TOKEN": "g"},
			want: []string{"argocd-watcher: disabled (KUBECONFIG=" + kc + "-bad: no such file)",
				"webrca-poller: disabled (set OFFLINE_TOKEN or WEBRCA_CLIENT_ID/WEBRCA_CLIENT_SECRET)",
				"devlake-sink: disabled (DEVLAKE_WEBHOOK_TOKEN is set but DEVLAKE_URL is not)"},
			disabled: []string{"argocd", "webrca", "devlake"}, hidden: []string{"DEVLAKE_WEBHOOK_TOKEN"}},
		{name: "fully configured", env: map[string]string{"KUBECONFIG": kc, "DEVLAKE_URL": "http://localhost:8080", "DEVLAKE_WEBHOOK_TOKEN": "t",
			"OFFLINE_TOKEN": "o", "GITHUB_TOKEN": "g"},
			want: []string{"argocd-watcher: watching Argo CD through " + kc + " (context x)", "webrca-poller: polling WebRCA",
				"devlake-sink: posting to http://localhost:8080 (project 1)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := preflight(func(k string) string { return tc.env[k] })
			if diff := cmp.Diff(tc.want, pf.notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
			for _, s := range []string{"argocd", "webrca", "devlake"} {
				want := "enabled: true"
				if contains(tc.disabled, s) {
					want = "enabled: false"
				}
				_, rest, _ := strings.Cut(pf.config, s+":\n")
				if !strings.HasPrefix(strings.TrimLeft(rest, " "), want) {
					t.Errorf("%s: want %s in\n%s", s, want, pf.config)
				}
			}
			for _, k := range tc.hidden {
				if pf.getenv(k) != "" {
					t.Errorf("%s is passed to the services although its source is disabled", k)
				}
			}
		})
	}
}

var (
	buildOnce sync.Once
	builtDir  string
	buildErr  error
)

// serviceBinaries builds the five services once per test binary.
func serviceBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the five service binaries")
	}
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "doraflow-bin-")
		for _, s := range services {
			if buildErr != nil {
				return
			}
			cmd := exec.Command("go", "build", "-o", filepath.Join(builtDir, s), ".")
			cmd.Dir = filepath.Join("..", "..", "services", s)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %w\n%s", s, err, out)
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// TestCheckConfigValidatesEverySection runs every service's --check-config on one shared file and
// requires every problem once, with its key path and line, without Go type names.
func TestCheckConfigValidatesEverySection(t *testing.T) {
	bin := serviceBinaries(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`webrca:
  enabled: false
  interval: soon
argocd:
  namespaces: [argocd]
  resync_everything: true
metrics:
  windows: [168h]
bogus: 1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "", "check-config", bad, "--bin", bin)
	if !errors.Is(err, errReported) {
		t.Fatalf("check-config of a bad file = %v, want errReported (exit 1, nothing more printed)\n%s", err, out)
	}
	for _, want := range []string{
		bad + ": 3 problem(s)",
		"webrca.interval (line 3): want a duration (like 30s, 5m or 168h), got the string \"soon\"  [webrca-poller]",
		"argocd.resync_everything (line 6): unknown key  [argocd-watcher]",
		"bogus (line 9): unknown key  [every service]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output misses %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "main.") || strings.Contains(out, "time.Duration") {
		t.Errorf("output names Go types:\n%s", out)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("webrca:\n  enabled: false\nmetrics:\n  windows: [168h]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, "", "check-config", "--bin", bin, good); err != nil || !strings.Contains(out, good+": ok (") {
		t.Errorf("check-config of a good file = %v\n%s", err, out)
	}
}
