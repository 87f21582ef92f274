package devlaketest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/wait"
)

type fixture struct {
	t  *testing.T
	d  *DevLake
	c1 Connection
	c2 Connection
}

func newFixture(t *testing.T) *fixture {
	d := Start(t)
	f := &fixture{t: t, d: d, c1: d.AddConnection("global"), c2: d.AddConnection("team")}
	d.SetClock(func() time.Time { return time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC) })
	return f
}

func (f *fixture) post(path, auth, body string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.d.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func deploymentsPath(c Connection) string {
	return fmt.Sprintf("/rest/plugins/webhook/connections/%d/deployments", c.ID)
}
func issuesPath(c Connection) string {
	return fmt.Sprintf("/rest/plugins/webhook/connections/%d/issues", c.ID)
}
func bearer(c Connection) string { return "Bearer " + c.APIKey }

const deployment = `{"id":"d-1","result":"SUCCESS","environment":"PRODUCTION","originalEnvironment":"prod-eu",
 "startedDate":"2026-03-10T14:02:11Z","finishedDate":"2026-03-10T14:04:57Z","displayTitle":"checkout",
 "deploymentCommits":[{"repoUrl":"https://github.com/o/app","commitSha":"3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d",
  "result":"SUCCESS","status":"DONE","startedDate":"2026-03-10T14:02:11Z","finishedDate":"2026-03-10T14:04:57Z"}]}`

func TestAuthAndRoutes(t *testing.T) {
	f := newFixture(t)
	f.d.AddAPIKey("broad", "/plugins/webhook/.*")
	tests := []struct {
		name, path, auth string
		want             int
	}{
		{"per-connection key on its path", deploymentsPath(f.c1), bearer(f.c1), 200},
		{"config-ui form", "/api" + deploymentsPath(f.c1), bearer(f.c1), 200},
		{"missing header", deploymentsPath(f.c1), "", 401},
		{"lowercase bearer", deploymentsPath(f.c1), "bearer " + f.c1.APIKey, 401},
		{"unknown key", deploymentsPath(f.c1), "Bearer nope", 403},
		{"other connection's key", deploymentsPath(f.c1), bearer(f.c2), 403},
		{"short legacy form with a per-connection key", "/rest/plugins/webhook/1/deployments", bearer(f.c1), 403},
		{"by-name with a per-connection key", "/rest/plugins/webhook/connections/by-name/global/deployments", bearer(f.c1), 403},
		{"by-name with a broad key", "/rest/plugins/webhook/connections/by-name/global/deployments", "Bearer broad", 200},
		{"unknown connection with a broad key", "/rest/plugins/webhook/connections/99/deployments", "Bearer broad", 404},
		{"path without /rest is not served", "/plugins/webhook/connections/1/deployments", bearer(f.c1), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.post(tt.path, tt.auth, deployment)
			if code != tt.want {
				t.Fatalf("POST %s = %d %s, want %d", tt.path, code, body, tt.want)
			}
			if code == 200 && body != `{"code":0,"success":true,"message":"success","causes":null,"data":null}` {
				t.Errorf("success body = %s", body)
			}
		})
	}
}

func TestDeploymentValidationAndDates(t *testing.T) {
	f := newFixture(t)
	base := func(mod func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(deployment), &m); err != nil {
			t.Fatal(err)
		}
		mod(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	setDate := func(v any) func(m map[string]any) { return func(m map[string]any) { m["finishedDate"] = v } }
	tests := []struct {
		name string
		body string
		want int
		msg  string
	}{
		{"complete", deployment, 200, ""},
		{"malformed JSON", `{"id":`, 500, "unexpected EOF"},
		{"not an object", `[1]`, 500, "cannot unmarshal"},
		{"missing finishedDate", base(func(m map[string]any) { delete(m, "finishedDate") }), 400, "'WebhookDeploymentReq.FinishedDate'"},
		{"missing id", base(func(m map[string]any) { delete(m, "id") }), 400, "'required' tag"},
		{"empty commits", base(func(m map[string]any) { m["deploymentCommits"] = []any{} }), 400, "deployment_commits is empty"},
		{"lower-case environment", base(func(m map[string]any) { m["environment"] = "production" }), 400, "'oneof' tag"},
		{"snake_case v0 keys are ignored", `{"pipeline_id":"x","start_time":"2026-03-10T14:02:11Z"}`, 400, "required"},
		{"commit without sha", strings.Replace(deployment, `"commitSha":"3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d"`, `"commitSha":""`, 1), 400, "CommitSha"},
		{"upper-case keys and a numeric id", strings.Replace(strings.Replace(deployment, `"id":"d-1"`, `"ID":123`, 1), `"startedDate"`, `"STARTEDDATE"`, 1), 200, ""},
		{"millisecond Z", base(setDate("2026-03-10T14:04:57.123Z")), 200, ""},
		{"nanosecond Z", base(setDate("2026-03-10T14:04:57.123456789Z")), 200, ""},
		{"numeric offset", base(setDate("2026-03-10T16:04:57+02:00")), 200, ""},
		{"milliseconds with offset", base(setDate("2026-03-10T16:04:57.123+02:00")), 200, ""},
		{"compact offset", base(setDate("2026-03-10T16:04:57+0200")), 200, ""},
		{"microseconds with offset", base(setDate("2026-03-10T16:04:57.123456+02:00")), 400, "parsing time"},
		{"nanoseconds with offset", base(setDate("2026-03-10T16:04:57.123456789+02:00")), 400, "parsing time"},
		{"space form", base(setDate("2026-03-10 14:04:57")), 200, ""},
		{"space form without seconds", base(setDate("2026-03-10 14:04")), 200, ""},
		{"date only", base(setDate("2026-03-10")), 200, ""},
		{"zone-less T form", base(setDate("2026-03-10T14:04:57")), 400, "parsing time"},
		{"epoch milliseconds", base(setDate(1773151497000)), 400, "parsing time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.post(deploymentsPath(f.c1), bearer(f.c1), tt.body)
			if code != tt.want || !strings.Contains(body, tt.msg) {
				t.Fatalf("= %d %s, want %d containing %q", code, body, tt.want, tt.msg)
			}
		})
	}
	if _, ok := f.d.Deployment("123"); !ok {
		t.Error("numeric id 123 was not stored as \"123\"")
	}
}

