package github_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

type observer struct {
	mu    sync.Mutex
	calls map[string]int // endpoint/outcome
	rem   map[string]int
}

func (o *observer) Call(endpoint, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.calls == nil {
		o.calls = map[string]int{}
	}
	o.calls[endpoint+"/"+outcome]++
}

func (o *observer) RateLimit(resource string, remaining int, _ time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rem == nil {
		o.rem = map[string]int{}
	}
	o.rem[resource] = remaining
}

func (*observer) ConfigError(int)                 {}
func (*observer) ConfigFault(*github.ConfigError) {}

func (o *observer) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[k]
}

func newClient(t *testing.T, srv *githubtest.Server, mod ...func(*github.Options)) (*github.Client, *observer) {
	t.Helper()
	obs := &observer{}
	opts := github.Options{BaseURL: srv.URL(), Token: "t0ken", Observer: obs, MaxWait: time.Second}
	for _, m := range mod {
		m(&opts)
	}
	c, err := github.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, obs
}

var repo = github.Repo{Host: "github.com", Owner: "acme", Name: "shop"}

func shas(cs []github.Commit) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.SHA
	}
	return out
}

func TestCompareStatusesAndExactCommitSets(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	root := r.Push(1)[0]
	var linear, merged, squashed, rebased []string
	linear = r.Push(3)
	afterLinear := r.Head()
	m, _ := r.Merge(3)
	merged = m
	afterMerge := r.Head()
	squashed, _ = r.Squash(4)
	rebased, _ = r.Rebase(2)
	head := r.Head()
	rewritten := r.ForcePush(afterLinear, 2)
	c, _ := newClient(t, srv)
	ctx := t.Context()

	tests := []struct {
		name       string
		base, head string
		status     string
		want       []string
	}{
		{"linear", root, afterLinear, "ahead", linear},
		{"merge commit brings the branch commits", afterLinear, afterMerge, "ahead", merged},
		{"squash, merge and rebase", afterMerge, head, "ahead", append(append([]string(nil), squashed...), rebased...)},
		{"identical", head, head, "identical", nil},
		{"behind (rollback)", head, afterLinear, "behind", nil},
		{"diverged (force push)", head, rewritten[len(rewritten)-1], "diverged", rewritten},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Compare(ctx, repo, tc.base, tc.head)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status {
				t.Errorf("status = %q, want %q", got.Status, tc.status)
			}
			if diff := cmp.Diff(tc.want, shas(got.Commits), cmpEmpty); diff != "" {
				t.Errorf("commits (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return cmp.Equal([]string(a), []string(b))
})

func TestCompareFollowsPaginationBeyond250(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	base := r.Push(1)[0]
	want := r.Push(617)
	c, obs := newClient(t, srv)
	got, err := c.Compare(t.Context(), repo, base, r.Head())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, shas(got.Commits)); diff != "" {
		t.Errorf("commits (-want +got):\n%s", diff)
	}
	if got.TotalCommits != 617 || got.AheadBy != 617 {
		t.Errorf("total %d ahead %d, want 617", got.TotalCommits, got.AheadBy)
	}
	// 617 commits at 100 per page: 7 requests, each following the Link header.
	if n := srv.Calls()[githubtest.EndpointCompare]; n != 7 {
		t.Errorf("compare requests = %d, want 7; %v", n, srv.Requests())
	}
	if n := obs.get("compare/ok"); n != 7 {
		t.Errorf("observed compare/ok = %d, want 7", n)
	}
	for _, req := range srv.Requests() {
		if !strings.Contains(req, "per_page=100") {
			t.Errorf("request without per_page (GitHub would cap it at 250 commits): %s", req)
		}
	}
}

func TestCommitFields(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	r.Push(1)
	sq, _ := r.Squash(2)
	c, _ := newClient(t, srv)
	got, err := c.Commit(t.Context(), repo, sq[0][:10]) // abbreviated
	if err != nil {
		t.Fatal(err)
	}
	fake := r.Commit(sq[0])
	want := github.Commit{SHA: sq[0], Author: "squasher", AuthoredAt: fake.AuthoredAt, CommittedAt: fake.CommittedAt,
		Title: fake.Title, Parents: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commit (-want +got):\n%s", diff)
	}
}

// A revert commit's full message names the commits it reverts; the compare and commit APIs both
// return the full message, so both carry Reverts.
func TestRevertCommitsNameWhatTheyRevert(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	base := r.Push(1)[0]
	bad := r.Push(1)[0]
	revert := r.Revert(bad)
	c, _ := newClient(t, srv)
	got, err := c.Commit(t.Context(), repo, revert)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{bad}, got.Reverts); diff != "" {
		t.Errorf("commit reverts (-want +got):\n%s", diff)
	}
	if want := `Revert "direct change 1"`; got.Title != want {
		t.Errorf("title = %q, want %q", got.Title, want)
	}
	cmpr, err := c.Compare(t.Context(), repo, base, revert)
	if err != nil {
		t.Fatal(err)
	}
	var reverts [][]string
	for _, c := range cmpr.Commits {
		reverts = append(reverts, c.Reverts)
	}
	if diff := cmp.Diff([][]string{nil, {bad}}, reverts); diff != "" {
		t.Errorf("compare reverts (-want +got):\n%s", diff)
	}
}

