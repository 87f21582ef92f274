package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/doraflow/doraflow/internal/argocdtest"
	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/pkg/events"
)

var applicationsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

type demoOptions struct {
	seed       uint64
	binDir     string
	kubeAssets string
	dir        string
	opsBase    int
	exit       bool
	out        io.Writer
	// summary receives the final table (tests compare it with a golden file).
	summary io.Writer
	// rows, when set, receives every DevLake row and dora_* series (tests compare it too).
	rows io.Writer
	// observe, when set, is told what happens (tests use it).
	observe *demoObserver
}

// demoObserver lets a test look at a running demo: started gets every service's ops URL once they
// are ready, settled what DevLake stored and what the world did, while the services still run.
type demoObserver struct {
	started func(ops map[string]string)
	settled func(lake *devlaketest.DevLake, conns map[string]devlaketest.Connection, did expectations)
}

// expectations is what the simulated world did, in the terms the pipeline must count it.
type expectations struct {
	// production holds, per component, one key per logical production deployment: a change, an
	// `argocd app rollback`, a GitOps revert or a failed sync, however many clusters it reached.
	production map[string]map[string]bool
	// rolling are the deployments whose history entry appeared during a rolling update.
	rolling []rollingUpdate
	// reverted are the components whose production change was reverted in Git; rolledBack those
	// with an `argocd app rollback`.
	reverted, rolledBack []string
	// failures counts, per component, the production changes that failed (rolled back, reverted,
	// degraded after deploy), each once whatever the number of clusters or signals.
	failures map[string]int
}

// rollingUpdate is one deployment made while the old and the new image both ran.
type rollingUpdate struct {
	component, cluster string
	finished           time.Time
	old, new           string // application commits of the old and the new image
}

// demo runs the whole pipeline against a simulated world: a real kube-apiserver with Argo CD's
// Application CRD, changed the way Argo CD changes Applications; a fake GitHub with commits and pull
// requests; a fake WebRCA with incidents; and the fake DevLake. It prints progress, then the DORA
// table the exporter serves, and keeps running until Ctrl-C (or exits with --exit).
func demo(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	return demoObserved(ctx, args, getenv, out, nil)
}

// demoObserved is demo with an observer (nil: none).
func demoObserved(ctx context.Context, args []string, getenv func(string) string, out io.Writer, observe *demoObserver) error {
	fs := flag.NewFlagSet("doraflow demo", flag.ContinueOnError)
	fs.SetOutput(out)
	o := demoOptions{out: out, summary: out, observe: observe}
	fs.Uint64Var(&o.seed, "seed", 42, "simulation `seed`: a seed always gives the same world and the same numbers")
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the service binaries (make build)")
	fs.StringVar(&o.kubeAssets, "kube-assets", getenv("KUBEBUILDER_ASSETS"), "`directory` with kube-apiserver and etcd (hack/tools.sh kube)")
	fs.StringVar(&o.dir, "dir", ".run/demo", "working `directory` (JetStream data, logs); emptied at start")
	fs.IntVar(&o.opsBase, "ops-port", 8081, "first ops `port` (0: any free port)")
	fs.BoolVar(&o.exit, "exit", false, "stop after printing the table instead of waiting for Ctrl-C")
	summary := fs.String("summary", "", "also write the final tables to this `file` (tests compare it with a golden file)")
	rows := fs.String("rows", "", "write every DevLake row and dora_* series to this `file`, normalised to be the same every week")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rows != "" {
		f, err := os.Create(*rows)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		o.rows = f
	}
	if *summary != "" {
		f, err := os.Create(*summary)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		o.summary = io.MultiWriter(out, f)
	}
	return o.run(ctx, getenv)
}

