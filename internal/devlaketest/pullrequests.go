package devlaketest

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// KindPullRequest is a write to POST connections/{id}/pull_requests (DevLake v1.0.3+).
const KindPullRequest Kind = "pull_requests"

// PullRequest is a pull_requests row written by the webhook, with the id
// webhook:<conn>:<pullRequestKey>: the key alone, not the repository, identifies it on a connection.
type PullRequest struct {
	ID, BaseRepoID, HeadRepoID, Status, OriginalStatus, Title, Description, URL string
	AuthorName, AuthorID, MergedByName, MergedByID, ParentPrID                  string
	PullRequestKey                                                              int64
	CreatedDate                                                                 time.Time
	MergedDate, ClosedDate                                                      time.Time // zero: NULL
	Type, Component, MergeCommitSha, HeadRef, BaseRef, BaseCommitSha            string
	HeadCommitSha                                                               string
	Additions, Deletions                                                        int64
	IsDraft                                                                     bool
	CreatedAt, UpdatedAt                                                        time.Time
}

// PullRequestRowID returns DevLake's pull_requests id for a key posted on a connection.
func PullRequestRowID(conn uint64, key int64) string { return fmt.Sprintf("webhook:%d:%d", conn, key) }

// Pull request statuses DevLake accepts (empty too).
var prStatuses = []string{"OPEN", "CLOSED", "MERGED"}

type pullRequestReq struct {
	row PullRequest
}

// decodePullRequest reads and validates a pull request as v1.0.3's WebhookPullRequestReq does:
// id, baseRepoId, displayTitle (stored as the title), a non-zero pullRequestKey and createdDate
// are required; status is OPEN, CLOSED, MERGED or empty. A decoding problem is answered 400 with a
// bare string, a failed validation 400 with the error envelope (decode reports which).
func decodePullRequest(body map[string]any) (pullRequestReq, string, bool) {
	const owner = "WebhookPullRequestReq"
	o := newObject(owner, body)
	r := PullRequest{
		BaseRepoID: o.str("baseRepoId"), HeadRepoID: o.str("headRepoId"), Status: o.str("status"),
		OriginalStatus: o.str("originalStatus"), Title: o.str("displayTitle"), Description: o.str("description"),
		URL: o.str("url"), AuthorName: o.str("authorName"), AuthorID: o.str("authorId"),
		MergedByName: o.str("mergedByName"), MergedByID: o.str("mergedById"), ParentPrID: o.str("parentPrId"),
		PullRequestKey: o.int("pullRequestKey"), CreatedDate: o.date("createdDate"), MergedDate: o.date("mergedDate"),
		ClosedDate: o.date("closedDate"), Type: o.str("type"), Component: o.str("component"),
		MergeCommitSha: o.str("mergeCommitSha"), HeadRef: o.str("headRef"), BaseRef: o.str("baseRef"),
		BaseCommitSha: o.str("baseCommitSha"), HeadCommitSha: o.str("headCommitSha"),
		Additions: o.int("additions"), Deletions: o.int("deletions"), IsDraft: o.str("isDraft") == "1" || o.str("isDraft") == "true",
	}
	id := o.str("id")
	if len(o.errs) > 0 {
		return pullRequestReq{}, strings.Join(o.errs, "; "), true
	}
	var v validation
	v.required(owner, "Id", id != "")
	v.required(owner, "BaseRepoId", r.BaseRepoID != "")
	if r.Status != "" {
		v.oneOf(owner, "Status", r.Status, prStatuses)
	}
	v.required(owner, "Title", r.Title != "")
	v.required(owner, "PullRequestKey", r.PullRequestKey != 0)
	v.required(owner, "CreatedDate", !r.CreatedDate.IsZero())
	if len(v) > 0 {
		return pullRequestReq{}, "input json error: " + strings.Join(v, "\n"), false
	}
	return pullRequestReq{row: r}, "", false
}

// upsertPullRequest writes the row with the last-write-wins and zeroing of every webhook upsert.
func (s *store) upsertPullRequest(conn uint64, r pullRequestReq, now time.Time) {
	row := r.row
	row.ID = PullRequestRowID(conn, row.PullRequestKey)
	row.CreatedAt, row.UpdatedAt = now, now
	if old, ok := s.pullRequests[row.ID]; ok {
		row.CreatedAt = old.CreatedAt
	}
	s.pullRequests[row.ID] = row
	s.writes[writeKey{conn, KindPullRequest, strconv.FormatInt(row.PullRequestKey, 10)}]++
}

// PullRequests returns the pull_requests rows written on the connection, sorted by id.
func (d *DevLake) PullRequests(conn uint64) []PullRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	prefix := scopeID(conn) + ":"
	return sortedValues(d.store.pullRequests, func(r PullRequest) bool { return strings.HasPrefix(r.ID, prefix) })
}

