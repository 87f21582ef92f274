package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

// TestRunPostsLogicalDeploymentsAndTheirPullRequests: run() on JetStream posts a change rolled out
// to three clusters once, under its logical id, and with it the pull request of each deployment;
// the fake DevLake then computes its lead time for the second deployment (the first of a chain has
// none) from first commit to that deployment's finish.
func TestRunPostsLogicalDeploymentsAndTheirPullRequests(t *testing.T) {
	dl := devlaketest.Start(t)
	h := newHarness(t, "", dl, "")
	s := h.start(t)
	var evs []events.Event
	for i := 1; i <= 2; i++ {
		first := deployment(i)
		logical := events.LogicalDeploymentID(first.Component, first.Environment, first.ID)
		sha := first.Ranges[0].HeadSHA
		merged := first.FinishedAt.Add(-30 * time.Minute)
		commit := events.Commit{SHA: sha, RepoURL: "https://github.com/example-org/checkout-api", Title: fmt.Sprintf("change %d", i),
			CommittedAt: merged, PullRequest: &events.PullRequest{Number: 100 + i, FirstCommitAt: merged.Add(-2 * time.Hour),
				CreatedAt: merged.Add(-time.Hour), MergedAt: merged}}
		for j, cluster := range []string{"prod-eu-west-1", "prod-us-east-1", "prod-ap-south-1"} {
			ev := first
			ev.Cluster = cluster
			ev.FinishedAt = first.FinishedAt.Add(time.Duration(j) * 10 * time.Second)
			ev.Routing.Targets = ev.Routing.Targets[:1]
			ev.Rollout = &events.Rollout{LogicalID: logical, Policy: events.RolloutFirst, Fingerprint: sha, Counted: j == 0,
				Complete: true, StartedAt: first.StartedAt, FirstFinishedAt: first.FinishedAt}
			if j == 0 {
				ev.Commits = []events.Commit{commit}
			} else {
				ev.ID, ev.Ranges = events.DeploymentID("argocd-hub", cluster, int64(i)), nil
			}
			evs = append(evs, ev)
		}
	}
	h.publish(t, evs...)
	wait.For(t, 30*time.Second, func() error {
		if n, p := dl.DeploymentCount(h.c1.ID), len(dl.PullRequests(h.c1.ID)); n != 2 || p != 2 {
			return fmt.Errorf("%d deployments and %d pull requests, want 2 and 2", n, p)
		}
		return nil
	})
	h.settled(t, 30*time.Second)
	first := deployment(2)
	want := sink.DeploymentID(events.LogicalDeploymentID(first.Component, first.Environment, first.ID), h.c1.ID)
	var linked []string
	for _, m := range dl.PRMetrics(h.c1.ID) {
		if m.DeploymentID != "" {
			linked = append(linked, fmt.Sprintf("%s %s %d", m.ID, m.DeploymentID, *m.PrCycleTime))
		}
	}
	if len(linked) != 1 || linked[0] != fmt.Sprintf("webhook:%d:102 %s 150", h.c1.ID, want) {
		t.Errorf("linked pull requests = %q, want #102 on %s with 150 min (first commit → first cluster)", linked, want)
	}
	s.Stop(t)
}