func TestParseDateReadsZonelessLayoutsAsUTC(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-03-10 14:02:11":           time.Date(2026, 3, 10, 14, 2, 11, 0, time.UTC),
		"2026-03-10":                    time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC),
		"2026-03-10T16:02:11.123+02:00": time.Date(2026, 3, 10, 14, 2, 11, 123e6, time.UTC),
		"":                              {},
		"0000-00-00 00:00:00":           {},
	} {
		got, err := ParseDate(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestDeploymentUpsertIDsAndZeroing(t *testing.T) {
	f := newFixture(t)
	if code, body := f.post(deploymentsPath(f.c1), bearer(f.c1), deployment); code != 200 {
		t.Fatal(code, body)
	}
	rows := f.d.Deployments(f.c1.ID)
	if len(rows) != 1 {
		t.Fatalf("deployments = %+v", rows)
	}
	if n, other := f.d.DeploymentCount(f.c1.ID), f.d.DeploymentCount(f.c2.ID); n != 1 || other != 0 {
		t.Errorf("DeploymentCount = %d on the posting connection, %d on the other; want 1, 0", n, other)
	}
	d := rows[0]
	if d.ID != "d-1" || d.CicdScopeID != "webhook:1" || d.DurationSec != 166 || d.OriginalEnvironment != "prod-eu" ||
		d.Name != "deploy 3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d to PRODUCTION" || !d.CreatedDate.Equal(d.StartedDate) {
		t.Errorf("deployment row = %+v", d)
	}
	commits := f.d.DeploymentCommits(f.c1.ID)
	// md5("https://github.com/o/app") starts with these 16 hex digits.
	wantID := CommitRowID(1, "d-1", "https://github.com/o/app", "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d")
	if len(commits) != 1 || commits[0].ID != wantID || !strings.HasPrefix(wantID, "webhook:1:d-1:") {
		t.Fatalf("commit rows = %+v, want id %s", commits, wantID)
	}

	// Re-post without displayTitle/originalEnvironment and with a different commit: last write
	// wins, omitted fields are reset, and the old commit row stays.
	repost := `{"id":"d-1","result":"FAILURE","startedDate":"2026-03-10T14:02:11Z","finishedDate":"2026-03-10T14:04:57Z",
	 "deploymentCommits":[{"repoUrl":"https://github.com/o/app","commitSha":"2222222222222222222222222222222222222222",
	 "startedDate":"2026-03-10T14:02:11Z","finishedDate":"2026-03-10T14:04:57Z"}]}`
	if code, body := f.post(deploymentsPath(f.c1), bearer(f.c1), repost); code != 200 {
		t.Fatal(code, body)
	}
	d2, _ := f.d.Deployment("d-1")
	if d2.DisplayTitle != "" || d2.OriginalEnvironment != "PRODUCTION" || d2.Result != "FAILURE" || !d2.CreatedAt.Equal(d.CreatedAt) {
		t.Errorf("re-posted row = %+v", d2)
	}
	commits = f.d.DeploymentCommits(f.c1.ID)
	if len(commits) != 2 {
		t.Fatalf("want the stale commit row kept next to the new one, got %+v", commits)
	}
	for _, c := range commits {
		want := "SUCCESS" // the stale row keeps its old result; the new one defaults per commit
		if c.Result != want {
			t.Errorf("commit %s result = %s, want %s (the top-level result does not reach commits)", c.CommitSha, c.Result, want)
		}
	}
	if n := f.d.Writes(f.c1.ID, KindDeployment, "d-1"); n != 2 {
		t.Errorf("writes = %d, want 2", n)
	}

	// The same id on another connection takes the row over.
	if code, body := f.post(deploymentsPath(f.c2), bearer(f.c2), deployment); code != 200 {
		t.Fatal(code, body)
	}
	if len(f.d.Deployments(f.c1.ID)) != 0 || len(f.d.Deployments(f.c2.ID)) != 1 {
		t.Errorf("the raw id must collide across connections: c1=%v c2=%v", f.d.Deployments(f.c1.ID), f.d.Deployments(f.c2.ID))
	}
}

func TestIssuesAndIncidents(t *testing.T) {
	f := newFixture(t)
	open := `{"issueKey":"ITN-1","type":"INCIDENT","title":"Latency","status":"IN_PROGRESS","originalStatus":"investigating",
	 "severity":"2","url":"https://x/ITN-1","createdDate":"2026-03-10T15:20:00Z","updatedDate":"2026-03-10T15:31:12Z"}`
	resolved := `{"issueKey":"ITN-1","type":"INCIDENT","title":"Latency","status":"DONE","originalStatus":"resolved",
	 "createdDate":"2026-03-10T15:20:00Z","resolutionDate":"2026-03-10T16:05:00Z"}`
	for _, body := range []string{open, resolved} {
		if code, resp := f.post(issuesPath(f.c1), bearer(f.c1), body); code != 200 {
			t.Fatal(code, resp)
		}
	}
	iss, ok := f.d.Issue(f.c1.ID, "ITN-1")
	if !ok || iss.ID != "webhook:1:ITN-1" || iss.Status != "DONE" || iss.LeadTimeMinutes != 45 || iss.Severity != "" || iss.URL != "" {
		t.Errorf("issue = %+v (want lead time 45 and severity/url zeroed)", iss)
	}
	incs := f.d.Incidents(f.c1.ID)
	if len(incs) != 1 || incs[0].IncidentKey != "ITN-1" || incs[0].ScopeID != "webhook:1" || incs[0].LeadTimeMinutes != 45 {
		t.Errorf("incidents = %+v", incs)
	}

	tests := []struct {
		name, body string
		want       int
	}{
		{"lower-case type is not an incident", strings.Replace(strings.Replace(open, "INCIDENT", "incident", 1), "ITN-1", "ITN-2", 1), 200},
		{"missing originalStatus", strings.Replace(open, `"originalStatus":"investigating",`, "", 1), 400},
		{"empty status", strings.Replace(open, `"IN_PROGRESS"`, `""`, 1), 400},
		{"unknown status", strings.Replace(open, `"IN_PROGRESS"`, `"OPEN"`, 1), 400},
		{"missing createdDate", strings.Replace(open, `"createdDate":"2026-03-10T15:20:00Z",`, "", 1), 400},
		{"negative lead time", strings.Replace(open, `"severity"`, `"leadTimeMinutes":-1,"severity"`, 1), 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.post(issuesPath(f.c1), bearer(f.c1), tt.body)
			if code != tt.want {
				t.Fatalf("= %d %s, want %d", code, body, tt.want)
			}
			if code == 400 && !strings.HasPrefix(body, `"`) {
				t.Errorf("issues 400 body is a bare JSON string, got %s", body)
			}
		})
	}
	if len(f.d.Incidents(f.c1.ID)) != 1 {
		t.Error("type \"incident\" must not write an incident")
	}

	// /close blanks originalStatus and sets no resolution date (why the sink never calls it).
	code, _ := f.post(issuesPath(f.c1), bearer(f.c1), open)
	if code != 200 {
		t.Fatal(code)
	}
	if code, body := f.post("/rest/plugins/webhook/connections/1/issue/ITN-1/close", bearer(f.c1), ""); code != 200 {
		t.Fatal(code, body)
	}
	iss, _ = f.d.Issue(f.c1.ID, "ITN-1")
	if iss.Status != "DONE" || iss.OriginalStatus != "" || !iss.ResolutionDate.IsZero() {
		t.Errorf("closed issue = %+v", iss)
	}
}

// TestFaultsAreDeterministicAndNeverStore: the same seed injects the same faults in the same
// order, and only answered requests store. Outcomes are read from the fake's own records (by
// arrival), so a loaded machine that slows an ordinary request cannot change them.
func TestFaultsAreDeterministicAndNeverStore(t *testing.T) {
	run := func() []string {
		f := newFixture(t)
		f.d.SetFaults(Faults{Seed: 7, ServerErrors: 0.3, Stalls: 0.1, StallFor: time.Minute})
		client := &http.Client{Timeout: 300 * time.Millisecond} // gives up on stalls only
		for range 40 {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, f.d.URL+deploymentsPath(f.c1), strings.NewReader(deployment))
			req.Header.Set("Authorization", bearer(f.c1))
			if resp, err := client.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}
		// A stalled request is recorded when the fake sees the client give up.
		var reqs []Request
		wait.For(t, 10*time.Second, func() error {
			if reqs = f.d.Requests(); len(reqs) != 40 {
				return fmt.Errorf("%d requests recorded, want 40", len(reqs))
			}
			return nil
		})
		sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].At.Before(reqs[j].At) })
		var outcomes []string
		counts := map[string]int{}
		for _, r := range reqs {
			o := r.Fault
			if o == "" {
				o = fmt.Sprint(r.Status)
			}
			outcomes = append(outcomes, o)
			counts[o]++
		}
		if counts["200"] != f.d.Writes(f.c1.ID, KindDeployment, "d-1") {
			t.Errorf("writes %d != successful answers %d", f.d.Writes(f.c1.ID, KindDeployment, "d-1"), counts["200"])
		}
		if counts["server_error"] == 0 || counts["stall"] == 0 || counts["200"] == 0 {
			t.Errorf("want a mix of outcomes, got %v", counts)
		}
		return outcomes
	}
	a, b := run(), run()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
}

