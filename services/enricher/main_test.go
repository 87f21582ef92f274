package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
)

func TestRunServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-seed.yaml")
	servicetest.AssertStandardEndpoints(t, s, "enricher")
	s.Stop(t)
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "enricher") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

func TestEnvironmentProblems(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"token and app", map[string]string{"GITHUB_TOKEN": "x", "GITHUB_APP_ID": "1", "GITHUB_APP_INSTALLATION_ID": "2",
			"GITHUB_APP_PRIVATE_KEY": "not a key"},
			[]string{"GITHUB_TOKEN and GITHUB_APP_* are both set", "GITHUB_APP_PRIVATE_KEY: github app private key: no PEM block"}},
		{"incomplete app", map[string]string{"GITHUB_APP_ID": "abc"},
			[]string{`GITHUB_APP_ID="abc" is not a positive integer`, `GITHUB_APP_INSTALLATION_ID="" is not a positive integer`,
				"GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE is required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := run(t.Context(), nil, func(k string) string { return tc.env[k] }, &out)
			if err == nil {
				t.Fatal("run succeeded, want environment problems")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "not a key") {
				t.Errorf("error reveals the key: %v", err)
			}
		})
	}
}

// pipeline is run() on an in-process JetStream and a fake GitHub.
type pipeline struct {
	t    *testing.T
	gh   *githubtest.Server
	repo *githubtest.Repo
	js   jetstream.JetStream
	svc  *servicetest.Service
	seq  int
	// env and args start another replica.
	env  map[string]string
	args []string
}

func startPipeline(t *testing.T) *pipeline { t.Helper(); return startPipelineWith(t, "test-token") }

// startPipelineWith runs the enricher with token as GITHUB_TOKEN; the fake GitHub accepts only
// "test-token".
func startPipelineWith(t *testing.T, token string) *pipeline {
	t.Helper()
	ns := natstest.Start(t)
	gh := githubtest.New(t)
	gh.RequireToken("test-token")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`integration:
  devlake:
    project_id: "1"
    teams:
      - name: payments
        project_id: "2"
        argocd_components: [checkout]
github:
  base_url: %q
enricher:
  products:
    - name: Shop
      components: [checkout]
`, gh.URL())
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, js := ns.Connect()
	env, args := map[string]string{"NATS_URL": ns.URL(), "GITHUB_TOKEN": token}, []string{"--config", cfg}
	svc := servicetest.Start(t, run, env, args...)
	return &pipeline{t: t, gh: gh, repo: gh.Repo("acme", "checkout"), js: js, svc: svc, env: env, args: args}
}

// replica starts another enricher on the same server and configuration.
func (p *pipeline) replica() *servicetest.Service {
	p.t.Helper()
	return servicetest.Start(p.t, run, p.env, p.args...)
}

func (p *pipeline) deployment(cluster, sha string) events.DeploymentObserved {
	p.seq++
	return events.DeploymentObserved{
		ID: events.DeploymentID("argocd", "uid-"+cluster, int64(p.seq)), Source: "argocd", Instance: "argocd",
		Cluster: cluster, Namespace: "shop", Application: "checkout-" + cluster, Component: "checkout",
		Environment: events.EnvironmentProduction, Kind: events.KindDeploy, Result: events.ResultSuccess,
		FinishedAt: githubtest.Epoch.Add(time.Duration(p.seq) * time.Hour),
		AppCommits: []events.CommitRef{{SHA: sha, RepoURL: "https://github.com/acme/checkout", Via: "image_tag"}},
	}
}

// publish puts an observed event on the raw stream as a source would; msgID lets a test publish a
// duplicate that JetStream itself does not drop.
func (p *pipeline) publish(subject, msgID string, v any) {
	p.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(nats.MsgIdHdr, msgID)
	if _, err := p.js.PublishMsg(p.t.Context(), m); err != nil {
		p.t.Fatal(err)
	}
}

// stored returns the bodies of every message on subject in stream, in order.
func (p *pipeline) stored(stream, subject string) [][]byte {
	p.t.Helper()
	var out [][]byte
	for _, m := range p.storedMsgs(stream, subject) {
		out = append(out, m.Data)
	}
	return out
}