func (o demoOptions) run(ctx context.Context, getenv func(string) string) error {
	if o.kubeAssets == "" {
		return errors.New("no kube-apiserver: pass --kube-assets or set KUBEBUILDER_ASSETS (make demo does: hack/tools.sh kube)")
	}
	for _, s := range services {
		if _, err := os.Stat(filepath.Join(o.binDir, s)); err != nil {
			return fmt.Errorf("service binary %s missing in %s: run `make build` first", s, o.binDir)
		}
	}
	if err := os.RemoveAll(o.dir); err != nil {
		return err
	}
	logDir := filepath.Join(o.dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	monday, evaluation := demoWeeks(time.Now())
	fmt.Fprintf(o.out, "doraflow demo, seed %d: three simulated weeks, %s to %s\n\n", o.seed,
		monday.Format(time.DateOnly), evaluation.Add(-time.Second).Format(time.DateOnly))

	// The simulated world: Kubernetes with Argo CD's CRD, GitHub, WebRCA and DevLake.
	crd, err := argocdtest.ApplicationCRD(ctx)
	if err != nil {
		return err
	}
	kube := &envtest.Environment{BinaryAssetsDirectory: o.kubeAssets, CRDDirectoryPaths: []string{crd}, ErrorIfCRDPathMissing: true}
	restCfg, err := kube.Start()
	if err != nil {
		return fmt.Errorf("start kube-apiserver and etcd from %s: %w", o.kubeAssets, err)
	}
	defer func() { _ = kube.Stop() }()
	kubeconfig := filepath.Join(o.dir, "kubeconfig")
	if err := writeKubeconfig(restCfg, kubeconfig); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "%-17s %s (Argo CD Application CRD from %s)\n", "kube-apiserver", restCfg.Host, argocdtest.Module)

	gh := githubtest.Start()
	defer gh.Close()
	gh.RequireToken("demo-github-token")
	sso := webrcatest.StartSSO()
	defer sso.Close()
	sso.AddClient("doraflow-demo", "demo-client-secret")
	webrca := webrcatest.StartAPI(sso)
	defer webrca.Close()
	lake := devlaketest.New()
	lakeSrv := httptest.NewServer(lake)
	defer lakeSrv.Close()
	conns := map[string]devlaketest.Connection{}
	for _, p := range []string{"global", "payments", "platform"} {
		conns[p] = lake.AddConnection("doraflow-" + p)
	}
	fmt.Fprintf(o.out, "%-17s %s\n%-17s %s\n%-17s %s\n", "GitHub (fake)", gh.URL(), "WebRCA (fake)", webrca.URL(), "DevLake (fake)", lakeSrv.URL)

	ns, err := startNATS("127.0.0.1:0", filepath.Join(o.dir, "nats"))
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	natsURL := ns.ClientURL()
	fmt.Fprintf(o.out, "%-17s %s\n", "NATS JetStream", natsURL)

	configPath := filepath.Join(o.dir, "config.yaml")
	if err := os.WriteFile(configPath, []byte(demoConfig(gh.URL(), webrca.URL(), sso.URL(), lakeSrv.URL, conns, evaluation)), 0o600); err != nil {
		return err
	}
	secrets := []string{"KUBECONFIG=" + kubeconfig, "GITHUB_TOKEN=demo-github-token",
		"WEBRCA_CLIENT_ID=doraflow-demo", "WEBRCA_CLIENT_SECRET=demo-client-secret"}
	for p, c := range conns {
		secrets = append(secrets, "DEVLAKE_TOKEN_"+strings.ToUpper(p)+"="+c.APIKey)
	}
	procs, ops, err := startServices(ctx, launch{binDir: o.binDir, logDir: logDir, config: configPath, opsBase: o.opsBase,
		env: func(addr string) []string { return append(childEnv(getenv, natsURL, addr), secrets...) }, ready: 60 * time.Second,
		started: func(c *child, addr string) { fmt.Fprintf(o.out, "%-17s http://%s/\n", c.name, addr) }})
	defer stopAll(procs, io.Discard)
	if err != nil {
		return err
	}
	// The CLI (status, dlq, dora) finds this pipeline through the state file; NATS_URL is printed too.
	defer writePipelineState(o.out, getenv, "demo", natsURL, ops)()
	if o.observe != nil && o.observe.started != nil {
		o.observe.started(ops)
	}

	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	seen := newSeen()
	sub, err := nc.Subscribe("doraflow.>", func(m *nats.Msg) {
		seen.add(m.Subject, m.Header.Get(events.HeaderID))
		if m.Subject == events.SubjectDeploymentEnriched {
			seen.enriched(m.Data)
		}
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()

	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": demoNamespace}}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", demoNamespace, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	w := &world{ctx: ctx, start: monday, apps: dyn.Resource(applicationsGVR).Namespace(demoNamespace), gh: gh, seen: seen,
		watcher: ops["argocd-watcher"], state: map[string]*appState{}, heads: map[string]string{}, shas: map[int]string{},
		did: expectations{production: map[string]map[string]bool{}, failures: map[string]int{}}, failedChanges: map[string]bool{}}
	steps := timeline(o.seed, monday)
	fmt.Fprintf(o.out, "\nSimulating %d events: each is applied, then the pipeline's answer is awaited.\n\n", len(steps))
	if err := w.createApps(); err != nil {
		return err
	}
	incidents, err := play(o.out, steps, w.apply)
	if err != nil {
		return fmt.Errorf("%w; see the logs in %s", err, logDir)
	}
	webrca.SetIncidents(incidentsFor(incidents)...)
	for _, s := range incidents {
		fmt.Fprintf(o.out, "[   WebRCA] %s\n", s)
	}
	fmt.Fprintln(o.out, "\nWaiting for the pipeline to settle (enricher, DevLake, exporter)…")
	if err := settle(ctx, js, seen, lake, conns["global"].ID, ops["metrics-exporter"], w.deployments, len(incidents)); err != nil {
		return fmt.Errorf("%w; see the logs in %s", err, logDir)
	}
	if o.observe != nil && o.observe.settled != nil {
		o.observe.settled(lake, conns, w.did)
	}
	if err := printSummary(ctx, o.summary, ops["metrics-exporter"], lake, conns); err != nil {
		return err
	}
	if o.rows != nil {
		if err := printRows(ctx, o.rows, ops["metrics-exporter"], lake, conns, gh, monday); err != nil {
			return err
		}
	}
	fmt.Fprint(o.out, closing(ops["metrics-exporter"], o.exit))
	if o.exit {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case c := <-exited(procs):
		return fmt.Errorf("%s exited: %w (see %s)", c.name, c.err, c.logPath)
	}
}

// demoConfig is one YAML for every service, pointing at the fakes.
func demoConfig(github, webrca, sso, lake string, conns map[string]devlaketest.Connection, evaluation time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, `argocd:
  enabled: true
  instance: %s
  namespaces: [%s]
  known_clusters: [stage-eu, prod-eu, prod-us]
  # The simulated weeks are in the recent past; the window covers them, so the simulated
  # degradation is attributed to its deployment.
  degraded_window: 720h
  component_repos:
`, demoInstance, demoNamespace)
	for _, c := range demoComponents {
		fmt.Fprintf(&b, "    %s: https://github.com/acme/%s\n", c.name, c.name)
	}
	fmt.Fprintf(&b, `webrca:
  enabled: true
  base_url: %s
  token_url: %s
  interval: 10s
  retry_backoff: 1s
  products: [Checkout, Payments, Identity]
github:
  base_url: %s
  repo_hosts: [github.com]
enricher:
  products:
    - {name: Checkout, components: [checkout-api], teams: [payments]}
    - {name: Payments, components: [payment-gateway], teams: [payments]}
    - {name: Identity, components: [auth-service], teams: [platform]}
integration:
  devlake:
    enabled: true
    base_url: %s
    project_id: global
    teams:
      - {name: payments, project_id: payments, argocd_components: [checkout-api, payment-gateway]}
      - {name: platform, project_id: platform, argocd_components: [auth-service]}
devlake_sink:
  # A failed sync ships no application commit; post it with its GitOps revision, as FAILURE.
  gitops_commit_fallback: true
  connections:
`, webrca, sso, github, lake)
	for _, p := range []string{"global", "payments", "platform"} {
		fmt.Fprintf(&b, "    - {project_id: %s, connection_id: %d, token_env: DEVLAKE_TOKEN_%s}\n", p, conns[p].ID, strings.ToUpper(p))
	}
	fmt.Fprintf(&b, `metrics:
  windows: [168h, 720h]
  benchmark: dora2023
  evaluation_time: %s
`, evaluation.Format(time.RFC3339))
	return b.String()
}

// appState is what the demo knows of one Application.
type appState struct {
	uid     string
	history []entry
}

type entry struct {
	id       int64
	revision string // GitOps revision
	sha      string // application commit in the image tag
	change   int    // the change it shipped (0: the baseline before the demo)
}

// world applies timeline steps to the fakes and to Kubernetes, and waits for the pipeline.
type world struct {
	ctx     context.Context
	start   time.Time
	apps    dynamic.ResourceInterface
	gh      *githubtest.Server
	seen    *seen
	watcher string // argocd-watcher's ops URL
	state   map[string]*appState
	heads   map[string]string // component → main's head
	shas    map[int]string    // change → main's head after it merged
	// deployments counts DeploymentObserved events expected (successful and failed).
	deployments int
	did         expectations
	// failedChanges holds "component change" of the production changes that failed.
	failedChanges map[string]bool
}

func appName(component, cluster string) string { return component + "-" + cluster }

func (w *world) createApps() error {
	for _, c := range demoComponents {
		repo := w.gh.Repo("acme", c.name)
		repo.AdvanceTo(w.start.Add(-30 * 24 * time.Hour))
		repo.Push(1) // history before the demo starts: the first deployments have a baseline
		w.heads[c.name] = repo.Head()
		for _, cl := range demoClusters {
			name := appName(c.name, cl.name)
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
				"metadata": map[string]any{"name": name, "namespace": demoNamespace,
					"labels": map[string]any{"doraflow.io/team": c.team}},
				"spec": map[string]any{"project": "default", "source": source(c.name, cl.env),
					"destination": map[string]any{"name": cl.name, "namespace": c.name},
					"syncPolicy":  map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}}},
			}}
			got, err := w.apps.Create(w.ctx, u, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create Application %s: %w", name, err)
			}
			w.state[name] = &appState{uid: string(got.GetUID())}
		}
	}
	return nil
}

