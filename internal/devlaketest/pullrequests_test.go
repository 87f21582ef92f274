package devlaketest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func pullRequestsPath(c Connection) string {
	return fmt.Sprintf("/rest/plugins/webhook/connections/%d/pull_requests", c.ID)
}

const shaA, shaB = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func pullRequest(key int, mergeSha, created, merged string) string {
	return fmt.Sprintf(`{"id":"https://github.com/o/app/pull/%d","baseRepoId":"webhook:1","displayTitle":"PR %d",
 "url":"https://github.com/o/app/pull/%d","status":"MERGED","pullRequestKey":%d,"createdDate":%q,"mergedDate":%q,
 "mergeCommitSha":%q}`, key, key, key, key, created, merged, mergeSha)
}

func deploymentOf(id, sha, finished string) string {
	return fmt.Sprintf(`{"id":%q,"result":"SUCCESS","environment":"PRODUCTION","startedDate":%q,"finishedDate":%q,
 "deploymentCommits":[{"repoUrl":"https://github.com/o/app","commitSha":%q,"result":"SUCCESS","startedDate":%q,"finishedDate":%q}]}`,
		id, finished, finished, sha, finished, finished)
}

func TestPullRequestValidation(t *testing.T) {
	f := newFixture(t)
	ok := pullRequest(7, shaB, "2026-03-10T10:00:00Z", "2026-03-10T12:00:00Z")
	tests := []struct {
		name, body string
		want       int
		msg        string
	}{
		{"valid", ok, 200, ""},
		{"no displayTitle", strings.Replace(ok, `"displayTitle":"PR 7",`, "", 1), 400, "'WebhookPullRequestReq.Title' Error:Field validation for 'Title' failed on the 'required' tag"},
		{"no baseRepoId", strings.Replace(ok, `"baseRepoId":"webhook:1",`, "", 1), 400, "'BaseRepoId' failed on the 'required' tag"},
		{"pullRequestKey 0", strings.Replace(ok, `"pullRequestKey":7`, `"pullRequestKey":0`, 1), 400, "'PullRequestKey' failed on the 'required' tag"},
		{"pullRequestKey as a string", strings.Replace(ok, `"pullRequestKey":7`, `"pullRequestKey":"7"`, 1), 200, ""},
		{"lower-case status", strings.Replace(ok, `"MERGED"`, `"merged"`, 1), 400, "'oneof' tag"},
		{"no createdDate", strings.Replace(ok, `"createdDate":"2026-03-10T10:00:00Z",`, "", 1), 400, "'CreatedDate' failed on the 'required' tag"},
		{"nanoseconds with offset", strings.Replace(ok, `2026-03-10T12:00:00Z`, `2026-03-10T14:00:00.123456789+02:00`, 1), 400, "parsing time"},
		{"epoch date", strings.Replace(ok, `"2026-03-10T12:00:00Z"`, `1773151331000`, 1), 400, "parsing time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.post(pullRequestsPath(f.c1), bearer(f.c1), tt.body)
			if code != tt.want || !strings.Contains(body, tt.msg) {
				t.Errorf("= %d %s, want %d containing %q", code, body, tt.want, tt.msg)
			}
		})
	}
	rows := f.d.PullRequests(f.c1.ID)
	if len(rows) != 1 || rows[0].ID != "webhook:1:7" || rows[0].Title != "PR 7" || rows[0].MergeCommitSha != shaB {
		t.Errorf("rows = %+v, want one webhook:1:7", rows)
	}
	if n := f.d.Writes(f.c1.ID, KindPullRequest, "7"); n != 2 {
		t.Errorf("writes = %d, want 2", n)
	}
}

// TestPRMetricsFollowDevLakesLeadTime: a pull request is linked to the first production
// deployment whose diff against its predecessor holds the merge commit; the first deployment of a
// (scope, repo, environment) chain has no predecessor, so its pull request is never linked.
func TestPRMetricsFollowDevLakesLeadTime(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{
		deploymentOf("d-1", shaA, "2026-03-10T09:00:00Z"),
		deploymentOf("d-2", shaB, "2026-03-10T13:00:30Z"),
		deploymentOf("d-3", shaB, "2026-03-10T15:00:00Z"), // a redeploy: no diff, no link
		pullRequest(6, shaA, "2026-03-09T10:00:00Z", "2026-03-10T08:00:00Z"),
		pullRequest(7, shaB, "2026-03-10T10:00:00Z", "2026-03-10T12:00:00Z"),
	} {
		path := deploymentsPath(f.c1)
		if strings.Contains(body, "pullRequestKey") {
			path = pullRequestsPath(f.c1)
		}
		if code, resp := f.post(path, bearer(f.c1), body); code != 200 {
			t.Fatalf("%d %s", code, resp)
		}
	}
	p := func(v int64) *int64 { return &v }
	d2 := CommitRowID(1, "d-2", "https://github.com/o/app", shaB)
	want := []PRMetric{
		{ID: "webhook:1:6", PrDuring: p(22 * 60), PrCycleTime: p(22 * 60)},
		{ID: "webhook:1:7", PrDuring: p(120), PrDeployTime: p(61), PrCycleTime: p(181), DeploymentCommitID: d2,
			DeploymentID: "d-2", DeploymentFinished: time.Date(2026, 3, 10, 13, 0, 30, 0, time.UTC)},
	}
	got := f.d.PRMetrics(f.c1.ID)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("project_pr_metrics (-want +got):\n%s", diff)
	}
	if m, ok := MedianLeadTimeMinutes(got); !ok || m != 181 {
		t.Errorf("median = %d %v, want 181 (only linked pull requests count)", m, ok)
	}
}

func TestMedianLeadTimeIsTheDashboardsPercentRankMedian(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		want   int64
	}{
		{"one", []int64{5}, 5},
		{"two: the lower", []int64{9, 3}, 3},
		{"three: the middle", []int64{1, 9, 4}, 4},
		{"four: the lower middle", []int64{1, 2, 3, 4}, 2},
		{"ties share a rank", []int64{1, 5, 5, 5, 9}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms []PRMetric
			for _, v := range tt.values {
				ms = append(ms, PRMetric{DeploymentCommitID: "x", PrCycleTime: &v})
			}
			if got, ok := MedianLeadTimeMinutes(ms); !ok || got != tt.want {
				t.Errorf("median(%v) = %d, want %d", tt.values, got, tt.want)
			}
		})
	}
}
