// Bench measures doraflow on this machine and writes bench/report.json: the raw JetStream limit with
// the services' own client settings, and the pipeline from a raw deployment event to its DevLake post
// and metric update (enricher, devlake-sink and metrics-exporter as processes, GitHub and DevLake
// faked at zero latency). It reports numbers; it asserts nothing about speed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
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

	Deployments          int     `json:"deployments"`
	DevLakeLatencyMs     float64 `json:"devlake_latency_ms"`
	MetricsCaughtUpAfter float64 `json:"metrics_caught_up_after_s"`
	// Paced is the latency when deployments arrive at a steady rate below the pipeline's limit
	// (the burst above measures throughput, so its latency is mostly time spent queued).
	Paced pacedResult `json:"paced"`
	// CPUMsPerDeployment is CPU time per deployment in each process over the burst; "bench" is
	// this process: the embedded NATS server, the publisher, and the GitHub and DevLake fakes.
	CPUMsPerDeployment map[string]float64 `json:"cpu_ms_per_deployment"`
	// NATSMsgsPerDeployment counts messages into the server per deployment over the burst
	// (publishes, KV operations, API requests, acks): the pipeline's protocol cost, which unlike
	// time does not depend on the machine.
	NATSMsgsPerDeployment float64   `json:"nats_msgs_per_deployment"`
	Raw                   rawResult `json:"raw"`
	Cores                 int       `json:"cores"`
	GoVersion             string    `json:"go_version"`
	At                    time.Time `json:"at"`
}

