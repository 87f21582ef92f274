package enrich_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/enrich"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// memStore is an in-memory Store and github.Cache.
type memStore struct {
	mu   sync.Mutex
	m    map[string][]byte
	miss error
}

func newMemStore(miss error) *memStore { return &memStore{m: map[string][]byte{}, miss: miss} }

func (s *memStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, s.miss)
	}
	return v, nil
}

func (s *memStore) Put(_ context.Context, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = append([]byte(nil), v...)
	return nil
}

var enrichedAt = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

var routingConfig = enrich.Config{
	GlobalProjectID: "1",
	Teams: []enrich.Team{
		{Name: "payments", ProjectID: "2", Components: []string{"checkout", "billing"}},
		{Name: "web", ProjectID: "3", Components: []string{"checkout", "storefront"}},
		{Name: "sre", ProjectID: "4"},
	},
	Products: []enrich.Product{
		{Name: "Shop", Components: []string{"checkout", "storefront"}},
		{Name: "Platform", Teams: []string{"sre"}},
	},
}

type fixture struct {
	t     *testing.T
	cfg   enrich.Config
	srv   *githubtest.Server
	repo  *githubtest.Repo
	enr   *enrich.Enricher
	cache *memStore
	state *memStore
	n     int
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, routingConfig) }

// newFixtureWith is newFixture with another configuration.
func newFixtureWith(t *testing.T, cfg enrich.Config) *fixture {
	srv := githubtest.New(t)
	f := &fixture{t: t, cfg: cfg, srv: srv, repo: srv.Repo("acme", "shop")}
	f.cache = newMemStore(github.ErrCacheMiss)
	f.state = newMemStore(enrich.ErrNotFound)
	f.build()
	return f
}

// build (re)creates the enricher over the same cache and state: a restart.
func (f *fixture) build() {
	client, err := github.New(github.Options{BaseURL: f.srv.URL(), MaxWait: time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	f.enr = enrich.New(f.cfg, github.NewCached(client, f.cache, nil), f.state, func() time.Time { return enrichedAt })
}

func (f *fixture) dep(env events.Environment, cluster, sha string) events.DeploymentObserved {
	f.n++
	return events.DeploymentObserved{
		ID: fmt.Sprintf("dep-%03d", f.n), Source: "argocd", Cluster: cluster, Namespace: "shop",
		Application: "checkout-" + cluster, Component: "checkout", Environment: env, Kind: events.KindDeploy,
		Result: events.ResultSuccess, FinishedAt: githubtest.Epoch.Add(time.Duration(f.n) * time.Hour),
		AppCommits: []events.CommitRef{{SHA: sha, RepoURL: "https://github.com/acme/shop.git", Via: "image_tag"}},
	}
}

// enrich runs one deployment through Deployment and Apply, as the handler does.
func (f *fixture) enrich(in events.DeploymentObserved) events.DeploymentEnriched {
	f.t.Helper()
	return f.plan(in).Event
}

// plan is enrich returning the whole plan.
func (f *fixture) plan(in events.DeploymentObserved) enrich.Plan {
	f.t.Helper()
	p, err := f.enr.Deployment(f.t.Context(), in)
	if err != nil {
		f.t.Fatalf("Deployment(%s): %v", in.ID, err)
	}
	if err := p.Event.Validate(); err != nil {
		f.t.Fatalf("enriched event invalid: %v", err)
	}
	for _, c := range p.Inferred {
		if err := c.Validate(); err != nil {
			f.t.Fatalf("inferred change failure invalid: %v", err)
		}
	}
	if err := f.enr.Apply(f.t.Context(), p); err != nil {
		f.t.Fatalf("Apply(%s): %v", in.ID, err)
	}
	return p
}

func commitSHAs(cs []events.Commit) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.SHA)
	}
	return out
}

type want struct {
	commits []string
	status  events.CompareStatus // "" for no range
	quality []events.QualityFlag
	calls   int // GitHub requests this deployment may make; -1: any
}

