// Bench measures doraflow on this machine and writes bench/report.json: the raw JetStream limit with
// the services' own client settings, and the pipeline from a raw deployment event to its DevLake post
// and metric update (enricher, devlake-sink and metrics-exporter as processes, GitHub and DevLake
// faked at zero latency). It reports numbers; it asserts nothing about speed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/pkg/events"
)

type report struct {
	RawJetStreamMsgsPerS     float64            `json:"raw_jetstream_msgs_per_s"`
	PipelineDeploymentsPerS  float64            `json:"pipeline_deployments_per_s"`
	Ratio                    float64            `json:"ratio"`
	LatencyP50Ms             float64            `json:"latency_p50_ms"`
	LatencyP99Ms             float64            `json:"latency_p99_ms"`
	GitHubCallsPerDeployment float64            `json:"github_calls_per_deployment"`
	RSSMiB                   map[string]float64 `json:"rss_mib"`

	Deployments          int       `json:"deployments"`
	MetricsCaughtUpAfter float64   `json:"metrics_caught_up_after_s"`
	Raw                  rawResult `json:"raw"`
	Cores                int       `json:"cores"`
	GoVersion            string    `json:"go_version"`
	At                   time.Time `json:"at"`
}

func main() {
	out := flag.String("out", "bench/report.json", "report `file`")
	bin := flag.String("bin", "bin", "`directory` with the service binaries (make build)")
	n := flag.Int("deployments", 2000, "deployments sent through the pipeline")
	raw := flag.Int("raw", 20000, "messages for the raw JetStream measurement")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *out, *bin, *n, *raw)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, bin string, n, rawN int) error {
	dir, err := os.MkdirTemp("", "doraflow-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats-server did not start")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	topo := messaging.Topology{Replicas: 1, MaxAge: time.Hour, DeadLetterMaxAge: time.Hour, Duplicates: 10 * time.Minute}
	if err := topo.EnsureStreams(ctx, js, events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter); err != nil {
		return err
	}
	pub, err := messaging.NewPublisher(nc, "bench", zerolog.Nop(), messaging.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		return err
	}

	fmt.Printf("raw JetStream: %d messages, one synchronous publish each, one handler with double acks…\n", rawN)
	rawRes, err := measureRaw(ctx, js, pub, rawN)
	if err != nil {
		return err
	}
	fmt.Printf("pipeline: %d deployments through enricher → devlake-sink and metrics-exporter…\n", n)
	p, err := measurePipeline(ctx, dir, bin, ns.ClientURL(), pub, n)
	if err != nil {
		return err
	}
	r := report{RawJetStreamMsgsPerS: round(rawRes.EndToEndPerS), PipelineDeploymentsPerS: round(p.perS),
		LatencyP50Ms: round(p.p50), LatencyP99Ms: round(p.p99),
		GitHubCallsPerDeployment: round(p.githubPerDeployment), RSSMiB: p.rss, Deployments: n,
		MetricsCaughtUpAfter: round(p.metricsAfter), Raw: rawRes, Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		At: time.Now().UTC().Truncate(time.Second)}
	r.Ratio = round(p.perS / rawRes.EndToEndPerS)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nraw JetStream (publish + consume-and-ack, services' settings)\t%.0f msg/s\n", r.RawJetStreamMsgsPerS)
	fmt.Fprintf(tw, "pipeline (raw event → DevLake post)\t%.0f deployments/s\n", r.PipelineDeploymentsPerS)
	fmt.Fprintf(tw, "ratio\t%.3f\n", r.Ratio)
	fmt.Fprintf(tw, "latency raw event → DevLake post\tp50 %.0f ms, p99 %.0f ms\n", r.LatencyP50Ms, r.LatencyP99Ms)
	fmt.Fprintf(tw, "metrics exporter caught up\t%.1f s after the first publish\n", r.MetricsCaughtUpAfter)
	fmt.Fprintf(tw, "GitHub calls per deployment\t%.3f\n", r.GitHubCallsPerDeployment)
	for _, s := range sortedKeys(r.RSSMiB) {
		fmt.Fprintf(tw, "peak RSS %s\t%.1f MiB\n", s, r.RSSMiB[s])
	}
	_ = tw.Flush()
	fmt.Printf("\nwritten to %s\n", out)
	return nil
}

type pipelineResult struct {
	perS, p50, p99, githubPerDeployment, metricsAfter float64
	rss                                               map[string]float64
}

var pipelineServices = []string{"metrics-exporter", "devlake-sink", "enricher"}

func measurePipeline(ctx context.Context, dir, bin, natsURL string, pub *messaging.Publisher, n int) (pipelineResult, error) {
	gh := githubtest.Start()
	defer gh.Close()
	lake := devlaketest.New()
	lakeSrv := httptest.NewServer(lake)
	defer lakeSrv.Close()
	conn := lake.AddConnection("doraflow-bench")

	// Ten components, each a repository; every deployment ships one new squash-merged commit.
	const components = 10
	var evs []events.DeploymentObserved
	heads := map[int]string{}
	for c := range components {
		repo := gh.Repo("acme", "svc-"+strconv.Itoa(c))
		repo.Push(1)
		heads[c] = repo.Head()
	}
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for i := range n {
		c := i % components
		repo := gh.Repo("acme", "svc-"+strconv.Itoa(c))
		repo.Squash(1)
		sha := repo.Head()
		at := start.Add(time.Duration(i) * time.Minute)
		evs = append(evs, events.DeploymentObserved{ID: events.DeploymentID("bench", "uid-"+strconv.Itoa(c), int64(i)),
			Source: "argocd", Instance: "bench", Cluster: "prod", Namespace: "argocd",
			Application: fmt.Sprintf("svc-%d-prod", c), Component: "svc-" + strconv.Itoa(c),
			Environment: events.EnvironmentProduction, Kind: events.KindDeploy, Result: events.ResultSuccess,
			AppCommits: []events.CommitRef{{SHA: sha, RepoURL: repo.URL(), Via: "image_tag"}},
			StartedAt:  at.Add(-time.Minute), FinishedAt: at})
	}
	config := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`github:
  base_url: %s
  repo_hosts: [github.com]
integration:
  devlake:
    enabled: true
    base_url: %s
    project_id: global
devlake_sink:
  connections:
    - {project_id: global, connection_id: %d, token_env: DEVLAKE_TOKEN}
metrics:
  windows: [720h]
`, gh.URL(), lakeSrv.URL, conn.ID)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		return pipelineResult{}, err
	}
	var procs []*exec.Cmd
	ops := map[string]string{}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	}()
	for i, s := range pipelineServices {
		addr := "127.0.0.1:" + strconv.Itoa(18181+i)
		logf, err := os.Create(filepath.Join(dir, s+".log"))
		if err != nil {
			return pipelineResult{}, err
		}
		cmd := exec.CommandContext(context.WithoutCancel(ctx), filepath.Join(bin, s), "--config", config)
		cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "OPS_ADDR="+addr, "LOG_LEVEL=warn",
			"DEVLAKE_TOKEN="+conn.APIKey, "GITHUB_TOKEN=bench")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return pipelineResult{}, fmt.Errorf("start %s (make build first): %w", s, err)
		}
		procs = append(procs, cmd)
		ops[s] = "http://" + addr
	}
	for s, url := range ops {
		if err := poll(ctx, time.Minute, func() (bool, error) { return ready(ctx, url+"/readyz"), nil }); err != nil {
			return pipelineResult{}, fmt.Errorf("%s not ready: %w", s, err)
		}
	}

	published := map[string]time.Time{}
	first := time.Now()
	for _, ev := range evs {
		published[ev.ID] = time.Now()
		if err := pub.Publish(ctx, ev); err != nil {
			return pipelineResult{}, err
		}
	}
	err := poll(ctx, 10*time.Minute, func() (bool, error) { return len(lake.Deployments(conn.ID)) >= n, nil })
	if err != nil {
		return pipelineResult{}, fmt.Errorf("DevLake has %d of %d deployments: %w", len(lake.Deployments(conn.ID)), n, err)
	}
	var metricsAt time.Time
	err = poll(ctx, 5*time.Minute, func() (bool, error) {
		total, err := scrapeSum(ctx, ops["metrics-exporter"]+"/metrics", "dora_deployments_total")
		metricsAt = time.Now()
		return total >= float64(n), err
	})
	if err != nil {
		return pipelineResult{}, fmt.Errorf("metrics exporter: %w", err)
	}
	var lat []float64
	var last time.Time
	seen := map[string]bool{}
	for _, req := range lake.Requests() {
		if req.Status != http.StatusOK || req.Kind != devlaketest.KindDeployment {
			continue
		}
		var body struct{ ID string }
		if json.Unmarshal(req.Body, &body) != nil {
			continue
		}
		id := body.ID[strings.LastIndex(body.ID, "/")+1:]
		if t, ok := published[id]; ok && !seen[id] {
			seen[id] = true
			lat = append(lat, float64(req.At.Sub(t).Microseconds())/1000)
			if req.At.After(last) {
				last = req.At
			}
		}
	}
	if len(lat) != n {
		return pipelineResult{}, fmt.Errorf("matched %d of %d DevLake posts to published events", len(lat), n)
	}
	sort.Float64s(lat)
	res := pipelineResult{perS: float64(n) / last.Sub(first).Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		githubPerDeployment: float64(gh.TotalCalls()) / float64(n), metricsAfter: metricsAt.Sub(first).Seconds(),
		rss: map[string]float64{}}
	for i, s := range pipelineServices {
		res.rss[s] = peakRSS(procs[i].Process.Pid)
	}
	return res, nil
}

func ready(ctx context.Context, url string) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func scrapeSum(ctx context.Context, url, family string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	var total float64
	for _, m := range mfs[family].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total, nil
}

func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("not done within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// peakRSS reads VmHWM (the peak resident set) of a live process, in MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return round(kb / 1024)
		}
	}
	return 0
}

func round(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