func TestParseReverts(t *testing.T) {
	tests := []struct {
		name, message string
		want          []string
	}{
		{"git revert", "Revert \"x\"\n\nThis reverts commit 0123456789abcdef0123456789abcdef01234567.\n",
			[]string{"0123456789abcdef0123456789abcdef01234567"}},
		{"squashed reverts of two commits", "Revert two (#7)\n\n* This reverts commit abcdef1.\n* This reverts commit ABCDEF2345.",
			[]string{"abcdef1", "abcdef2345"}},
		{"no revert", "fix: handle revert of order", nil},
		{"too short", "This reverts commit abc.", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, github.ParseReverts(tc.message)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPullRequestsOfEveryMergeStyle(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	direct := r.Push(1)
	sq, sqPR := r.Squash(3)
	mg, mgPR := r.Merge(2)
	rb, rbPR := r.Rebase(2)
	openPR := r.OpenPR(sq[0]) // an open PR also containing the squash commit did not bring it in
	_ = openPR
	c, _ := newClient(t, srv)
	all := append(append(append(append([]string(nil), direct...), sq...), mg...), rb...)
	got, err := c.PullRequests(t.Context(), repo, all)
	if err != nil {
		t.Fatal(err)
	}
	pr := func(n int) *github.PullRequest {
		f := r.PullRequest(n)
		return &github.PullRequest{Number: n, URL: f.URL, CreatedAt: f.CreatedAt, MergedAt: f.MergedAt, FirstCommitAt: f.FirstCommitAt}
	}
	want := map[string]*github.PullRequest{direct[0]: nil, sq[0]: pr(sqPR)}
	for _, s := range mg {
		want[s] = pr(mgPR)
	}
	for _, s := range rb {
		want[s] = pr(rbPR)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pull requests (-want +got):\n%s", diff)
	}
	// The squash commit is authored at merge time; the PR's first commit is earlier.
	if p := got[sq[0]]; p == nil || !p.FirstCommitAt.Before(r.Commit(sq[0]).AuthoredAt) {
		t.Errorf("squash PR first commit %v not before the squash commit %v", p, r.Commit(sq[0]).AuthoredAt)
	}
	if n := srv.Calls()[githubtest.EndpointGraphQL]; n != 1 {
		t.Errorf("graphql requests = %d, want 1 for %d commits", n, len(all))
	}
}

func TestPullRequestsBatchesOf50(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	cs := r.Push(120)
	c, _ := newClient(t, srv)
	got, err := c.PullRequests(t.Context(), repo, cs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 120 {
		t.Errorf("answers for %d commits, want 120", len(got))
	}
	if n := srv.Calls()[githubtest.EndpointGraphQL]; n != 3 {
		t.Errorf("graphql requests = %d, want 3", n)
	}
}

func TestErrorClassification(t *testing.T) {
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	tests := []struct {
		name     string
		setup    func(*githubtest.Server)
		call     func(context.Context, *github.Client, string) error
		check    func(*testing.T, error)
		outcome  string
		endpoint string
	}{
		{
			name:  "unknown repository is not found",
			setup: func(*githubtest.Server) {},
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Compare(ctx, github.Repo{Host: "github.com", Owner: "acme", Name: "nope"}, head, head)
				return err
			},
			check:    isErr(github.ErrNotFound),
			endpoint: "compare", outcome: "not_found",
		},
		{
			name:  "unknown commit (422) is not found",
			setup: func(*githubtest.Server) {},
			call: func(ctx context.Context, c *github.Client, _ string) error {
				_, err := c.Commit(ctx, repo, strings.Repeat("ab", 20))
				return err
			},
			check:    isErr(github.ErrNotFound),
			endpoint: "commit", outcome: "not_found",
		},
		{
			name:  "403 without rate-limit headers is forbidden",
			setup: func(s *githubtest.Server) { s.Forbid("acme", "shop") },
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Commit(ctx, repo, head)
				return err
			},
			check:    isErr(github.ErrForbidden),
			endpoint: "commit", outcome: "forbidden",
		},
		{
			name:  "graphql on a forbidden repository is forbidden",
			setup: func(s *githubtest.Server) { s.Forbid("acme", "shop") },
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.PullRequests(ctx, repo, []string{head})
				return err
			},
			check:    isErr(github.ErrForbidden),
			endpoint: "graphql_pull_requests", outcome: "forbidden",
		},
		{
			name:  "403 with X-RateLimit-Remaining 0 is rate limited until reset",
			setup: func(s *githubtest.Server) { s.SetQuota("core", 5000, 0, future) },
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Commit(ctx, repo, head)
				return err
			},
			check: func(t *testing.T, err error) {
				var rl *github.RateLimitedError
				if !errors.As(err, &rl) || rl.Secondary || !rl.Until.Equal(future) {
					t.Fatalf("err = %v, want primary rate limit until %v", err, future)
				}
			},
			endpoint: "commit", outcome: "rate_limited",
		},
		{
			name:  "secondary limit honours Retry-After",
			setup: func(s *githubtest.Server) { s.FailNext(1, githubtest.SecondaryLimit(90*time.Second)) },
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Commit(ctx, repo, head)
				return err
			},
			check: func(t *testing.T, err error) {
				var rl *github.RateLimitedError
				if !errors.As(err, &rl) || !rl.Secondary {
					t.Fatalf("err = %v, want secondary rate limit", err)
				}
				if d := time.Until(rl.Until); d < 85*time.Second || d > 91*time.Second {
					t.Errorf("retry in %s, want ~90s", d)
				}
			},
			endpoint: "commit", outcome: "secondary_rate_limited",
		},
		{
			name: "429 with Retry-After is a secondary limit",
			setup: func(s *githubtest.Server) {
				s.FailNext(1, githubtest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"30"}},
					Body: `{"message":"too many requests"}`})
			},
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Compare(ctx, repo, head, head)
				return err
			},
			check: func(t *testing.T, err error) {
				var rl *github.RateLimitedError
				if !errors.As(err, &rl) || !rl.Secondary {
					t.Fatalf("err = %v, want secondary rate limit", err)
				}
			},
			endpoint: "compare", outcome: "secondary_rate_limited",
		},
		{
			name: "Retry-After as an HTTP date is honoured",
			setup: func(s *githubtest.Server) {
				s.FailNext(1, githubtest.Fault{Status: http.StatusForbidden,
					Header: http.Header{"Retry-After": {future.Add(-30 * time.Minute).UTC().Format(http.TimeFormat)}},
					Body:   `{"message":"You have exceeded a secondary rate limit."}`})
			},
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Commit(ctx, repo, head)
				return err
			},
			check: func(t *testing.T, err error) {
				var rl *github.RateLimitedError
				if want := future.Add(-30 * time.Minute); !errors.As(err, &rl) || !rl.Secondary || !rl.Until.Equal(want) {
					t.Fatalf("err = %v, want a secondary rate limit until %v", err, want)
				}
			},
			endpoint: "commit", outcome: "secondary_rate_limited",
		},
		{
			name:  "503 is retryable, not a data problem",
			setup: func(s *githubtest.Server) { s.FailNext(1, githubtest.ServerError) },
			call: func(ctx context.Context, c *github.Client, head string) error {
				_, err := c.Compare(ctx, repo, head, head)
				return err
			},
			check: func(t *testing.T, err error) {
				if err == nil || errors.Is(err, github.ErrNotFound) || errors.Is(err, github.ErrForbidden) ||
					errors.Is(err, github.ErrRejected) || github.IsRateLimited(err) {
					t.Fatalf("err = %v, want a plain retryable error", err)
				}
			},
			endpoint: "compare", outcome: "server_error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := githubtest.New(t)
			head := srv.Repo("acme", "shop").Push(1)[0]
			tc.setup(srv)
			c, obs := newClient(t, srv)
			tc.check(t, tc.call(t.Context(), c, head))
			if n := obs.get(tc.endpoint + "/" + tc.outcome); n != 1 {
				t.Errorf("observed %s/%s = %d, want 1; all: %v", tc.endpoint, tc.outcome, n, obs.calls)
			}
		})
	}
}