func (f *fixture) check(name string, got events.DeploymentEnriched, w want, callsBefore int) {
	f.t.Helper()
	if diff := cmp.Diff(w.commits, commitSHAs(got.Commits)); diff != "" {
		f.t.Errorf("%s: commits (-want +got):\n%s", name, diff)
	}
	var status events.CompareStatus
	if len(got.Ranges) == 1 {
		status = got.Ranges[0].Status
		if got.Ranges[0].Commits != len(got.Commits) {
			f.t.Errorf("%s: range counts %d commits, event has %d", name, got.Ranges[0].Commits, len(got.Commits))
		}
	} else if len(got.Ranges) > 1 {
		f.t.Errorf("%s: %d ranges for one repository", name, len(got.Ranges))
	}
	if status != w.status {
		f.t.Errorf("%s: range status %q, want %q", name, status, w.status)
	}
	if diff := cmp.Diff(w.quality, got.Quality); diff != "" {
		f.t.Errorf("%s: quality (-want +got):\n%s", name, diff)
	}
	if calls := f.srv.TotalCalls() - callsBefore; w.calls >= 0 && calls != w.calls {
		f.t.Errorf("%s: %d GitHub requests, want %d", name, calls, w.calls)
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestCommitSetsAcrossAHistory walks one component through every kind of change and checks the
// commits each production deployment brought against what the fake repository recorded.
func TestCommitSetsAcrossAHistory(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	prod := events.EnvironmentProduction
	r.Push(1)

	steps := []struct {
		name    string
		change  func() []string // returns the commits main gained
		cluster string
		sha     func() string // defaults to main's head
		want    func(added []string) want
	}{
		{name: "first deployment: no commits, the head is the baseline", change: func() []string { return nil }, cluster: "eu",
			want: func([]string) want {
				return want{status: events.CompareFirst, quality: []events.QualityFlag{events.QualityFirstDeployment}, calls: 1}
			}},
		{name: "second cluster of the same revision: a child of the change, no range, no requests", change: func() []string { return nil }, cluster: "us",
			want: func([]string) want { return want{calls: 0} }},
		{name: "linear pushes", change: func() []string { return r.Push(3) }, cluster: "eu",
			want: func(a []string) want { return want{commits: a, status: events.CompareAhead, calls: 2} }},
		{name: "merge commit with its branch", change: func() []string { m, _ := r.Merge(3); return m }, cluster: "eu",
			want: func(a []string) want { return want{commits: a, status: events.CompareAhead, calls: 2} }},
		{name: "squash, rebase and merge in one deployment", change: func() []string {
			s, _ := r.Squash(4)
			b, _ := r.Rebase(2)
			m, _ := r.Merge(1)
			return concat(s, b, m)
		}, cluster: "eu",
			want: func(a []string) want { return want{commits: a, status: events.CompareAhead, calls: 2} }},
		{name: "the other cluster catches up: a child of the change, no requests", change: func() []string { return nil }, cluster: "us",
			want: func([]string) want { return want{calls: 0} }},
	}
	var heads []string
	for _, s := range steps {
		added := s.change()
		sha := r.Head()
		heads = append(heads, sha)
		before := f.srv.TotalCalls()
		got := f.enrich(f.dep(prod, s.cluster, sha))
		f.check(s.name, got, s.want(added), before)
	}

	// Rollback to an older revision: behind, a revert, nothing new.
	old := heads[2]
	before := f.srv.TotalCalls()
	got := f.enrich(f.dep(prod, "eu", old))
	f.check("rollback", got, want{status: events.CompareBehind, quality: []events.QualityFlag{events.QualityBehind, events.QualityRevert}, calls: 1}, before)

	// Roll forward to the newest revision: its commits were counted already.
	before = f.srv.TotalCalls()
	got = f.enrich(f.dep(prod, "eu", heads[len(heads)-1]))
	f.check("roll forward", got, want{status: events.CompareIdentical, calls: 0}, before)

	// Roll back, then forward past the old high-water mark: only the new commits.
	f.enrich(f.dep(prod, "eu", old))
	newer := r.Push(2)
	before = f.srv.TotalCalls()
	got = f.enrich(f.dep(prod, "eu", r.Head()))
	f.check("forward past the high-water mark", got, want{commits: newer, status: events.CompareAhead, calls: 2}, before)

	// Force push: history rewritten from an older commit; flagged, no commits, and the baseline
	// restarts from the new head.
	rewritten := r.ForcePush(heads[1], 3)
	before = f.srv.TotalCalls()
	got = f.enrich(f.dep(prod, "eu", r.Head()))
	f.check("force push", got, want{status: events.CompareDiverged, quality: []events.QualityFlag{events.QualityDivergedHistory}, calls: 1}, before)
	_ = rewritten
	after := r.Push(2)
	got = f.enrich(f.dep(prod, "eu", r.Head()))
	f.check("after the force push", got, want{commits: after, status: events.CompareAhead, calls: -1}, 0)

	// More than 250 commits in one deployment.
	big := r.Push(312)
	before = f.srv.TotalCalls()
	got = f.enrich(f.dep(prod, "eu", r.Head()))
	// 4 compare pages + 7 GraphQL batches of 50.
	f.check("312 commits", got, want{commits: big, status: events.CompareAhead, calls: 4 + 7}, before)

	// Staging has its own baseline: its first deployment is a first deployment (one request checks
	// the head commit exists; no commits, so no pull-request query).
	before = f.srv.TotalCalls()
	got = f.enrich(f.dep(events.EnvironmentStaging, "stage", r.Head()))
	f.check("staging", got, want{status: events.CompareFirst,
		quality: []events.QualityFlag{events.QualityFirstDeployment}, calls: 1}, before)
}

func TestCommitDetailsAndPullRequests(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	r.Push(1)
	f.enrich(f.dep(events.EnvironmentProduction, "eu", r.Head()))
	sq, sqPR := r.Squash(3)
	rb, rbPR := r.Rebase(2)
	direct := r.Push(1)
	got := f.enrich(f.dep(events.EnvironmentProduction, "eu", r.Head()))

	pr := func(n int) *events.PullRequest {
		p := r.PullRequest(n)
		return &events.PullRequest{Number: n, URL: p.URL, CreatedAt: p.CreatedAt, MergedAt: p.MergedAt, FirstCommitAt: p.FirstCommitAt}
	}
	commit := func(sha string, p *events.PullRequest) events.Commit {
		c := r.Commit(sha)
		return events.Commit{SHA: sha, RepoURL: "https://github.com/acme/shop", Author: c.Author, AuthoredAt: c.AuthoredAt,
			CommittedAt: c.CommittedAt, Title: c.Title, PullRequest: p}
	}
	wantCommits := []events.Commit{commit(sq[0], pr(sqPR)), commit(rb[0], pr(rbPR)), commit(rb[1], pr(rbPR)), commit(direct[0], nil)}
	if diff := cmp.Diff(wantCommits, got.Commits); diff != "" {
		t.Errorf("commits (-want +got):\n%s", diff)
	}
	// Lead time of the squash merge starts at the PR's first commit, well before the squash commit.
	if p := got.Commits[0].PullRequest; !p.FirstCommitAt.Before(got.Commits[0].AuthoredAt) {
		t.Errorf("squash PR first commit %v is not before the squash commit %v", p.FirstCommitAt, got.Commits[0].AuthoredAt)
	}
	wantRoute := events.Routing{Teams: []string{"payments", "web"}, Targets: []events.Target{
		{Scope: events.ScopeGlobal, ProjectID: "1"}, {Scope: events.ScopeTeam, Team: "payments", ProjectID: "2"},
		{Scope: events.ScopeTeam, Team: "web", ProjectID: "3"}}}
	if diff := cmp.Diff(wantRoute, got.Routing); diff != "" {
		t.Errorf("routing (-want +got):\n%s", diff)
	}
	if !got.EnrichedAt.Equal(enrichedAt) {
		t.Errorf("enriched_at = %v", got.EnrichedAt)
	}
	// The state keys the README tells operators to read.
	for _, key := range []string{"baseline.checkout.production.github_com.acme.shop", "history.checkout"} {
		if _, err := f.state.Get(t.Context(), key); err != nil {
			t.Errorf("state key %s: %v", key, err)
		}
	}
}

func TestDeploymentsWithoutACommitRange(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	prod := events.EnvironmentProduction
	base := r.Push(1)[0]
	f.enrich(f.dep(prod, "eu", base))
	pending := r.Push(2)

	failed := f.dep(prod, "eu", r.Head())
	failed.Result = events.ResultFailure
	before := f.srv.TotalCalls()
	f.check("failed", f.enrich(failed),
		want{calls: 0}, before)

	redeploy := f.dep(prod, "eu", base)
	redeploy.Kind = events.KindRedeploy
	f.check("redeploy", f.enrich(redeploy), want{calls: 0}, before)

	unknownEnv := f.dep(events.EnvironmentUnknown, "eu", r.Head())
	f.check("unknown environment", f.enrich(unknownEnv), want{quality: []events.QualityFlag{events.QualityUnknownEnvironment}, calls: 0}, before)

	noSHA := f.dep(prod, "eu", "")
	noSHA.AppCommits = nil
	f.check("no app commit", f.enrich(noSHA), want{quality: []events.QualityFlag{events.QualityNoAppSHA}, calls: 0}, before)

	badSHA := f.dep(prod, "eu", "v1.2.3")
	f.check("tag is not a SHA", f.enrich(badSHA), want{quality: []events.QualityFlag{events.QualityNoAppSHA}, calls: 0}, before)

	noRepo := f.dep(prod, "eu", r.Head())
	noRepo.AppCommits[0].RepoURL = ""
	f.check("no repository mapping", f.enrich(noRepo), want{quality: []events.QualityFlag{events.QualityUnknownRepo}, calls: 0}, before)

	gitlab := f.dep(prod, "eu", r.Head())
	gitlab.AppCommits[0].RepoURL = "https://gitlab.com/acme/shop"
	f.check("repository not on GitHub", f.enrich(gitlab), want{quality: []events.QualityFlag{events.QualityUnknownRepo}, calls: 0}, before)

	// None of these moved the baseline: the next real deployment counts the pending commits.
	f.check("next deployment", f.enrich(f.dep(prod, "eu", r.Head())), want{commits: pending, status: events.CompareAhead, calls: 2}, before)
}

func TestGitHubRefusalsAreFlaggedNotDropped(t *testing.T) {
	f := newFixture(t)
	prod := events.EnvironmentProduction
	f.srv.Repo("acme", "secret").Push(1)
	f.srv.Forbid("acme", "secret")

	missing := f.dep(prod, "eu", "0123456789abcdef0123456789abcdef01234567")
	missing.AppCommits[0].RepoURL = "https://github.com/acme/gone"
	before := f.srv.TotalCalls()
	f.check("repository not found", f.enrich(missing), want{quality: []events.QualityFlag{events.QualityRepoNotFound}, calls: 1}, before)

	forbidden := f.dep(prod, "eu", "0123456789abcdef0123456789abcdef01234567")
	forbidden.AppCommits[0].RepoURL = "https://github.com/acme/secret"
	before = f.srv.TotalCalls()
	f.check("repository forbidden", f.enrich(forbidden),
		want{quality: []events.QualityFlag{events.QualityRepoForbidden}, calls: 1}, before)

	// An unknown commit in a known repository: not found, and no baseline is recorded.
	r := f.repo
	head := r.Push(1)[0]
	unknown := f.dep(prod, "eu", "0123456789abcdef0123456789abcdef01234567")
	before = f.srv.TotalCalls()
	f.check("unknown commit", f.enrich(unknown),
		want{quality: []events.QualityFlag{events.QualityRepoNotFound}, calls: 1}, before)
	before = f.srv.TotalCalls()
	f.check("then a real one is the first", f.enrich(f.dep(prod, "eu", head)),
		want{status: events.CompareFirst, quality: []events.QualityFlag{events.QualityFirstDeployment}, calls: 1}, before)
}

// When the previously deployed commit is gone from GitHub (force-pushed away, then collected), the
// comparison answers 404 while the new head exists: that is rewritten history, not a missing repo.
func TestBaselineCommitGoneIsDiverged(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	prod := events.EnvironmentProduction
	base := r.Push(1)[0]
	f.enrich(f.dep(prod, "eu", base))
	lost := r.Push(1)[0]
	f.enrich(f.dep(prod, "eu", lost))
	r.ForcePush(base, 2)
	r.Forget(lost)
	before := f.srv.TotalCalls()
	got := f.enrich(f.dep(prod, "eu", r.Head()))
	f.check("baseline gone", got, want{status: events.CompareDiverged, quality: []events.QualityFlag{events.QualityDivergedHistory}, calls: 2}, before)
	next := r.Push(1)
	f.check("next", f.enrich(f.dep(prod, "eu", r.Head())), want{commits: next, status: events.CompareAhead, calls: -1}, 0)
}

// A deployment redelivered after its state was committed (crash before the processed mark)
// recomputes the same event, from the state before it.
func TestRedeliveryAfterApplyRecomputesTheSameEvent(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	prod := events.EnvironmentProduction
	f.enrich(f.dep(prod, "eu", r.Push(1)[0]))
	added, _ := r.Merge(2)
	in := f.dep(prod, "eu", r.Head())
	f.redeliver("redelivery", in, f.plan(in))
	again := f.enrich(in) // and once more
	if diff := cmp.Diff(added, commitSHAs(again.Commits)); diff != "" {
		t.Errorf("commits (-want +got):\n%s", diff)
	}
	// And the next deployment still starts from the right place.
	more := r.Push(1)
	f.check("next", f.enrich(f.dep(prod, "eu", r.Head())), want{commits: more, status: events.CompareAhead, calls: -1}, 0)
}

// TestClientFaultsAreNotRepositoryFlags: a rejected token or a base URL answering a proxy's 404
// page is the client's fault, not the repository's: Deployment returns the configuration fault
// (retried, never dead-lettered) instead of an event flagged repo_not_found.
// An answer too large to read is permanent (dead-lettered with the reason).
func TestClientFaultsAreNotRepositoryFlags(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*githubtest.Server)
	}{
		{"401 bad credentials", func(s *githubtest.Server) { s.RequireToken("another") }},
		{"404 HTML of a proxy", func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: 404, Header: http.Header{"Content-Type": {"text/html"}}, Body: "<html>404 Not Found</html>"})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f.srv)
			_, err := f.enr.Deployment(t.Context(), f.dep(events.EnvironmentProduction, "eu", f.repo.Push(1)[0]))
			var ce *github.ConfigError
			if !errors.As(err, &ce) || enrich.IsPermanent(err) {
				t.Fatalf("err = %v, want a retryable configuration fault", err)
			}
		})
	}
	if !enrich.IsPermanent(fmt.Errorf("get commit: %w", github.ErrAnswerTooLarge)) {
		t.Error("an answer too large to read is not permanent")
	}
}

