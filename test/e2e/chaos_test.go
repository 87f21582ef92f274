package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/pkg/events"
)

const (
	chaosDeployments = 10000
	chaosIncidents   = 1000
	chaosComponents  = 20
)

// TestChaosExactlyOnce sends 10,000 deployments and 1,000 incidents through all five services
// (real processes on one JetStream server; GitHub, WebRCA and DevLake faked) while things break:
// DevLake answers 500 to 30% of requests and stalls 10% past the client's timeout throughout;
// argocd-watcher, the enricher and a sink replica are killed with SIGKILL and restarted; the NATS
// server restarts twice; and GitHub is rate-limited for a minute. The faults are triggered by
// progress, not by timers. Afterwards every deployment and incident is in DevLake exactly once,
// each deployment with exactly the commit it shipped, the exporter's counters are exact (in all,
// per component, and one lead time per commit), and the dead-letter stream is empty.
//
// Every source is real: deployments are Argo CD syncs written to Applications on a real
// kube-apiserver (Argo CD's CRD), observed by argocd-watcher; incidents come from webrca-poller
// polling a fake WebRCA behind a fake Red Hat SSO. Both publish through the NATS restarts.
//
// Every secret is a canary: NATS requires a password (NATS_URL lists the server twice, as a
// cluster's server list, each URL with its own user and password), GitHub a token, SSO an offline
// token and DevLake an API key. At the end no canary, raw, URL-encoded or base64-encoded, is in any
// log line of any process, any message of any stream (headers, KV buckets and object stores
// included), any ops page (/metrics, /readyz, /healthz …, also read after each fault) or the output
// of `doraflow status`.
//
// It runs with `make test-chaos` (DORAFLOW_CHAOS=1), which CI runs after `make test`: 4 to 6
// minutes without the race detector.
func TestChaosExactlyOnce(t *testing.T) {
	if os.Getenv("DORAFLOW_CHAOS") == "" {
		t.Skip("chaos run: set DORAFLOW_CHAOS=1 or run make test-chaos (CI does)")
	}
	bin := binaries(t)
	secrets := newCanaries(t)
	srv := natstest.Start(t, secrets.natsUsers())
	js := secrets.connect(t, srv)
	_, natsPort, _ := net.SplitHostPort(srv.Addr().String())
	natsURL := secrets.natsURL(natsPort)
	topo := messaging.Topology{Replicas: 1, MaxAge: 24 * time.Hour, DeadLetterMaxAge: 24 * time.Hour, Duplicates: 10 * time.Minute}
	if err := topo.EnsureStreams(t.Context(), js, events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter); err != nil {
		t.Fatal(err)
	}

	gh := githubtest.New(t)
	gh.RequireToken(secrets.GitHubToken)
	repos := make([]*githubtest.Repo, chaosComponents)
	for c := range repos {
		repos[c] = gh.Repo("acme", "svc-"+strconv.Itoa(c))
		repos[c].Push(1)
	}
	lake := devlaketest.New()
	lakeSrv := httptest.NewServer(lake)
	t.Cleanup(lakeSrv.Close)
	conn := lake.AddConnection("doraflow-global")
	lake.AddAPIKey(secrets.DevLakeKey, fmt.Sprintf("/plugins/webhook/connections/%d/", conn.ID)) // instead of conn.APIKey
	lake.SetFaults(devlaketest.Faults{Seed: 20261122, ServerErrors: 0.3, Stalls: 0.1, StallFor: 5 * time.Second})
	world := startArgoWorld(t, "argocd")
	uids := make([]string, chaosComponents)
	var componentRepos strings.Builder
	for c := range chaosComponents {
		uids[c] = world.create("svc-"+strconv.Itoa(c), "prod")
		fmt.Fprintf(&componentRepos, "    svc-%d: %s\n", c, repos[c].URL())
	}
	sso := webrcatest.NewSSO(t)
	sso.AddOfflineToken(secrets.OfflineToken)
	webrca := webrcatest.NewAPI(t, sso)

	var products strings.Builder
	for c := range chaosComponents {
		fmt.Fprintf(&products, "    - {name: P%d, components: [svc-%d]}\n", c, c)
	}
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, config, fmt.Sprintf(`argocd:
  enabled: true
  instance: chaos
  namespaces: [argocd]
  known_clusters: [prod]
  component_repos:
%sgithub:
  base_url: %s
  repo_hosts: [github.com]
enricher:
  products:
%sintegration:
  devlake:
    enabled: true
    base_url: %s
    project_id: global
devlake_sink:
  connections:
    - {project_id: global, connection_id: %d, token_env: DEVLAKE_TOKEN}
  timeout: 150ms
  attempts: 3
  backoff: 20ms
  max_backoff: 200ms
  breaker: {failures: 20, open_for: 200ms, max_open_for: 2s}
metrics:
  windows: [720h]
webrca:
  enabled: true
  base_url: %s
  token_url: %s
  interval: 10s
  retry_backoff: 200ms
  page_size: 100
  max_pages: 100
`, componentRepos.String(), gh.URL(), products.String(), lakeSrv.URL, conn.ID, webrca.URL(), sso.URL()))
	var launched []*proc // every process, the killed ones too: the leak scan reads all their logs
	launch := func(name string) *proc {
		addr := servicetest.FreeAddr(t)
		out := &servicetest.Buffer{}
		cmd := exec.Command(filepath.Join(bin, name), "--config", config)
		cmd.Env = append(os.Environ(), "OPS_ADDR="+addr, "NATS_URL="+natsURL, "DEVLAKE_TOKEN="+secrets.DevLakeKey, "LOG_LEVEL=info",
			"GITHUB_TOKEN="+secrets.GitHubToken, "OFFLINE_TOKEN="+secrets.OfflineToken, "KUBECONFIG="+world.kubeconfig)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{name: name, cmd: cmd, ops: "http://" + addr, out: out, done: make(chan error, 1)}
		go func() { p.done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		launched = append(launched, p)
		return p
	}
	// Three sink replicas share the durable consumers, as the production overlay scales them.
	procs := map[string]*proc{}
	// Every ops page of every running service is scanned for the canaries after each fault, while
	// readiness may report NATS, GitHub or DevLake trouble, and at the end.
	leaks := newLeakScan(secrets)
	scanPages := func() {
		t.Helper()
		for _, p := range procs {
			if err := leaks.opsPages(t.Context(), p); err != nil {
				t.Error(err)
			}
		}
	}
	for _, name := range []string{"metrics-exporter", "devlake-sink", "devlake-sink-2", "devlake-sink-3", "enricher",
		"webrca-poller", "argocd-watcher"} {
		procs[name] = launch(strings.TrimSuffix(strings.TrimSuffix(name, "-2"), "-3"))
	}
	for _, p := range procs {
		waitReady(t, p)
	}

	// The workload: deployments across 20 components, each shipping one new commit, made the way
	// Argo CD makes them (a history entry per sync) and observed by argocd-watcher; and incidents.
	start := time.Now()
	defer func() { t.Logf("chaos run took %s", time.Since(start).Round(time.Second)) }()
	// The fake repositories' clocks start at githubtest.Epoch and tick a few minutes per merge, while
	// each component deploys every 20 minutes: starting an hour later, every commit precedes its
	// deployment and has a lead time.
	base := githubtest.Epoch.Add(time.Hour)
	deployIDs := map[string]bool{}
	shipped := map[string]string{} // deployment ID → the one new commit it ships
	observed := func(ctx context.Context) (int, error) {
		s, err := js.Stream(ctx, events.StreamRaw)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.SubjectDeploymentObserved))
		if err != nil {
			return 0, err
		}
		return int(info.State.Subjects[events.SubjectDeploymentObserved]), nil
	}
	// deploy syncs every component once per round, then waits until the watcher has published the
	// round (so each history entry is seen with its own image, as when syncs are minutes apart).
	// It runs beside the faults and reports on the returned channel.
	deploy := func(from, to int) <-chan error {
		done := make(chan error, 1)
		go func() {
			ctx := t.Context()
			for round := from / chaosComponents; round < to/chaosComponents; round++ {
				for c := range chaosComponents {
					repos[c].Squash(1)
					sha := repos[c].Head()
					at := base.Add(time.Duration(round*chaosComponents+c) * time.Minute)
					if err := world.deploy(ctx, "svc-"+strconv.Itoa(c), "prod", int64(round), sha, at); err != nil {
						done <- err
						return
					}
					// One cluster per component: each deployment is its own logical deployment, posted
					// to DevLake under its logical ID (policy first).
					id := events.LogicalDeploymentID("svc-"+strconv.Itoa(c), events.EnvironmentProduction,
						events.DeploymentID("chaos", uids[c], int64(round)))
					deployIDs[id], shipped[id] = true, sha
				}
				want := (round + 1) * chaosComponents
				deadline := time.Now().Add(5 * time.Minute)
				for {
					n, err := observed(ctx)
					if err == nil && n >= want {
						break
					}
					if time.Now().After(deadline) {
						if err == nil {
							err = fmt.Errorf("%d of %d published", n, want)
						}
						done <- fmt.Errorf("argocd-watcher did not publish round %d within 5 minutes: %w", round, err)
						return
					}
					time.Sleep(20 * time.Millisecond) // polling the stream; nothing to subscribe to across NATS restarts
				}
			}
			done <- nil
		}()
		return done
	}
	firstHalf := deploy(0, chaosDeployments/2)
	incidentKeys := map[string]bool{}
	var incidents []webrcatest.Incident
	for i := range chaosIncidents {
		created := base.Add(time.Duration(i*10)*time.Minute + 30*time.Second)
		key := fmt.Sprintf("ITN-2026-%05d", i+1)
		inc := webrcatest.NewIncident(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), key, created)
		inc["products"] = []any{"P" + strconv.Itoa(i%chaosComponents)}
		incidents = append(incidents, inc)
		incidentKeys[key] = true
	}
	webrca.SetIncidents(incidents...) // the poller finds them on its next poll
	t.Logf("Argo CD syncing %d deployments; WebRCA lists %d incidents", chaosDeployments/2, chaosIncidents)

	stored := func() int { return len(lake.Deployments(conn.ID)) }
	enriched := func() int {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, events.StreamEnriched)
		if err != nil {
			return 0
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0
		}
		return int(info.State.Msgs)
	}
	atLeast := func(what string, n int, f func() int) {
		t.Helper()
		wait.For(t, 5*time.Minute, func() error {
			if got := f(); got < n {
				return fmt.Errorf("%s: %d, waiting for %d", what, got, n)
			}
			return nil
		})
	}
	restart := func(name string) {
		t.Helper()
		p := procs[name]
		scanPages()
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := <-p.done; err == nil {
			t.Fatalf("%s exited cleanly after SIGKILL", name)
		}
		procs[name] = launch(strings.TrimSuffix(strings.TrimSuffix(name, "-2"), "-3"))
		waitReady(t, procs[name])
	}

	atLeast("enriched events", 1500, enriched)
	srv.Restart()
	t.Logf("NATS restarted at %d enriched, %d stored", enriched(), stored())
	scanPages()
	observedNow := func() int {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		n, _ := observed(ctx)
		return n
	}
	atLeast("deployments observed", 2500, observedNow)
	restart("argocd-watcher") // while Argo CD keeps syncing: what it missed is emitted on start
	t.Logf("SIGKILL argocd-watcher at %d observed", observedNow())
	atLeast("enriched events", 3000, enriched)
	restart("enricher")
	t.Logf("SIGKILL enricher at %d enriched", enriched())
	atLeast("enriched events", 4000, enriched)
	reset := time.Now().Add(time.Minute)
	gh.SetQuota("core", 1_000_000, 0, reset)
	gh.SetQuota("graphql", 1_000_000, 0, reset)
	if err := <-firstHalf; err != nil {
		t.Fatal(err)
	}
	secondHalf := deploy(chaosDeployments/2, chaosDeployments)
	t.Logf("GitHub rate-limited until %s at %d enriched; Argo CD syncing the other %d deployments", reset.Format(time.TimeOnly), enriched(), chaosDeployments/2)
	scanPages()
	atLeast("DevLake deployments", 2000, stored)
	restart("devlake-sink")
	t.Logf("SIGKILL devlake-sink at %d stored", stored())
	atLeast("DevLake deployments", 4000, stored)
	srv.Restart()
	t.Logf("NATS restarted at %d enriched, %d stored", enriched(), stored())
	scanPages()

	if err := <-secondHalf; err != nil {
		t.Fatal(err)
	}

	// Settle: everything everywhere, exactly.
	wait.For(t, 10*time.Minute, func() error {
		var waiting []string
		if n := stored(); n < chaosDeployments {
			waiting = append(waiting, fmt.Sprintf("DevLake deployments %d/%d", n, chaosDeployments))
		}
		if n := len(lake.Issues(conn.ID)); n < chaosIncidents {
			waiting = append(waiting, fmt.Sprintf("DevLake incidents %d/%d", n, chaosIncidents))
		}
		d, i, err := exporterTotals(t.Context(), procs["metrics-exporter"].ops)
		if err != nil {
			return err
		}
		if d < chaosDeployments || i < chaosIncidents {
			waiting = append(waiting, fmt.Sprintf("exporter %v/%d deployments %v/%d incidents", d, chaosDeployments, i, chaosIncidents))
		}
		if len(waiting) > 0 {
			return fmt.Errorf("%s", strings.Join(waiting, "; "))
		}
		return nil
	})

	// Exactly once: the right set in DevLake, exact counters, no dead letters.
	got := map[string]int{}
	for _, d := range lake.Deployments(conn.ID) {
		got[d.ID[strings.LastIndex(d.ID, "/")+1:]]++
	}
	for id := range deployIDs {
		if got[id] != 1 {
			t.Errorf("deployment %s is in DevLake %d times, want once", id, got[id])
		}
	}
	if len(got) != chaosDeployments {
		t.Errorf("DevLake holds %d deployments, want %d", len(got), chaosDeployments)
	}
	// Each deployment carries exactly the commit it shipped: GitHub's rate limit, the enricher's
	// SIGKILL and the NATS restarts neither lost a commit range nor counted one twice.
	commits := map[string][]string{}
	for _, c := range lake.DeploymentCommits(conn.ID) {
		id := c.CicdDeploymentID[strings.LastIndex(c.CicdDeploymentID, "/")+1:]
		commits[id] = append(commits[id], c.CommitSha)
	}
	wrongCommits := 0
	for id, sha := range shipped {
		if got := commits[id]; len(got) != 1 || got[0] != sha {
			if wrongCommits++; wrongCommits <= 10 {
				t.Errorf("deployment %s has commits %v in DevLake, want exactly [%s]", id, got, sha)
			}
		}
	}
	if wrongCommits > 10 {
		t.Errorf("… %d deployments in all with the wrong commits", wrongCommits)
	}
	issues := map[string]int{}
	for _, is := range lake.Issues(conn.ID) {
		issues[is.IssueKey]++
	}
	for key := range incidentKeys {
		if issues[key] != 1 {
			t.Errorf("incident %s is in DevLake %d times, want once", key, issues[key])
		}
	}
	d, i, err := exporterTotals(t.Context(), procs["metrics-exporter"].ops)
	if err != nil {
		t.Fatal(err)
	}
	if d != chaosDeployments || i != chaosIncidents {
		t.Errorf("exporter counts %v deployments and %v incidents, want exactly %d and %d", d, i, chaosDeployments, chaosIncidents)
	}
	// Per component, and one lead time per commit.
	mfs, err := scrape(t.Context(), procs["metrics-exporter"].ops)
	if err != nil {
		t.Fatal(err)
	}
	perComponent := map[string]float64{}
	for _, m := range mfs["dora_deployments_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "component" {
				perComponent[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	for c := range chaosComponents {
		if got := perComponent["svc-"+strconv.Itoa(c)]; got != chaosDeployments/chaosComponents {
			t.Errorf("dora_deployments_total{component=svc-%d} = %v, want %d", c, got, chaosDeployments/chaosComponents)
		}
	}
	var leadTimes uint64
	for _, m := range mfs["dora_change_lead_time_seconds"].GetMetric() {
		leadTimes += m.GetHistogram().GetSampleCount()
	}
	// The first deployment of each component has no earlier commit to count from: no lead time.
	if leadTimes != chaosDeployments-chaosComponents {
		var outcomes []string
		for _, m := range mfs["doraflow_metrics_exporter_commits"].GetMetric() {
			outcomes = append(outcomes, fmt.Sprintf("%s=%v", m.GetLabel()[len(m.GetLabel())-1].GetValue(), m.GetGauge().GetValue()))
		}
		t.Errorf("dora_change_lead_time_seconds counts %d commits, want %d (one per deployment but each component's first); commits by outcome: %v",
			leadTimes, chaosDeployments-chaosComponents, outcomes)
	}
	dlq, err := js.Stream(t.Context(), events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d dead letters, want none", info.State.Msgs)
	}
	statuses := lake.StatusCounts()
	t.Logf("DevLake answered %v; GitHub answered %v", statuses, gh.Statuses())
	if statuses[500] == 0 || gh.Statuses()[403] == 0 {
		t.Errorf("the faults did not strike (DevLake %v, GitHub %v)", statuses, gh.Statuses())
	}

	// No secret anywhere: every canary, in every form, is absent from every log line of every
	// process (killed ones included), every message of every stream (headers included), every ops
	// page and the CLI's output.
	scanStart := time.Now()
	scanPages()
	out, err := leaks.cli(t.Context(), doraflowCLI(t), []string{"NATS_URL=" + natsURL}, "status")
	if err != nil || !strings.Contains(out, events.StreamRaw) {
		t.Errorf("doraflow status: %v\n%s", err, out)
	}
	if err := leaks.allStreams(t.Context(), js); err != nil {
		t.Error(err)
	}
	for _, p := range launched {
		leaks.logs(p)
	}
	t.Logf("leak scan (%s): %s", time.Since(scanStart).Round(time.Millisecond), leaks.summary())
	if leaks.logLines == 0 || leaks.pages == 0 || leaks.streams[events.StreamRaw] < chaosDeployments {
		t.Errorf("the leak scan saw too little to prove anything: %s", leaks.summary())
	}
	if leaks.hitCount > 0 { // one line per hit: make test-chaos shows only lines naming this file
		t.Errorf("%d canary secrets leaked; the first %d:", leaks.hitCount, len(leaks.hits))
		for _, h := range leaks.hits {
			t.Error(h)
		}
	}
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// scrape parses a service's /metrics.
func scrape(ctx context.Context, ops string) (map[string]*dto.MetricFamily, error) {
	_, body, err := servicetest.HTTPGet(ctx, ops+"/metrics")
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(body))
}

// exporterTotals sums dora_deployments_total and dora_incidents_total.
func exporterTotals(ctx context.Context, ops string) (deployments, incidents float64, err error) {
	mfs, err := scrape(ctx, ops)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range mfs["dora_deployments_total"].GetMetric() {
		deployments += m.GetCounter().GetValue()
	}
	for _, m := range mfs["dora_incidents_total"].GetMetric() {
		incidents += m.GetCounter().GetValue()
	}
	return deployments, incidents, nil
}