func source(component, env string) map[string]any {
	return map[string]any{"repoURL": "https://github.com/acme/gitops.git", "targetRevision": "main",
		"path": "components/" + component + "/overlays/" + env}
}

func (w *world) apply(s step) error {
	st := w.state[appName(s.component, s.cluster)]
	switch s.kind {
	case stepChange:
		repo := w.gh.Repo("acme", s.component)
		// Work started a while before the merge: commits are authored from then on.
		repo.AdvanceTo(s.at.Add(-time.Duration(s.commits) * 6 * time.Hour))
		switch s.merge {
		case "squash":
			repo.Squash(s.commits)
		case "merge":
			repo.Merge(s.commits)
		default:
			repo.Rebase(s.commits)
		}
		w.heads[s.component] = repo.Head()
		w.shas[s.change] = repo.Head()
		return nil
	case stepDeploy:
		sha, ok := w.shas[s.change]
		if !ok {
			return fmt.Errorf("change %d has not merged yet", s.change)
		}
		w.expect(s, fmt.Sprintf("change %d", s.change))
		return w.deploy(s, entry{sha: sha, change: s.change})
	case stepRollback:
		if len(st.history) < 2 {
			return errors.New("nothing to roll back to")
		}
		bad, prev := st.history[len(st.history)-1], st.history[len(st.history)-2]
		w.expect(s, fmt.Sprintf("rollback on %s at %s", s.cluster, ts(s.at)))
		w.failed(s, bad)
		if !slices.Contains(w.did.rolledBack, s.component) {
			w.did.rolledBack = append(w.did.rolledBack, s.component)
		}
		return w.deploy(s, prev) // the older entry's revision and image
	case stepRevert:
		if len(st.history) < 2 {
			return errors.New("nothing to revert")
		}
		bad, prev := st.history[len(st.history)-1], st.history[len(st.history)-2]
		w.expect(s, fmt.Sprintf("revert of change %d", bad.change))
		if !slices.Contains(w.did.reverted, s.component) {
			w.did.reverted = append(w.did.reverted, s.component)
			// The application repository reverts the change too (git revert, straight to main):
			// the next change ships the revert commit.
			repo := w.gh.Repo("acme", s.component)
			repo.AdvanceTo(s.at.Add(-15 * time.Minute))
			w.heads[s.component] = repo.Revert(bad.sha)
		}
		w.failed(s, bad)
		// A new GitOps commit (a new revision) whose image is the previous one.
		return w.deploy(s, entry{sha: prev.sha, change: prev.change})
	case stepFailSync:
		w.expect(s, fmt.Sprintf("failed sync on %s at %s", s.cluster, ts(s.at)))
		return w.failSync(s)
	case stepRecover:
		return w.recover(s)
	}
	return nil
}