func TestRejectAndDown(t *testing.T) {
	f := newFixture(t)
	f.d.Reject(f.c2.ID, KindDeployment, "d-1", "rejected for the test")
	if code, _ := f.post(deploymentsPath(f.c1), bearer(f.c1), deployment); code != 200 {
		t.Errorf("the rejection is per connection; c1 got %d", code)
	}
	if code, body := f.post(deploymentsPath(f.c2), bearer(f.c2), deployment); code != 400 || !strings.Contains(body, "rejected for the test") {
		t.Errorf("c2 = %d %s", code, body)
	}
	f.d.SetDown(503)
	if code, _ := f.post(deploymentsPath(f.c1), bearer(f.c1), deployment); code != 503 {
		t.Errorf("down = %d", code)
	}
	f.d.SetDown(0)
	if got := f.d.StatusCounts(); got[200] != 1 || got[400] != 1 || got[503] != 1 {
		t.Errorf("status counts = %v", got)
	}
}

// TestConcurrentFirstWritesRaceOnTheScope: while the first write of a kind to a fresh connection is
// creating its board or CI/CD scope, a second first write fails as DevLake v1.0.3 on PostgreSQL
// does (400, duplicate key, SQLSTATE 23505) and stores nothing; once the scope exists, concurrent
// writes succeed, and other connections and kinds are not affected.
func TestConcurrentFirstWritesRaceOnTheScope(t *testing.T) {
	f := newFixture(t)
	issue := `{"issueKey":"ITN-1","title":"t","status":"TODO","originalStatus":"new","type":"INCIDENT","createdDate":"2026-03-10T15:20:00Z"}`
	tests := []struct {
		name, path, body, constraint string
		kind                         Kind
	}{
		{"deployments", deploymentsPath(f.c1), deployment, "cicd_scopes_pkey", KindDeployment},
		{"issues", issuesPath(f.c1), issue, "boards_pkey", KindIssue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := f.d.HoldFirstPosts()
			first := make(chan int, 1)
			go func() {
				code, _ := f.post(tt.path, bearer(f.c1), tt.body)
				first <- code
			}()
			wait.For(t, 5*time.Second, func() error {
				if n := f.d.Pending(); n != 1 {
					return fmt.Errorf("%d first writes held, want 1", n)
				}
				return nil
			})
			code, body := f.post(tt.path, bearer(f.c1), tt.body)
			want := `duplicate key value violates unique constraint \"` + tt.constraint + `\" (SQLSTATE 23505)`
			if code != 400 || !strings.Contains(body, want) {
				t.Errorf("concurrent first write = %d %s, want 400 with %s", code, body, want)
			}
			release()
			if code := <-first; code != 200 {
				t.Errorf("first write = %d, want 200", code)
			}
			if n := f.d.Writes(f.c1.ID, tt.kind, map[Kind]string{KindDeployment: "d-1", KindIssue: "ITN-1"}[tt.kind]); n != 1 {
				t.Errorf("writes = %d, want 1 (the failed write stores nothing)", n)
			}
			// The scope exists now: concurrent writes all succeed.
			codes := make(chan int, 4)
			for range 4 {
				go func() {
					c, _ := f.post(tt.path, bearer(f.c1), tt.body)
					codes <- c
				}()
			}
			for range 4 {
				if c := <-codes; c != 200 {
					t.Errorf("write after the scope exists = %d", c)
				}
			}
		})
	}
}