func isErr(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("err = %v, want %v", err, target)
		}
	}
}

// A spent quota is remembered: later calls are refused without a request until the reset.
func TestExhaustedQuotaDefersWithoutRequests(t *testing.T) {
	srv := githubtest.New(t)
	head := srv.Repo("acme", "shop").Push(1)[0]
	srv.SetQuota("core", 5000, 1, time.Now().Add(time.Hour))
	c, obs := newClient(t, srv)
	if _, err := c.Commit(t.Context(), repo, head); err != nil { // spends the last request
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Compare(t.Context(), repo, head, head); !github.IsRateLimited(err) {
			t.Fatalf("call %d: err = %v, want rate limited", i, err)
		}
	}
	if n := srv.TotalCalls(); n != 1 {
		t.Errorf("GitHub saw %d requests, want 1: %v", n, srv.Requests())
	}
	if n := obs.get("compare/deferred"); n != 3 {
		t.Errorf("deferred = %d, want 3", n)
	}
	if obs.rem["core"] != 0 {
		t.Errorf("remaining = %d, want 0", obs.rem["core"])
	}
	// GraphQL has its own quota and is not blocked.
	if _, err := c.PullRequests(t.Context(), repo, []string{head}); err != nil {
		t.Errorf("graphql: %v", err)
	}
}

