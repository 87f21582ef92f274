package enrich_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/enrich"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// The replay scenario: a realistic deployment history, generated deterministically.
//
//   - 8 components in 6 repositories; api, worker and scheduler are built from one monorepo, so
//     every change to it rolls out three components at the same commit.
//   - Each change to a repository is 1 pull request (75%), 2 (20%) or 3 (5%): squash-merged
//     (65%), merged with a merge commit (20%, 2–4 commits), rebase-merged (10%, 2–3 commits), or
//     pushed directly (5%).
//   - Every change rolls out to staging on 2 clusters; half the time the latest staging commit is
//     then promoted to production on 3 clusters (so production ranges often span two changes).
//   - 2% of rollouts have a failed sync before the successful one, 3% a redeploy after it, 1% of
//     production promotions are rolled back (and the next promotion rolls forward), 0.2% of
//     changes are force pushes.
const (
	stagingClusters    = 2
	productionClusters = 3
)

var scenarioComponents = []struct{ name, repo string }{
	{"checkout", "checkout"}, {"storefront", "storefront"}, {"billing", "billing"}, {"search", "search"},
	{"notifications", "notifications"}, {"api", "platform"}, {"worker", "platform"}, {"scheduler", "platform"},
}

var scenarioConfig = enrich.Config{
	GlobalProjectID: "1",
	Teams: []enrich.Team{
		{Name: "shop", ProjectID: "2", Components: []string{"checkout", "storefront", "billing", "search"}},
		{Name: "platform", ProjectID: "3", Components: []string{"notifications", "api", "worker", "scheduler"}},
	},
}

// scenario builds the repositories on srv and returns n deployments in the order they happened.
func scenario(srv *githubtest.Server, n int) []events.DeploymentObserved {
	rng := rand.New(rand.NewPCG(4, 2))
	repos := map[string]*githubtest.Repo{}
	var repoNames []string
	for _, c := range scenarioComponents {
		if repos[c.repo] == nil {
			r := srv.Repo("acme", c.repo)
			r.Push(1)
			repos[c.repo] = r
			repoNames = append(repoNames, c.repo)
		}
	}
	staged := map[string]string{} // component → latest staging commit
	prod := map[string][]string{} // component → production commits, newest last
	var out []events.DeploymentObserved
	clock := githubtest.Epoch
	seq := 0
	emit := func(component, repo, cluster string, env events.Environment, sha string, kind events.Kind, result events.Result) {
		clock = clock.Add(3 * time.Minute)
		seq++
		out = append(out, events.DeploymentObserved{
			ID: events.NewID("dep", cluster, component, fmt.Sprint(seq)), Source: "argocd", Instance: "argocd",
			Cluster: cluster, Namespace: component, Application: component + "-" + cluster, Component: component,
			Environment: env, Kind: kind, Result: result, Revision: fmt.Sprintf("gitops-%d", seq),
			AppCommits: []events.CommitRef{{SHA: sha, RepoURL: "https://github.com/acme/" + repo, Via: "image_tag"}},
			StartedAt:  clock.Add(-time.Minute), FinishedAt: clock,
		})
	}
	rollout := func(component, repo string, env events.Environment, clusters int, sha string, kind events.Kind) {
		for i := 0; i < clusters; i++ {
			cluster := fmt.Sprintf("%s-%d", env, i+1)
			if rng.Float64() < 0.02 {
				emit(component, repo, cluster, env, sha, kind, events.ResultFailure)
			}
			emit(component, repo, cluster, env, sha, kind, events.ResultSuccess)
			if rng.Float64() < 0.03 {
				emit(component, repo, cluster, env, sha, events.KindRedeploy, events.ResultSuccess)
			}
		}
	}
	for len(out) < n {
		name := repoNames[rng.IntN(len(repoNames))]
		r := repos[name]
		if rng.Float64() < 0.002 {
			r.ForcePush(r.Back(3), 2)
		} else {
			prs := 1
			if x := rng.Float64(); x > 0.95 {
				prs = 3
			} else if x > 0.75 {
				prs = 2
			}
			for i := 0; i < prs; i++ {
				switch x := rng.Float64(); {
				case x < 0.65:
					r.Squash(1 + rng.IntN(4))
				case x < 0.85:
					r.Merge(2 + rng.IntN(3))
				case x < 0.95:
					r.Rebase(2 + rng.IntN(2))
				default:
					r.Push(1)
				}
			}
		}
		head := r.Head()
		for _, c := range scenarioComponents {
			if c.repo != name {
				continue
			}
			staged[c.name] = head
			rollout(c.name, name, events.EnvironmentStaging, stagingClusters, head, events.KindDeploy)
			if rng.Float64() >= 0.5 {
				continue
			}
			rollout(c.name, name, events.EnvironmentProduction, productionClusters, staged[c.name], events.KindDeploy)
			prod[c.name] = append(prod[c.name], staged[c.name])
			if p := prod[c.name]; len(p) > 1 && rng.Float64() < 0.01 {
				rollout(c.name, name, events.EnvironmentProduction, productionClusters, p[len(p)-2], events.KindRollback)
			}
		}
	}
	return out[:n]
}

type replayResult struct {
	calls  int
	events []events.DeploymentEnriched
	took   time.Duration
}