// PRMetric is a project_pr_metrics row as DevLake's dora plugin (calculateChangeLeadTime) computes
// it, in minutes, each span rounded up. PrCodingTime is always nil for webhook data: it needs
// pull_request_commits, which the webhook cannot write.
type PRMetric struct {
	ID, FirstCommitSha, DeploymentCommitID            string
	PrCodingTime, PrDuring, PrDeployTime, PrCycleTime *int64
	DeploymentID                                      string    // cicd_deployment_id of DeploymentCommitID
	DeploymentFinished                                time.Time // finished_date of DeploymentCommitID
}

// PRMetrics computes project_pr_metrics for a DevLake project made of the connection alone
// (project_mapping repos/webhook:<id> and cicd_scopes/webhook:<id>, as a blueprint run writes
// them), after the dora plugin's subtasks, from the rows the webhook stored:
//
//   - enrichPrevSuccessDeploymentCommits: commit rows with result SUCCESS are chained per
//     (cicd_scope_id, repo_url, environment) in finished_date order; the first of each chain has
//     no previous one;
//   - commits_diffs: with webhook data alone (no git extractor) the diff between two consecutive
//     deployments of a chain holds only the new deployed commit, and nothing when it equals the
//     previous one;
//   - calculateChangeLeadTime: for every merged pull request whose base_repo_id is in the project,
//     the first PRODUCTION SUCCESS commit row (by started_date, then id) with a previous
//     deployment whose diff holds the merge commit; pr_cycle_time = coding (nil) + created→merged +
//     merged→that row's finished_date.
func (d *DevLake) PRMetrics(conn uint64) []PRMetric {
	d.mu.Lock()
	defer d.mu.Unlock()
	scope := scopeID(conn)
	var chain []DeploymentCommit
	for _, c := range d.store.commits {
		if c.CicdScopeID == scope && c.Result == "SUCCESS" && !c.FinishedDate.IsZero() && c.Environment != "" && c.RepoURL != "" {
			chain = append(chain, c)
		}
	}
	sort.Slice(chain, func(i, j int) bool {
		a, b := chain[i], chain[j]
		if a.RepoURL != b.RepoURL {
			return a.RepoURL < b.RepoURL
		}
		if a.Environment != b.Environment {
			return a.Environment < b.Environment
		}
		if !a.FinishedDate.Equal(b.FinishedDate) {
			return a.FinishedDate.Before(b.FinishedDate)
		}
		return a.ID < b.ID
	})
	// diffHolds[sha] are the rows whose diff against their previous deployment holds sha.
	diffHolds := map[string][]DeploymentCommit{}
	for i := 1; i < len(chain); i++ {
		prev, c := chain[i-1], chain[i]
		if prev.RepoURL != c.RepoURL || prev.Environment != c.Environment || prev.CommitSha == c.CommitSha {
			continue
		}
		diffHolds[c.CommitSha] = append(diffHolds[c.CommitSha], c)
	}
	var out []PRMetric
	for _, pr := range sortedValues(d.store.pullRequests, func(r PullRequest) bool { return r.BaseRepoID == scope && !r.MergedDate.IsZero() }) {
		m := PRMetric{ID: pr.ID, PrDuring: span(pr.CreatedDate, pr.MergedDate)}
		var dep *DeploymentCommit
		for _, c := range diffHolds[pr.MergeCommitSha] {
			if c.Environment != "PRODUCTION" {
				continue
			}
			if dep == nil || c.StartedDate.Before(dep.StartedDate) || c.StartedDate.Equal(dep.StartedDate) && c.ID < dep.ID {
				dep = &c
			}
		}
		if dep != nil {
			m.PrDeployTime = span(pr.MergedDate, dep.FinishedDate)
			m.DeploymentCommitID, m.DeploymentID, m.DeploymentFinished = dep.ID, dep.CicdDeploymentID, dep.FinishedDate
		}
		var cycle int64
		for _, p := range []*int64{m.PrCodingTime, m.PrDuring, m.PrDeployTime} {
			if p != nil {
				cycle += *p
			}
		}
		m.PrCycleTime = &cycle
		out = append(out, m)
	}
	return out
}

// span is DevLake's computeTimeSpan: whole minutes rounded up, nil when negative.
func span(from, to time.Time) *int64 {
	if from.IsZero() || to.IsZero() {
		return nil
	}
	m := int64(math.Ceil(to.Sub(from).Minutes()))
	if m < 0 {
		return nil
	}
	return &m
}

// MedianLeadTimeMinutes is the DORA dashboard's median lead time for changes over metrics: the
// largest pr_cycle_time whose percent_rank() is at most 0.5, over pull requests linked to a
// deployment (the dashboard joins the deployment commit). ok is false when none is linked.
func MedianLeadTimeMinutes(metrics []PRMetric) (minutes int64, ok bool) {
	var v []int64
	for _, m := range metrics {
		if m.DeploymentCommitID != "" && m.PrCycleTime != nil {
			v = append(v, *m.PrCycleTime)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	rank := 0 // percent_rank: ties share the rank of their first row
	for i, x := range v {
		if i == 0 || x != v[i-1] {
			rank = i
		}
		if len(v) > 1 && float64(rank)/float64(len(v)-1) > 0.5 {
			break
		}
		minutes = x
	}
	return minutes, true
}