// A reset within MaxWait and the context deadline is waited for in-process.
func TestShortRateLimitIsWaitedFor(t *testing.T) {
	srv := githubtest.New(t)
	head := srv.Repo("acme", "shop").Push(1)[0]
	srv.FailNext(1, githubtest.SecondaryLimit(time.Second))
	c, _ := newClient(t, srv, func(o *github.Options) { o.MaxWait = 5 * time.Second })
	if _, err := c.Commit(t.Context(), repo, head); !github.IsRateLimited(err) {
		t.Fatalf("first call: %v, want rate limited", err)
	}
	start := time.Now()
	if _, err := c.Commit(t.Context(), repo, head); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("second call after %s, want it to wait for Retry-After (1s)", d)
	}
	// A deadline shorter than the wait: refused at once.
	srv.FailNext(1, githubtest.SecondaryLimit(3*time.Second))
	if _, err := c.Commit(t.Context(), repo, head); !github.IsRateLimited(err) {
		t.Fatalf("third call: %v, want rate limited", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := c.Commit(ctx, repo, head); !github.IsRateLimited(err) {
		t.Fatalf("call with short deadline: %v, want rate limited at once", err)
	}
}

func TestGitHubAppInstallationToken(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	srv := githubtest.New(t)
	head := srv.Repo("acme", "shop").Push(1)[0]
	srv.EnableApp(42, 7, &key.PublicKey)
	srv.RequireToken("some-other-token")
	c, obs := newClient(t, srv, func(o *github.Options) {
		o.Token = ""
		o.App = &github.AppCredentials{AppID: 42, InstallationID: 7, PrivateKey: pemKey}
	})
	for i := 0; i < 3; i++ {
		if _, err := c.Commit(t.Context(), repo, head); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, err := c.PullRequests(t.Context(), repo, []string{head}); err != nil {
		t.Fatal(err)
	}
	if n := srv.TokensIssued(); n != 1 {
		t.Errorf("installation tokens issued = %d, want 1 (reused until expiry)", n)
	}
	if n := obs.get("app_token/ok"); n != 1 {
		t.Errorf("app_token/ok = %d, want 1", n)
	}

	// A key the server does not know: the exchange fails and nothing is sent with a bad token.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	badPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)})
	bad, _ := newClient(t, srv, func(o *github.Options) {
		o.Token = ""
		o.App = &github.AppCredentials{AppID: 42, InstallationID: 7, PrivateKey: badPEM}
	})
	if _, err := bad.Commit(t.Context(), repo, head); err == nil || errors.Is(err, github.ErrNotFound) {
		t.Fatalf("err = %v, want a retryable authentication error", err)
	}
}

func TestTokenIsSentAndUnauthorizedIsRetryable(t *testing.T) {
	srv := githubtest.New(t)
	head := srv.Repo("acme", "shop").Push(1)[0]
	srv.RequireToken("t0ken")
	c, _ := newClient(t, srv)
	if _, err := c.Commit(t.Context(), repo, head); err != nil {
		t.Fatal(err)
	}
	wrong, _ := newClient(t, srv, func(o *github.Options) { o.Token = "wrong" })
	_, err := wrong.Commit(t.Context(), repo, head)
	if err == nil || errors.Is(err, github.ErrNotFound) || errors.Is(err, github.ErrForbidden) || errors.Is(err, github.ErrRejected) {
		t.Fatalf("err = %v, want a retryable unauthorized error", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error reveals the token: %v", err)
	}
}

func TestEnterpriseURLs(t *testing.T) {
	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	base := r.Push(1)[0]
	r.Push(2)
	c, _ := newClient(t, srv, func(o *github.Options) { o.BaseURL = strings.TrimSuffix(srv.URL(), "/") + "/api/v3" })
	if _, err := c.Compare(t.Context(), repo, base, r.Head()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PullRequests(t.Context(), repo, []string{base}); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || !strings.HasPrefix(reqs[0], "GET /repos/acme/shop/compare/") || reqs[1] != "POST /graphql" {
		t.Errorf("requests = %q, want REST under /api/v3 and GraphQL at /api/graphql", reqs)
	}
}

func TestParseRepoURL(t *testing.T) {
	hosts := []string{"github.com", "ghe.example.com"}
	want := github.Repo{Host: "github.com", Owner: "acme", Name: "shop.web"}
	for _, in := range []string{
		"https://github.com/acme/shop.web", "https://github.com/Acme/Shop.Web.git", "http://github.com/acme/shop.web/",
		"git@github.com:acme/shop.web.git", "ssh://git@github.com/acme/shop.web.git", "github.com/acme/shop.web",
	} {
		got, err := github.ParseRepoURL(in, hosts)
		if err != nil || got != want {
			t.Errorf("ParseRepoURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if got, _ := github.ParseRepoURL("https://ghe.example.com/team/app", hosts); got.URL() != "https://ghe.example.com/team/app" {
		t.Errorf("GHE URL = %q", got.URL())
	}
	for _, in := range []string{"", "https://gitlab.com/acme/shop", "https://github.com/acme", "https://github.com/acme/shop/tree/main",
		"quay.io/acme/shop", "ftp://github.com/acme/shop", "https://github.com/../etc"} {
		if got, err := github.ParseRepoURL(in, hosts); !errors.Is(err, github.ErrNotGitHub) {
			t.Errorf("ParseRepoURL(%q) = %+v, %v; want ErrNotGitHub", in, got, err)
		}
	}
}

func FuzzParseRepoURL(f *testing.F) {
	for _, s := range []string{"https://github.com/acme/shop.git", "git@github.com:a/b", "github.com/a/b", "://", "git@:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := github.ParseRepoURL(s, []string{"github.com"})
		if err != nil {
			return
		}
		again, err := github.ParseRepoURL(r.URL(), []string{"github.com"})
		if err != nil || again != r {
			t.Fatalf("canonical URL %q of %q does not parse back: %+v, %v", r.URL(), s, again, err)
		}
	})
}