// expect records a logical production deployment: steps with the same key are one deployment,
// however many clusters they reach.
func (w *world) expect(s step, key string) {
	if clusterOf(s.cluster).env != "production" {
		return
	}
	if w.did.production[s.component] == nil {
		w.did.production[s.component] = map[string]bool{}
	}
	w.did.production[s.component][key] = true
}

// failed records that the production change e shipped failed, once per change.
func (w *world) failed(s step, e entry) {
	key := fmt.Sprintf("%s %d", s.component, e.change)
	if clusterOf(s.cluster).env != "production" || w.failedChanges[key] {
		return
	}
	w.failedChanges[key] = true
	w.did.failures[s.component]++
}

func gitopsRevision(parts ...string) string {
	h := sha1.Sum([]byte(strings.Join(parts, "/")))
	return hex.EncodeToString(h[:])
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func image(component, sha string) string { return "quay.io/acme/" + component + ":" + sha }

// deploy appends a history entry as a successful sync does, and waits for its DeploymentObserved
// (and, for a rollback, the change-failure signal of the deployment it replaced). A rollback is
// `argocd app rollback` to the previous entry: auto-sync is switched off first (Argo CD refuses
// otherwise), the user is recorded and the app is OutOfSync afterwards. Every other deploy is an
// automated sync of a new GitOps revision.
func (w *world) deploy(s step, e entry) error {
	name := appName(s.component, s.cluster)
	st := w.state[name]
	cl := clusterOf(s.cluster)
	rollback := s.kind == stepRollback
	if !rollback {
		e.revision = gitopsRevision(name, e.sha, strconv.Itoa(len(st.history)))
	}
	e.id = int64(len(st.history))
	var running string // the application commit live before this deploy
	if len(st.history) > 0 {
		running = st.history[len(st.history)-1].sha
	}
	started := s.at.Add(-2 * time.Minute)
	health := map[string]any{"status": "Healthy", "lastTransitionTime": ts(s.at.Add(time.Minute))}
	images := []any{image(s.component, e.sha)}
	switch {
	case s.degraded > 0:
		health = map[string]any{"status": "Degraded", "lastTransitionTime": ts(s.at.Add(s.degraded))}
	case s.rolling > 0 && running != "" && running != e.sha:
		// Live pods of both ReplicaSets; Argo CD lists the images sorted.
		health = map[string]any{"status": "Progressing", "lastTransitionTime": ts(started)}
		images = []any{image(s.component, min(running, e.sha)), image(s.component, max(running, e.sha))}
	}
	initiated := map[string]any{"automated": true}
	sync := map[string]any{"status": "Synced", "revision": e.revision}
	if rollback {
		initiated = map[string]any{"username": "oncall@acme.example"}
		sync = map[string]any{"status": "OutOfSync", "revision": st.history[len(st.history)-1].revision}
	}
	var seenBefore float64
	if len(images) > 1 {
		var err error
		if seenBefore, _, err = w.watcherProgress(); err != nil {
			return err
		}
	}
	err := w.update(name, func(spec, status map[string]any) {
		if rollback {
			delete(spec, "syncPolicy")
		}
		src := source(s.component, cl.env)
		h, _ := status["history"].([]any)
		h = append(h, map[string]any{"id": e.id, "revision": e.revision, "deployStartedAt": ts(started),
			"deployedAt": ts(s.at), "source": src, "initiatedBy": initiated})
		status["history"] = h
		status["sync"] = sync
		status["operationState"] = map[string]any{"phase": "Succeeded", "message": "successfully synced (all tasks run)",
			"startedAt": ts(started), "finishedAt": ts(s.at),
			"operation":  map[string]any{"sync": map[string]any{"revision": e.revision}, "initiatedBy": initiated},
			"syncResult": map[string]any{"revision": e.revision, "source": src}}
		status["summary"] = map[string]any{"images": images}
		status["health"] = health
	})
	if err != nil {
		return err
	}
	st.history = append(st.history, e)
	w.deployments++
	dep := events.DeploymentID(demoInstance, st.uid, e.id)
	if len(images) > 1 {
		if err := w.endRollout(s, e, running, seenBefore, dep); err != nil {
			return err
		}
	}
	want := []string{dep}
	if rollback {
		replaced := events.DeploymentID(demoInstance, st.uid, e.id-1)
		want = append(want, events.ChangeFailureID(replaced, events.DetectionRollback, false))
	}
	if s.degraded > 0 {
		want = append(want, events.ChangeFailureID(dep, events.DetectionDegraded, false))
		w.failed(s, e)
	}
	return w.seen.wait(w.ctx, events.SubjectDeploymentObserved, want...)
}

// endRollout ends the rolling update of deployment dep once the watcher has seen it in progress:
// the app turns Healthy with only the new image left.
func (w *world) endRollout(s step, e entry, old string, updatesBefore float64, dep string) error {
	if err := w.watcherSaw(updatesBefore, dep); err != nil {
		return err
	}
	if err := w.update(appName(s.component, s.cluster), func(_, status map[string]any) {
		status["summary"] = map[string]any{"images": []any{image(s.component, e.sha)}}
		status["health"] = map[string]any{"status": "Healthy", "lastTransitionTime": ts(s.at.Add(s.rolling))}
	}); err != nil {
		return err
	}
	w.did.rolling = append(w.did.rolling, rollingUpdate{component: s.component, cluster: s.cluster, finished: s.at,
		old: old, new: e.sha})
	return nil
}

// watcherProgress returns how many Application updates the argocd-watcher's informer has
// delivered and how many keys wait in its queue.
func (w *world) watcherProgress() (updates, queued float64, err error) {
	families, err := scrape(w.ctx, w.watcher+"/metrics")
	if err != nil {
		return 0, 0, err
	}
	for _, m := range families["doraflow_argocd_watcher_informer_events_total"].GetMetric() {
		if label(m, "type") == "update" {
			updates = m.GetCounter().GetValue()
		}
	}
	queued = sum(families["doraflow_argocd_watcher_queue_depth"])
	return updates, queued, nil
}

// watcherSaw waits until the argocd-watcher has had an update after the first `before` delivered
// and its queue is empty (a worker took the key and read the Application as updated), or until it
// has published the deployment dep.
func (w *world) watcherSaw(before float64, dep string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if w.seen.has(dep) {
			return nil
		}
		updates, queued, err := w.watcherProgress()
		if err != nil {
			return err
		}
		if updates > before && queued == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("argocd-watcher did not take the update of %s within 30s", dep)
		}
		select {
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *world) failSync(s step) error {
	name := appName(s.component, s.cluster)
	st := w.state[name]
	revision := gitopsRevision(name, w.heads[s.component], "failed")
	started := s.at.Add(-90 * time.Second)
	err := w.update(name, func(_, status map[string]any) {
		status["operationState"] = map[string]any{"phase": "Failed", "message": "one or more objects failed to apply (admission webhook denied the request)",
			"startedAt": ts(started), "finishedAt": ts(s.at),
			"operation":  map[string]any{"sync": map[string]any{"revision": revision}, "initiatedBy": map[string]any{"automated": true}},
			"syncResult": map[string]any{"revision": revision}}
	})
	if err != nil {
		return err
	}
	w.deployments++
	return w.seen.wait(w.ctx, events.SubjectDeploymentObserved, events.FailedOperationID(demoInstance, st.uid, started))
}

func (w *world) recover(s step) error {
	name := appName(s.component, s.cluster)
	st := w.state[name]
	err := w.update(name, func(_, status map[string]any) {
		status["health"] = map[string]any{"status": "Healthy", "lastTransitionTime": ts(s.at)}
	})
	if err != nil {
		return err
	}
	dep := events.DeploymentID(demoInstance, st.uid, st.history[len(st.history)-1].id)
	return w.seen.wait(w.ctx, events.SubjectChangeFailureDetected, events.ChangeFailureID(dep, events.DetectionDegraded, true))
}

// update applies fn to an Application's spec and status and writes it back with a plain update, as
// Argo CD does (the CRD has no status subresource).
func (w *world) update(name string, fn func(spec, status map[string]any)) error {
	u, err := w.apps.Get(w.ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	st, _, _ := unstructured.NestedMap(u.Object, "status")
	if st == nil {
		st = map[string]any{}
	}
	fn(spec, st)
	if err := unstructured.SetNestedMap(u.Object, spec, "spec"); err != nil {
		return err
	}
	if err := unstructured.SetNestedMap(u.Object, st, "status"); err != nil {
		return err
	}
	_, err = w.apps.Update(w.ctx, u, metav1.UpdateOptions{})
	return err
}

func clusterOf(name string) demoCluster {
	for _, c := range demoClusters {
		if c.name == name {
			return c
		}
	}
	return demoCluster{name: name, env: "production"}
}

// incidentsFor turns incident steps into WebRCA incidents in their final state.
func incidentsFor(steps []step) []webrcatest.Incident {
	var out []webrcatest.Incident
	for i, s := range steps {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		inc := webrcatest.NewIncident(id, s.key, s.at)
		inc["summary"], inc["severity"], inc["products"] = s.summary, s.severity, []any{s.product}
		if s.resolved > 0 {
			done := ts(s.at.Add(s.resolved))
			inc["status"], inc["resolved_at"], inc["last_changed_at"], inc["updated_at"] = "resolved", done, done, done
		}
		out = append(out, inc)
	}
	return out
}

// seen records the event IDs published on each subject, from a core NATS subscription, and the
// logical deployment each enriched deployment counts as.
type seen struct {
	mu  sync.Mutex
	ids map[string]map[string]bool
	// logical maps an enriched deployment's ID to the logical deployment it stands for in DORA
	// numbers and DevLake: its Rollout.LogicalID when it is the counted child, its own ID without a
	// Rollout, "" for a child that is not counted.
	logical map[string]string
}

func newSeen() *seen { return &seen{ids: map[string]map[string]bool{}, logical: map[string]string{}} }

// enriched records the logical deployment of a DeploymentEnriched body (its latest version wins).
func (s *seen) enriched(body []byte) {
	var d events.DeploymentEnriched
	if json.Unmarshal(body, &d) != nil || d.ID == "" {
		return
	}
	logical := d.ID
	if r := d.Rollout; r != nil {
		logical = ""
		if r.Counted {
			logical = r.LogicalID
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logical[d.ID] = logical
}

// logicalDeployments counts the distinct logical deployments of the enriched deployments.
func (s *seen) logicalDeployments() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := map[string]bool{}
	for _, l := range s.logical {
		if l != "" {
			ids[l] = true
		}
	}
	return len(ids)
}

func (s *seen) add(subject, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[subject] == nil {
		s.ids[subject] = map[string]bool{}
	}
	s.ids[subject][id] = true
}

func (s *seen) count(subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids[subject])
}

func (s *seen) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ids := range s.ids {
		if ids[id] {
			return true
		}
	}
	return false
}

// wait polls until every id was published, or fails after 30 s.
func (s *seen) wait(ctx context.Context, what string, ids ...string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := ""
		for _, id := range ids {
			if !s.has(id) {
				missing = id
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s event %s within 30s", what, missing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["demo"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["demo"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["demo"] = &clientcmdapi.Context{Cluster: "demo", AuthInfo: "demo"}
	kc.CurrentContext = "demo"
	return clientcmd.WriteToFile(*kc, path)
}

// play applies the steps in order, except incidents, which it returns: they reach WebRCA once every
// deployment is in. Each applied step is printed numbered among the applied ones, [1/N] to [N/N].
func play(out io.Writer, steps []step, apply func(step) error) ([]step, error) {
	var applied, incidents []step
	for _, s := range steps {
		if s.kind == stepIncident {
			incidents = append(incidents, s)
		} else {
			applied = append(applied, s)
		}
	}
	for i, s := range applied {
		if err := apply(s); err != nil {
			return nil, fmt.Errorf("step %d (%s): %w", i+1, s, err)
		}
		fmt.Fprintf(out, "[%3d/%d] %s\n", i+1, len(applied), s)
	}
	return incidents, nil
}

// closing is what the demo prints after its tables: where the numbers come from, and what to try
// while the pipeline still runs; after --exit it has stopped, so it suggests nothing that needs it.
func closing(exporter string, exit bool) string {
	if exit {
		return fmt.Sprintf("\nEvery number above came from %s/metrics. The pipeline has stopped (--exit); run the demo\n"+
			"without --exit to keep it up and query it with doraflow dora, status or dlq.\n", exporter)
	}
	return fmt.Sprintf("\nEvery number above comes from %s/metrics. Try: doraflow dora --exporter %s\n"+
		"The pipeline keeps running; Ctrl-C stops everything.\n", exporter, exporter)
}
