package sink

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/pkg/events"
)

// rolloutChildren returns one change rolled out to three production clusters, a minute apart,
// under policy: the children in the order they deployed, each with the Rollout the enricher sets.
// Under first the first child is counted, under all the third (the one completing the rollout).
func rolloutChildren(t *testing.T, policy events.RolloutPolicy) []events.DeploymentEnriched {
	t.Helper()
	clusters := []string{"prod-eu-west-1", "prod-us-east-1", "prod-ap-south-1"}
	var out []events.DeploymentEnriched
	var logical string
	for i, cl := range clusters {
		ev := deploymentEvent(int64(40 + i))
		ev.ID = events.DeploymentID("argocd-hub", "uid-"+cl, 40)
		ev.Cluster, ev.Application = cl, "checkout-api-"+cl
		ev.StartedAt = t0.Add(time.Duration(i) * time.Minute)
		ev.FinishedAt = t1.Add(time.Duration(i) * time.Minute)
		ev.Routing.Targets = ev.Routing.Targets[:1]
		if i == 0 {
			logical = events.LogicalDeploymentID(ev.Component, ev.Environment, ev.ID)
		}
		r := &events.Rollout{LogicalID: logical, Policy: policy, Fingerprint: "app:" + appSHA,
			Clusters: clusters[:i+1], StartedAt: t0, FirstFinishedAt: t1}
		switch policy {
		case events.RolloutFirst:
			r.Counted, r.Complete = i == 0, true
		case events.RolloutAll:
			r.Expected = clusters
			r.Counted, r.Complete = i == len(clusters)-1, i == len(clusters)-1
		}
		if !r.Counted {
			// Only the counted child carries the logical deployment's commits.
			ev.Commits, ev.Ranges = nil, nil
		}
		ev.Rollout = r
		mustValid(t, ev)
		out = append(out, ev)
	}
	return out
}

// TestLogicalDeploymentIsOneDevLakeDeployment: a change rolled out to three clusters is one DevLake
// deployment, under the logical id, from the first child's start to the counted child's finish,
// with the commits; the other children are acknowledged and not posted.
func TestLogicalDeploymentIsOneDevLakeDeployment(t *testing.T) {
	tests := []struct {
		name     string
		policy   events.RolloutPolicy
		finished time.Time
	}{
		{"first: counted at the first cluster", events.RolloutFirst, t1},
		{"all: counted at the last cluster", events.RolloutAll, t1.Add(2 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			children := rolloutChildren(t, tt.policy)
			for _, ev := range append(children, children...) { // and a redelivery of each
				if _, err := e.sink.Deployment(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			rows := e.dl.Deployments(e.c1.ID)
			if len(rows) != 1 {
				t.Fatalf("%d DevLake deployments, want 1: %+v", len(rows), rows)
			}
			id := DeploymentID(children[0].Rollout.LogicalID, e.c1.ID)
			got := []any{rows[0].ID, rows[0].StartedDate, rows[0].FinishedDate, rows[0].Result, e.dl.Writes(e.c1.ID, devlaketest.KindDeployment, id)}
			want := []any{id, t0, tt.finished, "SUCCESS", 1}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("deployment row (id, started, finished, result, writes) (-want +got):\n%s", diff)
			}
			var commits []string
			for _, c := range e.dl.DeploymentCommits(e.c1.ID) {
				commits = append(commits, c.CicdDeploymentID+" "+c.RepoURL+"@"+c.CommitSha+" "+c.FinishedDate.Format(time.RFC3339))
			}
			wantCommits := []string{id + " https://github.com/example-org/checkout-api@" + appSHA + " " + tt.finished.Format(time.RFC3339)}
			if diff := cmp.Diff(wantCommits, commits); diff != "" {
				t.Errorf("commit rows (-want +got):\n%s", diff)
			}
			if n := e.obs.get(e.obs.skipped, "deployments/"+SkipRolloutChild); n != 4 {
				t.Errorf("skipped rollout children = %d, want 4 (two children, each delivered twice)", n)
			}
		})
	}
}

// TestRolloutNilAndPolicyEachPostAsBefore: without a Rollout, and under policy each (LogicalID is
// the deployment's own ID), the body is the one posted before logical deployments existed.
func TestRolloutNilAndPolicyEachPostAsBefore(t *testing.T) {
	plain := deploymentEvent(318)
	each := plain
	each.Rollout = &events.Rollout{LogicalID: plain.ID, Policy: events.RolloutEach, Fingerprint: "app:" + appSHA,
		Counted: true, Complete: true, Clusters: []string{plain.Cluster}, StartedAt: plain.StartedAt, FirstFinishedAt: plain.FinishedAt}
	mustValid(t, each)
	want, skip := BuildDeployment(plain, 1, true)
	got, skip2 := BuildDeployment(each, 1, true)
	if skip != "" || skip2 != "" {
		t.Fatalf("skipped: %q %q", skip, skip2)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(want.StartedDate)); diff != "" {
		t.Errorf("policy each changed the body (-before +each):\n%s", diff)
	}
}