// replay enriches deps in order with fresh state (baselines) over cache, as a reprocessing of the
// stream from its start does.
func replay(tb testing.TB, srv *githubtest.Server, cache github.Cache, deps []events.DeploymentObserved) replayResult {
	tb.Helper()
	client, err := github.New(github.Options{BaseURL: srv.URL(), Token: "replay"})
	if err != nil {
		tb.Fatal(err)
	}
	enr := enrich.New(scenarioConfig, github.NewCached(client, cache, nil), newMemStore(enrich.ErrNotFound),
		func() time.Time { return enrichedAt })
	before := srv.TotalCalls()
	res := replayResult{events: make([]events.DeploymentEnriched, 0, len(deps))}
	start := time.Now()
	ctx := tb.Context()
	for _, d := range deps {
		p, err := enr.Deployment(ctx, d)
		if err != nil {
			tb.Fatalf("deployment %s: %v", d.ID, err)
		}
		if err := enr.Apply(ctx, p); err != nil {
			tb.Fatal(err)
		}
		res.events = append(res.events, p.Event)
	}
	res.took = time.Since(start)
	res.calls = srv.TotalCalls() - before
	return res
}

// TestReplayBudget replays the scenario twice and holds the enricher to its GitHub budget: at
// most one request per deployment with a cold cache, none with a warm one; the second pass must
// produce exactly the same events, and no commit may be attributed twice to one component and
// environment.
func TestReplayBudget(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	srv := githubtest.New(t)
	deps := scenario(srv, n)
	cache := newMemStore(github.ErrCacheMiss)
	first := replay(t, srv, cache, deps)
	second := replay(t, srv, cache, deps)

	perDeployment := float64(first.calls) / float64(n)
	t.Logf("%d deployments: first pass %d GitHub requests (%.3f per deployment, %v), second pass %d (%v); %v",
		n, first.calls, perDeployment, first.took.Round(time.Millisecond), second.calls, second.took.Round(time.Millisecond), srv.Calls())
	if perDeployment > 1.0 {
		t.Errorf("first pass: %.3f GitHub requests per deployment, budget 1.0", perDeployment)
	}
	if second.calls != 0 {
		t.Errorf("second pass: %d GitHub requests, want 0", second.calls)
	}
	if diff := cmp.Diff(first.events, second.events); diff != "" {
		t.Errorf("second pass differs (-first +second):\n%.3000s", diff)
	}

	type scope struct {
		component string
		env       events.Environment
	}
	seen := map[scope]map[string]string{}
	var commits int
	flags := map[events.QualityFlag]int{}
	statuses := map[events.CompareStatus]int{}
	type prKey struct {
		repo   string
		number int
	}
	uniqueCommits, uniquePRs := map[string]bool{}, map[prKey]bool{}
	for _, e := range first.events {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		s := scope{e.Component, e.Environment}
		if seen[s] == nil {
			seen[s] = map[string]string{}
		}
		for _, c := range e.Commits {
			if prev, dup := seen[s][c.SHA]; dup {
				t.Errorf("commit %s attributed to %s/%s twice: %s and %s", c.SHA[:8], e.Component, e.Environment, prev, e.ID)
			}
			seen[s][c.SHA] = e.ID
			commits++
			uniqueCommits[c.RepoURL+"@"+c.SHA] = true
			if c.PullRequest != nil {
				uniquePRs[prKey{c.RepoURL, c.PullRequest.Number}] = true
			}
		}
		for _, f := range e.Quality {
			flags[f]++
		}
		for _, r := range e.Ranges {
			statuses[r.Status]++
		}
	}
	if commits == 0 {
		t.Fatal("the scenario attributed no commits")
	}
	// What the per-commit REST lookups (GET commits/{sha}/pulls, then the pull request's commits)
	// would have cost instead of the batched GraphQL query.
	rest := first.calls - srv.Calls()[githubtest.EndpointGraphQL] + len(uniqueCommits) + len(uniquePRs)
	t.Logf("%d commits attributed (%d distinct, %d pull requests); ranges %v; flags %v; per-commit REST lookups would cost %d requests (%.3f per deployment)",
		commits, len(uniqueCommits), len(uniquePRs), statuses, flags, rest, float64(rest)/float64(n))
}

// BenchmarkReplay replays 10,000 deployments against the fake GitHub (loopback HTTP, no added
// latency) and reports GitHub requests per deployment and throughput, with a cold cache
// (first_pass) and a warm one (second_pass).
func BenchmarkReplay(b *testing.B) {
	const n = 10000
	srv := githubtest.New(b)
	deps := scenario(srv, n)
	warm := newMemStore(github.ErrCacheMiss)
	replay(b, srv, warm, deps)
	for _, pass := range []string{"first_pass", "second_pass"} {
		b.Run(pass, func(b *testing.B) {
			b.ReportAllocs()
			var calls int
			var took time.Duration
			for i := 0; i < b.N; i++ {
				cache := github.Cache(warm)
				if pass == "first_pass" {
					cache = newMemStore(github.ErrCacheMiss)
				}
				res := replay(b, srv, cache, deps)
				calls += res.calls
				took += res.took
			}
			b.ReportMetric(float64(calls)/float64(b.N*n), "calls/deployment")
			b.ReportMetric(float64(b.N*n)/took.Seconds(), "deployments/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