// storedMsgs returns every message on subject in stream, with its headers, in order.
func (p *pipeline) storedMsgs(stream, subject string) []*jetstream.RawStreamMsg {
	p.t.Helper()
	s, err := p.js.Stream(p.t.Context(), stream)
	if err != nil {
		p.t.Fatal(err)
	}
	info, err := s.Info(p.t.Context())
	if err != nil {
		p.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(p.t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			p.t.Fatal(err)
		}
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

func (p *pipeline) deployments() []events.DeploymentEnriched {
	var out []events.DeploymentEnriched
	for _, b := range p.stored(events.StreamEnriched, events.SubjectDeploymentEnriched) {
		var d events.DeploymentEnriched
		if err := json.Unmarshal(b, &d); err != nil {
			p.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func (p *pipeline) waitDeployments(n int) []events.DeploymentEnriched {
	p.t.Helper()
	var got []events.DeploymentEnriched
	wait.For(p.t, 30*time.Second, func() error {
		got = p.deployments()
		if len(got) < n {
			return fmt.Errorf("%d enriched deployments, want %d", len(got), n)
		}
		return nil
	})
	return got
}

func (p *pipeline) metric(line string) error {
	_, body := p.svc.Get(p.t, "/metrics")
	if !strings.Contains(body, line+"\n") {
		return fmt.Errorf("/metrics has no line %q; GitHub requests:\n%s", line, enricherLines(body))
	}
	return nil
}

func shaList(cs []events.Commit) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.SHA)
	}
	return out
}

func TestEnrichesDeploymentsAndIncidentsOnce(t *testing.T) {
	p := startPipeline(t)
	r := p.repo
	first := r.Push(1)[0]
	d1 := p.deployment("eu", first)
	p.publish(events.SubjectDeploymentObserved, d1.ID, d1)
	squashed, pr := r.Squash(3)
	merged, _ := r.Merge(2)
	d2 := p.deployment("eu", r.Head())
	p.publish(events.SubjectDeploymentObserved, d2.ID, d2)
	d3 := p.deployment("us", r.Head()) // second cluster, same revision
	p.publish(events.SubjectDeploymentObserved, d3.ID, d3)
	// The same deployment again under another message ID: JetStream stores it, the enricher skips it.
	p.publish(events.SubjectDeploymentObserved, "redelivered-by-a-restarted-watcher", d2)

	got := p.waitDeployments(3)
	wait.For(t, 10*time.Second, func() error { return p.metric(`doraflow_enricher_duplicates_skipped_total{kind="deployment"} 1`) })
	if got := p.deployments(); len(got) != 3 {
		t.Fatalf("%d enriched deployments, want 3 (one per distinct deployment)", len(got))
	}
	wantIDs := []string{d1.ID, d2.ID, d3.ID}
	for i, d := range got {
		if d.ID != wantIDs[i] {
			t.Errorf("enriched[%d].id = %s, want %s", i, d.ID, wantIDs[i])
		}
	}
	if len(got[0].Commits) != 0 || got[0].Ranges[0].HeadSHA != first {
		t.Errorf("first deployment: commits %v, ranges %+v; want none, the head %s as baseline", shaList(got[0].Commits), got[0].Ranges, first)
	}
	if diff := cmp.Diff(append(append([]string(nil), squashed...), merged...), shaList(got[1].Commits)); diff != "" {
		t.Errorf("second deployment commits (-want +got):\n%s", diff)
	}
	if c := got[1].Commits[0]; c.PullRequest == nil || c.PullRequest.Number != pr {
		t.Errorf("squash commit pull request = %+v, want #%d", c.PullRequest, pr)
	}
	if r := got[2].Rollout; len(got[2].Commits) != 0 || len(got[2].Ranges) != 0 || r == nil || r.Counted ||
		r.LogicalID != got[1].Rollout.LogicalID {
		t.Errorf("second cluster: commits %d, ranges %+v, rollout %+v; want none, none, a child of %s not counted",
			len(got[2].Commits), got[2].Ranges, r, got[1].Rollout.LogicalID)
	}
	wantRouting := events.Routing{Teams: []string{"payments"}, Targets: []events.Target{
		{Scope: events.ScopeGlobal, ProjectID: "1"}, {Scope: events.ScopeTeam, Team: "payments", ProjectID: "2"}}}
	if diff := cmp.Diff(wantRouting, got[1].Routing); diff != "" {
		t.Errorf("routing (-want +got):\n%s", diff)
	}

	// An incident after those deployments links the last one that finished before it opened.
	inc := events.IncidentObserved{ID: "inc-test-1", Source: "webrca", IncidentID: "u1", Key: "ITN-1",
		Change: events.IncidentOpened, Title: "checkout down", Status: "new", Products: []string{"Shop"},
		CreatedAt: d3.FinishedAt.Add(time.Minute), ObservedAt: d3.FinishedAt.Add(2 * time.Minute), Fingerprint: "f1"}
	p.publish(events.SubjectIncidentObserved, inc.ID, inc)
	p.publish(events.SubjectIncidentObserved, "again", inc)
	var incs []events.IncidentEnriched
	wait.For(t, 20*time.Second, func() error {
		incs = nil
		for _, b := range p.stored(events.StreamEnriched, events.SubjectIncidentEnriched) {
			var i events.IncidentEnriched
			if err := json.Unmarshal(b, &i); err != nil {
				return err
			}
			incs = append(incs, i)
		}
		if len(incs) != 1 {
			return fmt.Errorf("%d enriched incidents, want 1", len(incs))
		}
		return p.metric(`doraflow_enricher_duplicates_skipped_total{kind="incident"} 1`)
	})
	// The logical deployment d2 and d3 (its second cluster) belong to, from its first finish.
	wantLink := &events.DeploymentLink{DeploymentID: events.LogicalDeploymentID("checkout", events.EnvironmentProduction, d2.ID),
		Component: "checkout", Environment: events.EnvironmentProduction, FinishedAt: d2.FinishedAt,
		Reason: events.LinkLastProductionDeployment}
	if diff := cmp.Diff(wantLink, incs[0].CausedBy); diff != "" {
		t.Errorf("caused_by (-want +got):\n%s", diff)
	}
	for _, line := range []string{
		`doraflow_enricher_enriched_total{kind="deployment"} 3`,
		`doraflow_enricher_quality_flags_total{flag="first_deployment",kind="deployment"} 1`,
		`doraflow_enricher_commit_ranges_total{status="identical"} 0`,
		`doraflow_enricher_github_requests_total{endpoint="compare",outcome="ok"} 1`,
		`doraflow_enricher_github_requests_total{endpoint="graphql_pull_requests",outcome="ok"} 1`,
		`doraflow_enricher_github_rate_limit_remaining{resource="core"} 5000`,
	} {
		if err := p.metric(line); err != nil {
			t.Error(err)
		}
	}
	p.svc.Stop(t)
}

// TestTwoClustersAreOneLogicalDeploymentAndARevertIsAChangeFailure rolls three changes out to two
// production clusters: each change is one counted logical deployment, whose second cluster asks
// GitHub nothing; the third change is a git revert of the second, which becomes a rollback and puts
// one ChangeFailureInferred for the second change on the bus.
func TestTwoClustersAreOneLogicalDeploymentAndARevertIsAChangeFailure(t *testing.T) {
	p := startPipeline(t)
	r := p.repo
	var sent []events.DeploymentObserved
	rollout := func(sha string) {
		for _, cluster := range []string{"eu", "us"} {
			d := p.deployment(cluster, sha)
			p.publish(events.SubjectDeploymentObserved, d.ID, d)
			sent = append(sent, d)
		}
	}
	rollout(r.Push(1)[0])
	bad := r.Push(1)[0]
	rollout(bad)
	revert := r.Revert(bad)
	rollout(revert)
	got := p.waitDeployments(len(sent))

	logical := func(i int) string {
		return events.LogicalDeploymentID("checkout", events.EnvironmentProduction, sent[i].ID)
	}
	type row struct {
		LogicalID  string
		Counted    bool
		Clusters   []string
		Kind       events.Kind
		RollbackOf string
		Commits    []string
	}
	want := []row{
		{logical(0), true, []string{"eu"}, events.KindDeploy, "", nil},
		{logical(0), false, []string{"eu", "us"}, events.KindDeploy, "", nil},
		{logical(2), true, []string{"eu"}, events.KindDeploy, "", []string{bad}},
		{logical(2), false, []string{"eu", "us"}, events.KindDeploy, "", nil},
		{logical(4), true, []string{"eu"}, events.KindRollback, logical(2), []string{revert}},
		{logical(4), false, []string{"eu", "us"}, events.KindDeploy, "", nil},
	}
	var rows []row
	for _, d := range got {
		rows = append(rows, row{d.Rollout.LogicalID, d.Rollout.Counted, d.Rollout.Clusters, d.Kind, d.RollbackOf, shaList(d.Commits)})
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("enriched deployments (-want +got):\n%s", diff)
	}

	wantCF := events.ChangeFailureInferred{ChangeFailureSignal: events.ChangeFailureSignal{
		ID: events.ChangeFailureID(logical(2), events.DetectionRevert, false), DeploymentID: logical(2), Source: "enricher",
		Instance: "argocd", Namespace: "shop", Application: "checkout-eu", Component: "checkout",
		Environment: events.EnvironmentProduction, Detection: events.DetectionRevert, DetectedAt: sent[4].FinishedAt,
		DeploymentFinishedAt: sent[2].FinishedAt, RelatedID: logical(4)}}
	var cfs []events.ChangeFailureInferred
	wait.For(t, 10*time.Second, func() error {
		cfs = nil
		for _, m := range p.storedMsgs(events.StreamEnriched, events.SubjectChangeFailureInferred) {
			var cf events.ChangeFailureInferred
			if err := json.Unmarshal(m.Data, &cf); err != nil {
				return err
			}
			if id := m.Header.Get(nats.MsgIdHdr); id != cf.ID {
				return fmt.Errorf("Nats-Msg-Id %q, want the event ID %q", id, cf.ID)
			}
			cfs = append(cfs, cf)
		}
		if len(cfs) != 1 {
			return fmt.Errorf("%d inferred change failures, want 1", len(cfs))
		}
		return nil
	})
	if diff := cmp.Diff([]events.ChangeFailureInferred{wantCF}, cfs, cmpopts.IgnoreFields(events.ChangeFailureSignal{}, "Reason")); diff != "" {
		t.Errorf("inferred change failures (-want +got):\n%s", diff)
	}
	for _, line := range []string{
		`doraflow_enricher_change_failures_inferred_total 1`,
		`doraflow_enricher_quality_flags_total{flag="revert",kind="deployment"} 1`,
		// The second cluster of each change asks GitHub nothing: one compare per change after the first.
		`doraflow_enricher_github_requests_total{endpoint="compare",outcome="ok"} 2`,
	} {
		if err := p.metric(line); err != nil {
			t.Error(err)
		}
	}
	p.svc.Stop(t)
}

// GitHub answers 503 for a while, then its quota runs out until a reset: deployments wait, in
// order, and every one is enriched exactly once afterwards; nothing is dead-lettered.
func TestGitHubOutageDelaysButLosesNothing(t *testing.T) {
	p := startPipeline(t)
	r := p.repo
	d1 := p.deployment("eu", r.Push(1)[0])
	p.publish(events.SubjectDeploymentObserved, d1.ID, d1)
	p.waitDeployments(1)

	// Six 503s (two deliveries of three attempts each), then a spent quota that resets in a few
	// seconds: the fake serves injected faults first, then enforces the quota.
	p.gh.FailNext(6, githubtest.ServerError)
	reset := time.Now().Add(5 * time.Second).Truncate(time.Second)
	p.gh.SetQuota("core", 5000, 0, reset)
	var want [][]string
	var sent []events.DeploymentObserved
	for i := 0; i < 3; i++ {
		s, _ := r.Squash(2)
		want = append(want, s)
		d := p.deployment("eu", r.Head())
		sent = append(sent, d)
		p.publish(events.SubjectDeploymentObserved, d.ID, d)
	}
	wait.For(t, 20*time.Second, func() error {
		if n := p.gh.PendingFaults(); n > 0 {
			return fmt.Errorf("%d 503s still to serve", n)
		}
		return nil
	})
	if got := p.deployments(); len(got) != 1 {
		t.Fatalf("%d enriched deployments during the outage, want 1 (the one before it)", len(got))
	}

	got := p.waitDeployments(4)[1:]
	if len(got) != 3 {
		t.Fatalf("%d enriched deployments after the outage, want 3", len(got))
	}
	for i, d := range got {
		if d.ID != sent[i].ID {
			t.Errorf("enriched[%d] = %s, want %s (stream order)", i, d.ID, sent[i].ID)
		}
		if diff := cmp.Diff(want[i], shaList(d.Commits)); diff != "" {
			t.Errorf("deployment %d commits (-want +got):\n%s", i, diff)
		}
		// The 503s carried X-RateLimit-Remaining: 0, so the client waited for the reset instead of
		// spending requests on certain 403s.
		if d.EnrichedAt.Before(reset) {
			t.Errorf("deployment %d enriched at %v, before the quota reset at %v", i, d.EnrichedAt, reset)
		}
	}
	if n := p.gh.Statuses()[http.StatusForbidden]; n != 0 {
		t.Errorf("GitHub answered 403 %d times; the client should have waited for the reset", n)
	}
	if dlq := p.stored(events.StreamDeadLetter, events.DeadLetterSubject("enricher")); len(dlq) != 0 {
		t.Errorf("%d dead letters, want none: %s", len(dlq), dlq[0])
	}
	for _, line := range []string{
		`doraflow_enricher_github_requests_total{endpoint="compare",outcome="server_error"} 6`,
		`doraflow_enricher_enriched_total{kind="deployment"} 4`,
	} {
		if err := p.metric(line); err != nil {
			t.Error(err)
		}
	}
	p.svc.Stop(t)
}

// TestBadGitHubTokenPausesUntilFixed: a token GitHub rejects (401) is a fault of the whole client,
// not of one deployment: nothing is published or dead-lettered while it lasts, /readyz fails with
// GitHub's answer and what to check, config_fault is 1 and config_errors_total{status="401"}
// counts, one error is logged, and the token appears nowhere. Once GitHub accepts the token the
// next probe resumes by itself and the deployment is enriched in order. A repository GitHub does
// not show (renamed, deleted, private) is that deployment's answer: flagged repo_not_found, and
// the pipeline goes on without pausing.
func TestBadGitHubTokenPausesUntilFixed(t *testing.T) {
	const token = "ghp_canaryRevokedToken0123456789"
	p := startPipelineWith(t, token)
	d1 := p.deployment("eu", p.repo.Push(1)[0])
	p.publish(events.SubjectDeploymentObserved, d1.ID, d1)
	var ready string
	wait.For(t, 20*time.Second, func() error {
		code, body := p.svc.Get(t, "/readyz")
		if code == http.StatusOK {
			return errors.New("/readyz is still ready")
		}
		ready = body
		return nil
	})
	for _, w := range []string{"github: paused by a configuration fault since", "next probe", "HTTP 401", "Bad credentials", "check GITHUB_TOKEN"} {
		if !strings.Contains(ready, w) {
			t.Errorf("/readyz does not say %q:\n%s", w, ready)
		}
	}
	for _, line := range []string{`doraflow_enricher_config_fault 1`, `doraflow_enricher_config_errors_total{status="404"} 0`} {
		if err := p.metric(line); err != nil {
			t.Error(err)
		}
	}
	_, body := p.svc.Get(t, "/metrics")
	if n := metricValue(t, body, `doraflow_enricher_config_errors_total{status="401"}`); n < 1 {
		t.Errorf(`config_errors_total{status="401"} = %v, want at least 1`, n)
	}
	if got := p.deployments(); len(got) != 0 {
		t.Errorf("%d deployments published with a rejected token, want 0", len(got))
	}

	p.gh.RequireToken(token) // GitHub accepts the token again (re-authorised for SSO, say)
	got := p.waitDeployments(1)
	if got[0].ID != d1.ID || !slices.Contains(got[0].Quality, events.QualityFirstDeployment) ||
		slices.Contains(got[0].Quality, events.QualityRepoNotFound) {
		t.Errorf("after the fix: %s %v, want %s first_deployment", got[0].ID, got[0].Quality, d1.ID)
	}
	wait.For(t, 10*time.Second, func() error {
		if code, body := p.svc.Get(t, "/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return p.metric(`doraflow_enricher_config_fault 0`)
	})

	// A renamed repository: that deployment is flagged, the client does not pause.
	d2 := p.deployment("eu", p.repo.Push(1)[0])
	d2.AppCommits[0].RepoURL = "https://github.com/acme/renamed"
	d3 := p.deployment("eu", p.repo.Head())
	p.publish(events.SubjectDeploymentObserved, d2.ID, d2)
	p.publish(events.SubjectDeploymentObserved, d3.ID, d3)
	got = p.waitDeployments(3)
	if !slices.Contains(got[1].Quality, events.QualityRepoNotFound) {
		t.Errorf("deployment of a renamed repository flagged %v, want repo_not_found", got[1].Quality)
	}
	if len(got[2].Commits) != 1 {
		t.Errorf("the next deployment has %d commits, want 1", len(got[2].Commits))
	}
	if code, body := p.svc.Get(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a repository's 404: %d %s", code, body)
	}
	if dlq := p.stored(events.StreamDeadLetter, events.DeadLetterSubject("enricher")); len(dlq) != 0 {
		t.Errorf("%d dead letters, want none: %s", len(dlq), dlq[0])
	}
	p.svc.Stop(t)

	logs := p.svc.Logs.String()
	if strings.Contains(logs, token) || strings.Contains(ready, token) || strings.Contains(body, token) {
		t.Error("the token appears in the logs, /readyz or /metrics")
	}
	var opened, closed int
	for _, l := range strings.Split(logs, "\n") {
		switch {
		case strings.Contains(l, `"level":"error"`) && strings.Contains(l, "GitHub configuration fault"):
			opened++
		case strings.Contains(l, "GitHub configuration fault cleared"):
			closed++
		}
	}
	if opened != 1 || closed != 1 {
		t.Errorf("logged the fault %d times and its end %d times, want once each:\n%s", opened, closed, logs)
	}
}

func enricherLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "doraflow_enricher_github_requests_total") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReplicasEnrichInOrderFromCurrentState runs two replicas. Deliveries of the ordered consumer
// go to either; each replica keeps a copy of the state it read, which the other's writes make
// stale. Every deployment must still get exactly the commit it shipped, as one replica would.
func TestReplicasEnrichInOrderFromCurrentState(t *testing.T) {
	p := startPipeline(t)
	second := p.replica()
	const n = 30
	var want [][]string
	var sent []events.DeploymentObserved
	for i := range n {
		shas := p.repo.Push(1)
		d := p.deployment("eu", shas[0])
		p.publish(events.SubjectDeploymentObserved, d.ID, d)
		sent = append(sent, d)
		if i == 0 {
			shas = nil // the first deployment sets the baseline and ships no lead-time commits
		}
		want = append(want, shas)
	}
	got := p.waitDeployments(n)
	if len(got) != n {
		t.Fatalf("%d enriched deployments, want %d", len(got), n)
	}
	for i, d := range got {
		if d.ID != sent[i].ID {
			t.Fatalf("enriched[%d] = %s, want %s (stream order)", i, d.ID, sent[i].ID)
		}
		if diff := cmp.Diff(want[i], shaList(d.Commits)); diff != "" {
			t.Errorf("deployment %d commits (-want +got):\n%s", i, diff)
		}
		if slices.Contains(d.Quality, events.QualityBehind) || slices.Contains(d.Quality, events.QualityDivergedHistory) {
			t.Errorf("deployment %d flagged %v", i, d.Quality)
		}
	}
	var enriched, conflicts float64
	for _, s := range []*servicetest.Service{p.svc, second} {
		_, body := s.Get(t, "/metrics")
		enriched += metricValue(t, body, `doraflow_enricher_enriched_total{kind="deployment"}`)
		conflicts += metricValue(t, body, `doraflow_enricher_state_conflicts_total`)
	}
	t.Logf("state conflicts recomputed: %v", conflicts)
	if enriched != n {
		t.Errorf("the replicas enriched %v deployments between them, want %d", enriched, n)
	}
	second.Stop(t)
	p.svc.Stop(t)
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// TestStartLogNeverShowsCredentialsOfTheBaseURL: a github.base_url carrying userinfo and a token
// parameter (a proxy that wants them) is logged redacted, as every other URL.
func TestStartLogNeverShowsCredentialsOfTheBaseURL(t *testing.T) {
	srv := natstest.Start(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := `github:
  base_url: "https://proxy-user:canaryPW@ghe.example.com/api/v3/?access_token=canaryTK"
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", cfg)
	s.Stop(t)
	logs := s.Logs.String()
	if !strings.Contains(logs, "ghe.example.com") {
		t.Fatalf("the start log does not name the base URL:\n%s", logs)
	}
	for _, secret := range []string{"canaryPW", "canaryTK", "proxy-user"} {
		if strings.Contains(logs, secret) {
			t.Errorf("%q logged:\n%s", secret, logs)
		}
	}
}