func TestTransientGitHubErrorsAreReturned(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	prod := events.EnvironmentProduction
	f.enrich(f.dep(prod, "eu", r.Push(1)[0]))
	added := r.Push(2)
	in := f.dep(prod, "eu", r.Head())

	f.srv.FailNext(1, githubtest.ServerError)
	if _, err := f.enr.Deployment(t.Context(), in); err == nil || enrich.IsPermanent(err) {
		t.Fatalf("503: err = %v, want a retryable error", err)
	}
	f.srv.FailNext(1, githubtest.SecondaryLimit(time.Minute))
	_, err := f.enr.Deployment(t.Context(), in)
	if !github.IsRateLimited(err) || enrich.IsPermanent(err) {
		t.Fatalf("secondary limit: err = %v, want a retryable rate-limit error", err)
	}
	var rl *github.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter(time.Now()) < 50*time.Second {
		t.Errorf("rate limit %v: want a retry about a minute out", err)
	}
	f.build() // a fresh client, as after the wait: nothing was lost or half-recorded
	f.check("after recovery", f.enrich(in), want{commits: added, status: events.CompareAhead, calls: -1}, 0)
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name      string
		component string
		team      string
		want      events.Routing
		quality   []events.QualityFlag
	}{
		{"component of two teams", "checkout", "", events.Routing{Teams: []string{"payments", "web"}, Targets: []events.Target{
			{Scope: events.ScopeGlobal, ProjectID: "1"}, {Scope: events.ScopeTeam, Team: "payments", ProjectID: "2"},
			{Scope: events.ScopeTeam, Team: "web", ProjectID: "3"}}}, nil},
		{"label adds a configured team", "billing", "sre", events.Routing{Teams: []string{"payments", "sre"}, Targets: []events.Target{
			{Scope: events.ScopeGlobal, ProjectID: "1"}, {Scope: events.ScopeTeam, Team: "payments", ProjectID: "2"},
			{Scope: events.ScopeTeam, Team: "sre", ProjectID: "4"}}}, nil},
		{"label of an unconfigured team: named, no project", "search", "mystery", events.Routing{Teams: []string{"mystery"},
			Targets: []events.Target{{Scope: events.ScopeGlobal, ProjectID: "1"}}}, nil},
		{"no team: global only, flagged", "search", "", events.Routing{Targets: []events.Target{{Scope: events.ScopeGlobal, ProjectID: "1"}}},
			[]events.QualityFlag{events.QualityNoTeam}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := f.dep(events.EnvironmentProduction, "eu", "")
			in.Component, in.Team, in.Result = tc.component, tc.team, events.ResultFailure
			got := f.enrich(in)
			if diff := cmp.Diff(tc.want, got.Routing); diff != "" {
				t.Errorf("routing (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.quality, got.Quality); diff != "" {
				t.Errorf("quality (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIncidentLinksTheLastProductionDeploymentOfItsComponent(t *testing.T) {
	f := newFixture(t)
	at := func(h int) time.Time { return githubtest.Epoch.Add(time.Duration(h) * time.Hour) }
	deploy := func(id, component string, env events.Environment, kind events.Kind, result events.Result, h int) {
		f.enrich(events.DeploymentObserved{ID: id, Source: "argocd", Application: component, Component: component,
			Environment: env, Kind: kind, Result: result, FinishedAt: at(h)})
	}
	deploy("dep-c1", "checkout", events.EnvironmentProduction, events.KindDeploy, events.ResultSuccess, 1)
	deploy("dep-s1", "storefront", events.EnvironmentProduction, events.KindDeploy, events.ResultSuccess, 2)
	deploy("dep-c2", "checkout", events.EnvironmentProduction, events.KindDeploy, events.ResultSuccess, 3)
	deploy("dep-c-stage", "checkout", events.EnvironmentStaging, events.KindDeploy, events.ResultSuccess, 4)
	deploy("dep-c-failed", "checkout", events.EnvironmentProduction, events.KindDeploy, events.ResultFailure, 4)
	deploy("dep-c-redeploy", "checkout", events.EnvironmentProduction, events.KindRedeploy, events.ResultSuccess, 4)
	deploy("dep-s2", "storefront", events.EnvironmentProduction, events.KindDeploy, events.ResultSuccess, 5)
	deploy("dep-c-rollback", "checkout", events.EnvironmentProduction, events.KindRollback, events.ResultSuccess, 7)
	deploy("dep-c3", "checkout", events.EnvironmentProduction, events.KindDeploy, events.ResultSuccess, 9)

	incident := func(component string, products []string, h int) events.IncidentObserved {
		return events.IncidentObserved{ID: "inc-1", Source: "webrca", IncidentID: "u1", Key: "ITN-1", Change: events.IncidentOpened,
			Title: "down", Status: "new", Products: products, Component: component, CreatedAt: at(h), ObservedAt: at(h),
			Fingerprint: "f"}
	}
	link := func(id, component string, h int) *events.DeploymentLink {
		// Links name logical deployments.
		id = events.LogicalDeploymentID(component, events.EnvironmentProduction, id)
		return &events.DeploymentLink{DeploymentID: id, Component: component, Environment: events.EnvironmentProduction,
			FinishedAt: at(h), Reason: events.LinkLastProductionDeployment}
	}
	tests := []struct {
		name       string
		in         events.IncidentObserved
		components []string
		teams      []string
		caused     *events.DeploymentLink
		quality    []events.QualityFlag
	}{
		{"named component: its last production deployment before creation", incident("checkout", nil, 6),
			[]string{"checkout"}, []string{"payments", "web"}, link("dep-c2", "checkout", 3), nil},
		{"product: the latest across its components", incident("", []string{"Shop"}, 6),
			[]string{"checkout", "storefront"}, []string{"payments", "web"}, link("dep-s2", "storefront", 5), nil},
		{"named component narrows a product", incident("checkout", []string{"Shop"}, 6),
			[]string{"checkout", "storefront"}, []string{"payments", "web"}, link("dep-c2", "checkout", 3), nil},
		{"deployment finishing at creation is not before it", incident("checkout", nil, 3),
			[]string{"checkout"}, []string{"payments", "web"}, link("dep-c1", "checkout", 1), nil},
		{"a rollback is skipped back to the deployment it undid", incident("checkout", nil, 8),
			[]string{"checkout"}, []string{"payments", "web"}, link("dep-c2", "checkout", 3), nil},
		{"within the look-back limit", incident("checkout", nil, 9+30*24),
			[]string{"checkout"}, []string{"payments", "web"}, link("dep-c3", "checkout", 9), nil},
		{"beyond the look-back limit", incident("checkout", nil, 10+30*24),
			[]string{"checkout"}, []string{"payments", "web"}, nil, []events.QualityFlag{events.QualityLinkTooOld}},
		{"nothing deployed before", incident("checkout", nil, 1),
			[]string{"checkout"}, []string{"payments", "web"}, nil, []events.QualityFlag{events.QualityNoLinkedDeployment}},
		{"product with teams only", incident("", []string{"Platform"}, 6),
			nil, []string{"sre"}, nil, []events.QualityFlag{events.QualityNoLinkedDeployment}},
		{"unknown product", incident("", []string{"Other"}, 6),
			nil, nil, nil, []events.QualityFlag{events.QualityNoTeam, events.QualityNoLinkedDeployment}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.enr.Incident(t.Context(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Validate(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.components, got.Components); diff != "" {
				t.Errorf("components (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.teams, got.Routing.Teams); diff != "" {
				t.Errorf("teams (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.caused, got.CausedBy); diff != "" {
				t.Errorf("caused_by (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.quality, got.Quality); diff != "" {
				t.Errorf("quality (-want +got):\n%s", diff)
			}
		})
	}
}
