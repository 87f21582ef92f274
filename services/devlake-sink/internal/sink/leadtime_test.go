package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/pkg/events"
)

const checkoutRepo = "https://github.com/example-org/checkout-api"

// prCommit is a commit merged through pull request number, whose first commit, creation and merge
// are the given offsets from base.
func prCommit(sha string, number int, first, created, merged time.Duration) events.Commit {
	return events.Commit{SHA: sha, RepoURL: checkoutRepo, CommittedAt: base.Add(merged), AuthoredAt: base.Add(first),
		Title: fmt.Sprintf("change %d (#%d)", number, number),
		PullRequest: &events.PullRequest{Number: number, URL: fmt.Sprintf("%s/pull/%d", checkoutRepo, number),
			FirstCommitAt: base.Add(first), CreatedAt: base.Add(created), MergedAt: base.Add(merged)}}
}

var base = time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)

func sha(c byte) string {
	b := make([]byte, 40)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// leadTimeDeployments are three production deployments of checkout-api. The first brings #101;
// the second #102; the third #103 and #104, with #104's commit as the deployed head.
func leadTimeDeployments(t *testing.T) []events.DeploymentEnriched {
	t.Helper()
	specs := []struct {
		history  int64
		finished time.Duration
		commits  []events.Commit
	}{
		{1, 0, []events.Commit{prCommit(sha('1'), 101, -5*time.Hour, -4*time.Hour, -3*time.Hour)}},
		{2, 3 * time.Hour, []events.Commit{prCommit(sha('2'), 102, time.Hour, time.Hour, 2*time.Hour)}},
		{3, 6 * time.Hour, []events.Commit{
			prCommit(sha('3'), 103, 3*time.Hour, 3*time.Hour+30*time.Minute, 4*time.Hour),
			prCommit(sha('4'), 104, 4*time.Hour, 4*time.Hour+20*time.Minute, 5*time.Hour)}},
	}
	var out []events.DeploymentEnriched
	prev := sha('0')
	for _, s := range specs {
		ev := deploymentEvent(s.history)
		ev.StartedAt, ev.FinishedAt = base.Add(s.finished-2*time.Minute), base.Add(s.finished)
		head := s.commits[len(s.commits)-1].SHA
		ev.AppCommits = []events.CommitRef{{SHA: head, RepoURL: checkoutRepo, Via: "image_tag"}}
		ev.Commits = s.commits
		ev.Ranges = []events.CommitRange{{RepoURL: checkoutRepo, BaseSHA: prev, HeadSHA: head, Status: events.CompareAhead, Commits: len(s.commits)}}
		ev.Routing.Targets = ev.Routing.Targets[:1]
		prev = head
		mustValid(t, ev)
		out = append(out, ev)
	}
	return out
}

// exporterLeadTimes is doraflow's lead time (the metrics exporter's definition) of every commit:
// its pull request's first commit → the finish of the first production deployment containing it,
// in minutes, keyed by deployment and commit.
func exporterLeadTimes(evs []events.DeploymentEnriched) map[string]int64 {
	out := map[string]int64{}
	for _, ev := range evs {
		for _, c := range ev.Commits {
			out[ev.ID+" "+c.SHA[:1]] = int64(ev.FinishedAt.Sub(c.PullRequest.FirstCommitAt) / time.Minute)
		}
	}
	return out
}

// TestDevLakeLeadTimeMatchesDoraflowsPerDeployment posts the deployments with their pull requests to
// the fake DevLake, lets it compute project_pr_metrics as v1.0.3's dora plugin does, and compares
// the lead time DevLake reports per deployment with doraflow's (first commit → first production
// deployment). With createdDate from the first commit (the default) they are equal for every pull
// request DevLake links; with the real creation date DevLake's is shorter by the coding time. What
// DevLake never links, without git data: the first deployment's pull requests (no previous
// deployment to diff against) and pull requests whose merge commit is not the deployed head.
func TestDevLakeLeadTimeMatchesDoraflowsPerDeployment(t *testing.T) {
	evs := leadTimeDeployments(t)
	lt := exporterLeadTimes(evs)
	tests := []struct {
		name        string
		firstCommit bool
		want        map[string]int64 // DevLake's pr_cycle_time by deployment id and pull request
		median      int64
	}{
		{"createdDate from the first commit", true, map[string]int64{
			evs[1].ID + " #102": lt[evs[1].ID+" 2"], // 120: equal to doraflow's
			evs[2].ID + " #104": lt[evs[2].ID+" 4"], // 120: equal to doraflow's
		}, 120},
		{"createdDate = pull request created", false, map[string]int64{
			evs[1].ID + " #102": lt[evs[1].ID+" 2"],      // created = first commit: equal
			evs[2].ID + " #104": lt[evs[2].ID+" 4"] - 20, // 100: the 20 min before the PR was opened are missing
		}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.PullRequests, o.PRCreatedFromFirstCommit = true, tt.firstCommit })
			for _, ev := range append(evs, evs...) { // redelivered: nothing is posted twice
				if _, err := e.sink.Deployment(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			ids := map[string]string{}
			for _, ev := range evs {
				ids[DeploymentID(ev.ID, e.c1.ID)] = ev.ID
			}
			metrics := e.dl.PRMetrics(e.c1.ID)
			got := map[string]int64{}
			var unlinked []string
			for _, m := range metrics {
				pr := m.ID[len(fmt.Sprintf("webhook:%d:", e.c1.ID)):]
				if m.DeploymentID == "" {
					unlinked = append(unlinked, "#"+pr)
					continue
				}
				got[ids[m.DeploymentID]+" #"+pr] = *m.PrCycleTime
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DevLake lead time per deployment, minutes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"#101", "#103"}, unlinked); diff != "" {
				t.Errorf("pull requests DevLake links to no deployment (-want +got):\n%s", diff)
			}
			if m, ok := devlaketest.MedianLeadTimeMinutes(metrics); !ok || m != tt.median {
				t.Errorf("DevLake median lead time = %d min (%v), want %d", m, ok, tt.median)
			}
			if n := len(e.dl.PullRequests(e.c1.ID)); n != 4 {
				t.Errorf("%d pull requests stored, want 4", n)
			}
			for _, pr := range []string{"101", "102", "103", "104"} {
				if n := e.dl.Writes(e.c1.ID, devlaketest.KindPullRequest, pr); n != 1 {
					t.Errorf("pull request %s written %d times, want 1", pr, n)
				}
			}
		})
	}
}