func main() {
	out := flag.String("out", "bench/report.json", "report `file`")
	bin := flag.String("bin", "bin", "`directory` with the service binaries (make build)")
	n := flag.Int("deployments", 2000, "deployments sent through the pipeline at once")
	paced := flag.Int("paced", 500, "deployments sent at a steady rate afterwards, for latency")
	rate := flag.Float64("rate", 50, "deployments per second of the paced run")
	raw := flag.Int("raw", 20000, "messages for the raw JetStream measurement")
	pprofDir := flag.String("pprof", "", "`directory` for CPU profiles of each service during the burst (empty: none)")
	lakeLatency := flag.Duration("devlake-latency", 0, "`delay` the fake DevLake adds to every answer (0: none)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *out, *bin, *raw, pipelineOptions{n: *n, paced: *paced, rate: *rate, pprofDir: *pprofDir,
		lakeLatency: *lakeLatency})
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, bin string, rawN int, opts pipelineOptions) error {
	n := opts.n
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
	inMsgs := func() int64 {
		v, err := ns.Varz(nil)
		if err != nil {
			return 0
		}
		return v.InMsgs
	}
	p, err := measurePipeline(ctx, dir, bin, ns.ClientURL(), pub, opts, inMsgs)
	if err != nil {
		return err
	}
	r := report{RawJetStreamMsgsPerS: round(rawRes.EndToEndPerS), PipelineDeploymentsPerS: round(p.perS),
		LatencyP50Ms: round(p.p50), LatencyP99Ms: round(p.p99),
		GitHubCallsPerDeployment: round(p.githubPerDeployment), RSSMiB: p.rss, Deployments: n,
		MetricsCaughtUpAfter: round(p.metricsAfter), Paced: p.paced, CPUMsPerDeployment: p.cpu,
		NATSMsgsPerDeployment: round(p.natsMsgs), DevLakeLatencyMs: float64(opts.lakeLatency.Microseconds()) / 1000,
		Raw: rawRes, Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
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
	fmt.Fprintf(tw, "latency at a steady %.0f deployments/s\tp50 %.0f ms, p99 %.0f ms\n", r.Paced.Rate, r.Paced.P50Ms, r.Paced.P99Ms)
	fmt.Fprintf(tw, "GitHub calls per deployment\t%.3f\n", r.GitHubCallsPerDeployment)
	fmt.Fprintf(tw, "NATS messages per deployment (into the server)\t%.1f\n", r.NATSMsgsPerDeployment)
	for _, s := range sortedKeys(r.RSSMiB) {
		fmt.Fprintf(tw, "peak RSS %s\t%.1f MiB\n", s, r.RSSMiB[s])
	}
	for _, s := range sortedKeys(r.CPUMsPerDeployment) {
		fmt.Fprintf(tw, "CPU per deployment %s\t%.3f ms\n", s, r.CPUMsPerDeployment[s])
	}
	_ = tw.Flush()
	fmt.Printf("\nwritten to %s\n", out)
	return nil
}

type pipelineOptions struct {
	n, paced    int
	rate        float64
	pprofDir    string
	lakeLatency time.Duration
}

type pacedResult struct {
	Deployments int     `json:"deployments"`
	Rate        float64 `json:"rate_per_s"`
	P50Ms       float64 `json:"latency_p50_ms"`
	P99Ms       float64 `json:"latency_p99_ms"`
}

type pipelineResult struct {
	perS, p50, p99, githubPerDeployment, metricsAfter, natsMsgs float64
	rss, cpu                                                    map[string]float64
	paced                                                       pacedResult
}

var pipelineServices = []string{"metrics-exporter", "devlake-sink", "enricher"}

func measurePipeline(ctx context.Context, dir, bin, natsURL string, pub *messaging.Publisher, opts pipelineOptions,
	inMsgs func() int64) (pipelineResult, error) {
	n := opts.n
	gh := githubtest.Start()
	defer gh.Close()
	lake := devlaketest.New()
	var lakeHandler http.Handler = lake
	if d := opts.lakeLatency; d > 0 {
		lakeHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(d) // a DevLake that takes d to answer (its database behind it)
			lake.ServeHTTP(w, r)
		})
	}
	lakeSrv := httptest.NewServer(lakeHandler)
	defer lakeSrv.Close()
	conn := lake.AddConnection("doraflow-bench")

	// Ten components, each a repository; every deployment ships one new squash-merged commit.
	const components = 10
	var evs []events.DeploymentObserved
	for c := range components {
		gh.Repo("acme", "svc-"+strconv.Itoa(c)).Push(1)
	}
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for i := range n + opts.paced {
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
	ops, profilers := map[string]string{}, map[string]string{}
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
		if opts.pprofDir != "" {
			// Go profiles are off unless asked for, on a loopback listener of their own.
			paddr := "127.0.0.1:" + strconv.Itoa(18281+i)
			cmd.Env = append(cmd.Env, "PPROF_ADDR="+paddr)
			profilers[s] = "http://" + paddr
		}
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

	// The burst: every deployment at once; throughput, and CPU per deployment in each process.
	published := map[string]time.Time{}
	cpuBefore, msgsBefore := cpuTimes(procs), inMsgs()
	first := time.Now()
	profiles := startProfiles(ctx, opts.pprofDir, profilers)
	for _, ev := range evs[:n] {
		published[ev.ID] = time.Now()
		if err := pub.Publish(ctx, ev); err != nil {
			return pipelineResult{}, err
		}
	}
	err := poll(ctx, 10*time.Minute, func() (bool, error) { return lake.DeploymentCount(conn.ID) >= n, nil })
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
	cpuAfter, msgsAfter := cpuTimes(procs), inMsgs()
	if err := profiles(); err != nil {
		return pipelineResult{}, err
	}
	lat, last, err := latencies(lake, published, n)
	if err != nil {
		return pipelineResult{}, err
	}
	res := pipelineResult{perS: float64(n) / last.Sub(first).Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		githubPerDeployment: float64(gh.TotalCalls()) / float64(n), metricsAfter: metricsAt.Sub(first).Seconds(),
		rss: map[string]float64{}, cpu: map[string]float64{}, natsMsgs: float64(msgsAfter-msgsBefore) / float64(n)}
	for i, s := range pipelineServices {
		res.cpu[s] = round((cpuAfter[i] - cpuBefore[i]).Seconds() * 1000 / float64(n))
	}
	bench := len(pipelineServices)
	res.cpu["bench"] = round((cpuAfter[bench] - cpuBefore[bench]).Seconds() * 1000 / float64(n))

	// Paced: a steady rate below the limit, so latency is the pipeline's, not the queue's.
	if opts.paced > 0 {
		pacedPub := map[string]time.Time{}
		tick := time.NewTicker(time.Duration(float64(time.Second) / opts.rate))
		for _, ev := range evs[n:] {
			<-tick.C
			pacedPub[ev.ID] = time.Now()
			if err := pub.Publish(ctx, ev); err != nil {
				tick.Stop()
				return pipelineResult{}, err
			}
		}
		tick.Stop()
		total := n + opts.paced
		err := poll(ctx, 5*time.Minute, func() (bool, error) { return lake.DeploymentCount(conn.ID) >= total, nil })
		if err != nil {
			return pipelineResult{}, fmt.Errorf("paced: DevLake has %d of %d deployments: %w", len(lake.Deployments(conn.ID)), total, err)
		}
		pl, _, err := latencies(lake, pacedPub, opts.paced)
		if err != nil {
			return pipelineResult{}, fmt.Errorf("paced: %w", err)
		}
		res.paced = pacedResult{Deployments: opts.paced, Rate: opts.rate, P50Ms: round(pl[len(pl)/2]), P99Ms: round(pl[len(pl)*99/100])}
	}
	for i, s := range pipelineServices {
		res.rss[s] = peakRSS(procs[i].Process.Pid)
	}
	return res, nil
}

