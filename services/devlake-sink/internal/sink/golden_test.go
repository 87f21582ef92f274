package sink

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenPayloads pins the exact bytes the sink posts (indented for review), for every target,
// and proves each is accepted by the contract-faithful fake: the fake stored it.
func TestGoldenPayloads(t *testing.T) {
	multi := deploymentEvent(319)
	multi.AppCommits = append(multi.AppCommits, events.CommitRef{SHA: apiSHA, RepoURL: "git@github.com:example-org/tax-rules.git", Via: "image_tag"})
	multi.Ranges = append(multi.Ranges, events.CommitRange{RepoURL: "https://github.com/example-org/tax-rules", HeadSHA: apiSHA, Status: events.CompareFirst, Commits: 1})
	multi.Commits = append(multi.Commits, events.Commit{SHA: apiSHA, RepoURL: "https://github.com/example-org/tax-rules", Title: "Add EU VAT table"})

	// A failed sync: no history entry, no ranges; the observed application commit is posted.
	failed := deploymentEvent(0)
	failed.ID = events.FailedOperationID("argocd-hub", failed.ArgoCD.UID, t0)
	failed.Result, failed.ArgoCD.HistoryID, failed.ArgoCD.Phase = events.ResultFailure, 0, "Failed"
	failed.Ranges, failed.Commits = nil, []events.Commit{}

	// No application commit at all: the GitOps revision stands in, as in the seed project.
	gitops := deploymentEvent(320)
	gitops.AppCommits, gitops.Ranges, gitops.Commits = nil, nil, []events.Commit{}
	gitops.Environment, gitops.OriginalEnvironment = events.EnvironmentStaging, "stage-eu"

	// The multi-repo failure: two repositories, FAILURE on both commits and at the top.
	multiFailed := multi
	multiFailed.ID = events.FailedOperationID("argocd-hub", multi.ArgoCD.UID, t1)
	multiFailed.Result, multiFailed.ArgoCD = events.ResultFailure, &events.ArgoCDRef{UID: multi.ArgoCD.UID, Phase: "Error"}
	multiFailed.Ranges = nil // failed syncs are not enriched with ranges: the observed commits are posted

	observed := time.Date(2026, 3, 10, 15, 31, 40, 0, time.UTC)
	open := incidentEvent(events.IncidentOpened, "investigating", observed)
	upd := incidentEvent(events.IncidentUpdated, "identified", observed.Add(10*time.Minute))
	upd.Severity = "1"
	res := incidentEvent(events.IncidentResolved, "resolved", observed.Add(35*time.Minute))
	res.Severity = "1"

	tests := []struct {
		name string
		send func(e *env) error
	}{
		{"deployment_single_repo_success", func(e *env) error {
			_, err := e.sink.Deployment(context.Background(), deploymentEvent(318))
			return err
		}},
		{"deployment_multi_repo_success", func(e *env) error { _, err := e.sink.Deployment(context.Background(), multi); return err }},
		{"deployment_single_repo_failure", func(e *env) error { _, err := e.sink.Deployment(context.Background(), failed); return err }},
		{"deployment_multi_repo_failure", func(e *env) error { _, err := e.sink.Deployment(context.Background(), multiFailed); return err }},
		{"deployment_gitops_fallback", func(e *env) error { _, err := e.sink.Deployment(context.Background(), gitops); return err }},
		{"incident_open", func(e *env) error { _, err := e.sink.Incident(context.Background(), open); return err }},
		{"incident_update", func(e *env) error { _, err := e.sink.Incident(context.Background(), upd); return err }},
		{"incident_resolve", func(e *env) error { _, err := e.sink.Incident(context.Background(), res); return err }},
	}
	for _, ev := range []interface{ Validate() error }{multi, failed, gitops, multiFailed, open, upd, res} {
		mustValid(t, ev)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if err := tt.send(e); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			sent := e.rec.bodies()
			if len(sent) != 2 {
				t.Fatalf("posted %d bodies, want one per connection (2)", len(sent))
			}
			var got bytes.Buffer
			for _, s := range sent {
				if s.conn == e.c1.ID {
					got.Write(pretty(t, s.body)) // the global connection's body is pinned
				}
			}
			golden := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (go test -update writes it): %v", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("posted JSON differs from %s:\n%s", golden, got.Bytes())
			}
			// The fake accepted and stored what was posted, on both connections.
			for _, c := range []uint64{e.c1.ID, e.c2.ID} {
				if sent[0].kind == devlake.KindDeployments && len(e.dl.Deployments(c)) != 1 {
					t.Errorf("connection %d stored %d deployments, want 1", c, len(e.dl.Deployments(c)))
				}
				if sent[0].kind == devlake.KindIssues && len(e.dl.Incidents(c)) != 1 {
					t.Errorf("connection %d stored %d incidents, want 1", c, len(e.dl.Incidents(c)))
				}
			}
		})
	}
}