// TestPullRequestBody pins what is posted for a pull request: the v1.0.3 fields DevLake requires,
// baseRepoId webhook:<connection> (the project's repos mapping), the merge commit, and dates as
// UTC seconds with Z even from local times with nanoseconds (DevLake rejects those with an offset).
func TestPullRequestBody(t *testing.T) {
	ev := leadTimeDeployments(t)[2]
	cet := time.FixedZone("CET", 3600)
	ev.Commits[1].PullRequest.MergedAt = ev.Commits[1].PullRequest.MergedAt.In(cet).Add(123456789)
	d, _ := BuildDeployment(ev, 4, false)
	got := BuildPullRequests(ev, 4, d, true)
	var bodies []string
	for _, p := range got {
		b, err := json.Marshal(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, p.Repo+" "+string(b))
	}
	want := []string{
		checkoutRepo + ` {"id":"` + checkoutRepo + `/pull/103","baseRepoId":"webhook:4","status":"MERGED","originalStatus":"merged","displayTitle":"change 103 (#103)","url":"` + checkoutRepo + `/pull/103","pullRequestKey":103,"createdDate":"2026-03-10T11:00:00Z","mergedDate":"2026-03-10T12:00:00Z","mergeCommitSha":"` + sha('3') + `"}`,
		checkoutRepo + ` {"id":"` + checkoutRepo + `/pull/104","baseRepoId":"webhook:4","status":"MERGED","originalStatus":"merged","displayTitle":"change 104 (#104)","url":"` + checkoutRepo + `/pull/104","pullRequestKey":104,"createdDate":"2026-03-10T12:00:00Z","mergedDate":"2026-03-10T13:00:00Z","mergeCommitSha":"` + sha('4') + `"}`,
	}
	if diff := cmp.Diff(want, bodies); diff != "" {
		t.Errorf("pull request bodies (-want +got):\n%s", diff)
	}
	failed := ev
	failed.Result = events.ResultFailure
	fd, _ := BuildDeployment(failed, 4, false)
	if prs := BuildPullRequests(failed, 4, fd, true); len(prs) != 0 {
		t.Errorf("a failed deployment posted pull requests: %+v", prs)
	}
}

// TestPullRequestNumberOfAnotherRepositoryIsNotOverwritten: DevLake identifies a webhook pull request
// by connection and number only, so #7 of a second repository would overwrite #7 of the first; the
// first stands and the second is counted as a ledger skip (key_taken).
func TestPullRequestNumberOfAnotherRepositoryIsNotOverwritten(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PullRequests = true })
	evs := leadTimeDeployments(t)[:2]
	other := evs[1]
	other.Commits = []events.Commit{prCommit(sha('9'), 101, 0, 0, time.Hour)}
	other.Commits[0].RepoURL = "https://github.com/example-org/tax-rules"
	other.Ranges = []events.CommitRange{{RepoURL: "https://github.com/example-org/tax-rules", HeadSHA: sha('9'), Status: events.CompareFirst, Commits: 1}}
	for _, ev := range []events.DeploymentEnriched{evs[0], other} {
		if _, err := e.sink.Deployment(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	prs := e.dl.PullRequests(e.c1.ID)
	if len(prs) != 1 || prs[0].MergeCommitSha != sha('1') {
		t.Errorf("pull requests = %+v, want checkout-api's #101 only", prs)
	}
	if n := e.obs.get(e.obs.ledgerSkips, "pull_requests/"+LedgerPRKeyTaken); n != 1 {
		t.Errorf("key_taken skips = %d, want 1", n)
	}
}