// latencies matches DevLake's successful deployment posts to the publish times of want, and
// returns the sorted latencies in milliseconds and the last post's time.
func latencies(lake *devlaketest.DevLake, published map[string]time.Time, want int) ([]float64, time.Time, error) {
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
	if len(lat) != want {
		return nil, time.Time{}, fmt.Errorf("matched %d of %d DevLake posts to published events", len(lat), want)
	}
	sort.Float64s(lat)
	return lat, last, nil
}

// cpuTimes returns the user+system CPU time of each process, then of this process last.
func cpuTimes(procs []*exec.Cmd) []time.Duration {
	out := make([]time.Duration, 0, len(procs)+1)
	for _, p := range procs {
		out = append(out, procCPU(strconv.Itoa(p.Process.Pid)))
	}
	return append(out, procCPU("self"))
}

// procCPU reads utime+stime from /proc/<pid>/stat (in clock ticks of 1/100 s on Linux).
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after its closing parenthesis are fixed.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// startProfiles fetches a CPU profile of each service from its pprof listener while the burst runs, into
// dir/<service>.cpu.pprof; the returned function waits for them. An empty dir profiles nothing.
func startProfiles(ctx context.Context, dir string, ops map[string]string) func() error {
	if dir == "" {
		return func() error { return nil }
	}
	// This process too: the embedded NATS server, the publisher and the fakes.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() error { return err }
	}
	self, err := os.Create(filepath.Join(dir, "bench.cpu.pprof"))
	if err == nil {
		err = pprof.StartCPUProfile(self)
	}
	if err != nil {
		return func() error { return err }
	}
	errc := make(chan error, len(ops))
	for s, url := range ops {
		go func() {
			errc <- fetchProfile(ctx, url+"/debug/pprof/profile?seconds=3", filepath.Join(dir, s+".cpu.pprof"))
		}()
	}
	return func() error {
		var errs []error
		for range ops {
			errs = append(errs, <-errc)
		}
		pprof.StopCPUProfile()
		errs = append(errs, self.Close())
		if err := errors.Join(errs...); err != nil {
			return err
		}
		fmt.Printf("CPU profiles (3 s of the burst) in %s: go tool pprof -top bin/<service> %s/<service>.cpu.pprof\n", dir, dir)
		return nil
	}
}

func fetchProfile(ctx context.Context, url, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
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
