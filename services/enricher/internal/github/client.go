// Package github reads what the enricher needs from GitHub: the commits between two deployed
// commits (REST compare, paginated), single commits, and the pull requests that brought commits in
// (one batched GraphQL query per 50 commits). It authenticates with a personal token or as a
// GitHub App installation, works against GitHub Enterprise, classifies every failure (not found,
// forbidden, rate limited, retryable, configuration fault) and never sends a request it knows the
// quota will refuse. A configuration fault (a rejected token, a base URL that is not GitHub's API)
// pauses every request until a probe succeeds; every answer is read through a size limit.
// Cached wraps a Client with a cache of these answers, which are immutable by SHA.
package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v60/github"
)

// Endpoints, the values of the endpoint label of Observer.Call.
const (
	EndpointCompare      = "compare"
	EndpointCommit       = "commit"
	EndpointPullRequests = "graphql_pull_requests"
	EndpointAppToken     = "app_token"
)

// Outcomes of one request, the values of the outcome label of Observer.Call.
const (
	OutcomeOK                   = "ok"
	OutcomeNotFound             = "not_found"
	OutcomeForbidden            = "forbidden"
	OutcomeRateLimited          = "rate_limited"
	OutcomeSecondaryRateLimited = "secondary_rate_limited"
	OutcomeServerError          = "server_error"
	OutcomeError                = "error"
	// OutcomeConfigFault: the answer says the client is misconfigured (see ConfigError).
	OutcomeConfigFault = "config_fault"
	// OutcomeDeferred: no request was sent, because the quota is known to be exhausted.
	OutcomeDeferred = "deferred"
	// OutcomePaused: no request was sent, because a configuration fault pauses the client.
	OutcomePaused = "paused"
)

// Rate-limit resources (X-RateLimit-Resource).
const (
	resourceCore      = "core"
	resourceGraphQL   = "graphql"
	resourceSecondary = "secondary"
)

// comparePageSize is the page size of compare requests (GitHub's maximum). Without paging
// parameters GitHub returns at most 250 commits; with them, every commit, page by page.
const comparePageSize = 100

// maxComparePages bounds one comparison (100,000 commits): beyond it the range is not credible.
const maxComparePages = 1000

// defaultSecondaryWait is how long to back off from a secondary limit without Retry-After; GitHub
// asks for at least a minute.
const defaultSecondaryWait = time.Minute

// Observer receives what the client sees, for metrics. Implementations must be safe for concurrent use.
type Observer interface {
	// Call counts one request by endpoint and outcome (Outcome*).
	Call(endpoint, outcome string)
	// RateLimit reports the quota left in a resource (core, graphql) and when it resets.
	RateLimit(resource string, remaining int, reset time.Time)
	// ConfigError counts one answer that was a configuration fault, by HTTP status.
	ConfigError(status int)
	// ConfigFault reports a transition of the client's circuit: cause when a configuration fault
	// opens it, nil when a probe succeeds.
	ConfigFault(cause *ConfigError)
}

type nopObserver struct{}

func (nopObserver) Call(string, string)              {}
func (nopObserver) RateLimit(string, int, time.Time) {}
func (nopObserver) ConfigError(int)                  {}
func (nopObserver) ConfigFault(*ConfigError)         {}

// How the client authenticates.
const (
	authNone = iota
	authToken
	authApp
)

// Options configure a Client.
type Options struct {
	// BaseURL is the REST API root: https://api.github.com/ or https://<ghe-host>/api/v3/.
	BaseURL string
	// Token is a personal access token (or any bearer token). Empty with App nil: unauthenticated.
	Token string
	// App authenticates as a GitHub App installation instead of Token.
	App *AppCredentials
	// Timeout bounds one HTTP request (default 30s).
	Timeout time.Duration
	// MaxWait is the longest a call waits in-process for a known rate-limit reset before it returns
	// a *RateLimitedError instead (default 10s). It also never waits past the context's deadline.
	MaxWait time.Duration
	// Transport is the HTTP transport (default http.DefaultTransport).
	Transport http.RoundTripper
	Observer  Observer
	// MaxBodyBytes bounds one answer (default 32 MiB); a longer one fails with ErrAnswerTooLarge.
	MaxBodyBytes int64
	// ProbeEvery is the first pause after a configuration fault (default 5s): requests are refused
	// until one probe is let through; each refused probe doubles the pause, up to MaxProbeEvery
	// (default 5m).
	ProbeEvery, MaxProbeEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Client calls GitHub. It is safe for concurrent use.
type Client struct {
	gh         *gh.Client
	graphqlURL string
	obs        Observer
	maxWait    time.Duration
	now        func() time.Time

	auth          int
	probeEvery    time.Duration
	maxProbeEvery time.Duration

	mu      sync.Mutex
	blocked map[string]time.Time // resource → no requests before this time
	fault   *ConfigFault         // nil: not paused
	pause   time.Duration        // the current pause between probes
	probing bool                 // a probe is in flight
}

// New returns a client for opts.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = "https://api.github.com/"
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("github base URL %q is not an http(s) URL", opts.BaseURL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 10 * time.Second
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = defaultMaxBodyBytes
	}
	if opts.ProbeEvery <= 0 {
		opts.ProbeEvery = defaultProbeEvery
	}
	if opts.MaxProbeEvery < opts.ProbeEvery {
		opts.MaxProbeEvery = max(defaultMaxProbeEvery, opts.ProbeEvery)
	}
	transport := opts.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	transport = answerTransport{next: transport, max: opts.MaxBodyBytes}
	c := &Client{obs: opts.Observer, maxWait: opts.MaxWait, now: opts.Now, blocked: map[string]time.Time{},
		graphqlURL: graphqlURL(base), probeEvery: opts.ProbeEvery, maxProbeEvery: opts.MaxProbeEvery}
	switch {
	case opts.App != nil:
		c.auth = authApp
	case opts.Token != "":
		c.auth = authToken
	}
	if opts.App != nil {
		if opts.Token != "" {
			return nil, errors.New("github: set a token or app credentials, not both")
		}
		at, err := newAppTransport(*opts.App, base, transport, opts.Timeout, c)
		if err != nil {
			return nil, err
		}
		transport = at
	}
	client := gh.NewClient(&http.Client{Transport: transport, Timeout: opts.Timeout})
	if opts.Token != "" {
		client = client.WithAuthToken(opts.Token)
	}
	client.BaseURL = base
	c.gh = client
	return c, nil
}

// graphqlURL derives the GraphQL endpoint from the REST root: https://api.github.com/graphql, or
// https://<ghe-host>/api/graphql for GitHub Enterprise Server (REST at /api/v3/).
func graphqlURL(base *url.URL) string {
	u := *base
	if p, ok := strings.CutSuffix(u.Path, "/api/v3/"); ok {
		u.Path = p + "/api/graphql"
	} else {
		u.Path += "graphql"
	}
	return u.String()
}

// Commit is one commit as the enricher records it.
type Commit struct {
	SHA string
	// Author is the author's GitHub login when GitHub knows it, else the git author name.
	Author      string
	AuthoredAt  time.Time
	CommittedAt time.Time
	// Title is the first line of the message.
	Title   string
	Parents int
	// Reverts are the commits the message says this commit reverts ("This reverts commit <sha>.",
	// as git revert writes it), lower-case, possibly abbreviated.
	Reverts []string `json:",omitempty"`
}

// revertLine is the line git revert writes into the message; squashed reverts repeat it.
var revertLine = regexp.MustCompile(`(?i)\bThis reverts commit ([0-9a-f]{7,40})\b`)

// ParseReverts returns the commits a commit message says it reverts, in order, once each.
func ParseReverts(message string) []string {
	var out []string
	for _, m := range revertLine.FindAllStringSubmatch(message, -1) {
		sha := strings.ToLower(m[1])
		if !slices.Contains(out, sha) {
			out = append(out, sha)
		}
	}
	return out
}

// Comparison is GitHub's comparison of base...head: the commits reachable from head and not from
// base, oldest first, and how the two relate.
type Comparison struct {
	// Status is ahead, behind, identical or diverged.
	Status       string
	AheadBy      int
	BehindBy     int
	TotalCommits int
	MergeBaseSHA string
	Commits      []Commit
}

// ErrIncompleteComparison means the pages of a comparison held fewer commits than its
// total_commits: GitHub did not return the whole range, and guessing the rest is not an option.
var ErrIncompleteComparison = errors.New("github: comparison pages are incomplete")

// Compare returns the comparison base...head with every commit, following the Link header page by
// page (GitHub caps an unpaginated comparison at 250 commits).
func (c *Client) Compare(ctx context.Context, repo Repo, base, head string) (Comparison, error) {
	var out Comparison
	opts := &gh.ListOptions{PerPage: comparePageSize, Page: 1}
	for pages := 0; ; pages++ {
		if pages == maxComparePages {
			return Comparison{}, fmt.Errorf("compare %s %s...%s: more than %d pages", repo, short(base), short(head), maxComparePages)
		}
		var cmp *gh.CommitsComparison
		var resp *gh.Response
		err := c.do(ctx, EndpointCompare, resourceCore, func(ctx context.Context) (*gh.Response, error) {
			var err error
			cmp, resp, err = c.gh.Repositories.CompareCommits(ctx, repo.Owner, repo.Name, base, head, opts)
			if err == nil && cmp.GetStatus() == "" {
				err = notGitHub(resp, "a comparison without status")
			}
			return resp, err
		})
		if err != nil {
			return Comparison{}, fmt.Errorf("compare %s %s...%s page %d: %w", repo, short(base), short(head), opts.Page, err)
		}
		if pages == 0 {
			out.Status = cmp.GetStatus()
			out.AheadBy, out.BehindBy, out.TotalCommits = cmp.GetAheadBy(), cmp.GetBehindBy(), cmp.GetTotalCommits()
			out.MergeBaseSHA = cmp.GetMergeBaseCommit().GetSHA()
			out.Commits = make([]Commit, 0, out.TotalCommits)
		}
		for _, rc := range cmp.Commits {
			out.Commits = append(out.Commits, commitFrom(rc))
		}
		if resp.NextPage == 0 || len(cmp.Commits) == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	switch out.Status {
	case "ahead", "behind", "identical", "diverged":
	default:
		return Comparison{}, fmt.Errorf("compare %s %s...%s: unknown status %q", repo, short(base), short(head), out.Status)
	}
	if len(out.Commits) != out.TotalCommits {
		return Comparison{}, fmt.Errorf("compare %s %s...%s: %d of %d commits: %w", repo, short(base), short(head),
			len(out.Commits), out.TotalCommits, ErrIncompleteComparison)
	}
	return out, nil
}

// Commit returns one commit; sha may be abbreviated.
func (c *Client) Commit(ctx context.Context, repo Repo, sha string) (Commit, error) {
	var rc *gh.RepositoryCommit
	err := c.do(ctx, EndpointCommit, resourceCore, func(ctx context.Context) (*gh.Response, error) {
		var resp *gh.Response
		var err error
		// One file per page: the enricher needs the commit, not its diff.
		rc, resp, err = c.gh.Repositories.GetCommit(ctx, repo.Owner, repo.Name, sha, &gh.ListOptions{PerPage: 1})
		if err == nil && rc.GetSHA() == "" {
			err = notGitHub(resp, "a commit without sha")
		}
		return resp, err
	})
	if err != nil {
		return Commit{}, fmt.Errorf("get commit %s@%s: %w", repo, short(sha), err)
	}
	return commitFrom(rc), nil
}

func commitFrom(rc *gh.RepositoryCommit) Commit {
	gc := rc.GetCommit()
	author := rc.GetAuthor().GetLogin()
	if author == "" {
		author = gc.GetAuthor().GetName()
	}
	title, _, _ := strings.Cut(gc.GetMessage(), "\n")
	return Commit{
		SHA:         rc.GetSHA(),
		Author:      author,
		AuthoredAt:  gc.GetAuthor().GetDate().UTC(),
		CommittedAt: gc.GetCommitter().GetDate().UTC(),
		Title:       strings.TrimSpace(title),
		Parents:     len(rc.Parents),
		Reverts:     ParseReverts(gc.GetMessage()),
	}
}

// notGitHub is the configuration fault of a 2xx JSON answer that is not GitHub's.
func notGitHub(resp *gh.Response, what string) error {
	status := 0
	if resp != nil && resp.Response != nil {
		status = resp.StatusCode
	}
	return &ConfigError{Status: status, Reason: notGitHubMsg + ": " + what, Hint: hintBaseURL}
}

// do runs one request: it refuses while a configuration fault pauses the client, waits for (or
// refuses on) a known exhausted quota, records the quota the response reports, classifies the
// error, updates the circuit and counts the call.
func (c *Client) do(ctx context.Context, endpoint, resource string, fn func(context.Context) (*gh.Response, error)) error {
	if err := c.gate(); err != nil {
		c.obs.Call(endpoint, OutcomePaused)
		return err
	}
	if err := c.wait(ctx, resource); err != nil {
		c.release()
		c.obs.Call(endpoint, OutcomeDeferred)
		return err
	}
	resp, err := fn(ctx)
	var hresp *http.Response
	if resp != nil {
		hresp = resp.Response
	}
	c.observeRate(hresp, resource)
	err = c.classify(hresp, err)
	c.settle(err)
	c.obs.Call(endpoint, outcome(hresp, err))
	return err
}

// wait blocks until the resource's known rate-limit reset when that is within MaxWait and the
// context's deadline, and otherwise returns a *RateLimitedError without sending anything.
func (c *Client) wait(ctx context.Context, resource string) error {
	c.mu.Lock()
	until, secondary := c.blocked[resource], false
	if s := c.blocked[resourceSecondary]; s.After(until) {
		until, secondary = s, true
	}
	c.mu.Unlock()
	now := c.now()
	if !until.After(now) {
		return nil
	}
	d := until.Sub(now)
	refuse := &RateLimitedError{Until: until, Secondary: secondary}
	if !secondary {
		refuse.Resource = resource
	}
	if d > c.maxWait {
		return refuse
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		return refuse
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) block(resource string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.blocked[resource]) {
		c.blocked[resource] = until
	}
}

// observeRate records X-RateLimit-Remaining and -Reset; an exhausted quota blocks the resource
// until its reset, so the next call waits or is refused without costing a request.
func (c *Client) observeRate(resp *http.Response, resource string) {
	if resp == nil {
		return
	}
	rem, err1 := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining"))
	reset, err2 := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	if r := resp.Header.Get("X-RateLimit-Resource"); r != "" {
		resource = r
	}
	at := time.Unix(reset, 0)
	c.obs.RateLimit(resource, rem, at)
	if rem == 0 {
		c.block(resource, at)
	}
}

// classify turns a go-github error into ErrNotFound, ErrForbidden, *RateLimitedError, a rejected
// request, or a retryable error (5xx, timeouts, network).
func (c *Client) classify(resp *http.Response, err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) || errors.Is(err, ErrAnswerTooLarge) {
		return err
	}
	var rle *gh.RateLimitError
	if errors.As(err, &rle) {
		until := rle.Rate.Reset.Time
		if until.IsZero() {
			until = c.now().Add(defaultSecondaryWait)
		}
		c.block(resourceCore, until)
		return &RateLimitedError{Until: until, Resource: resourceCore}
	}
	var abuse *gh.AbuseRateLimitError
	if errors.As(err, &abuse) {
		wait := defaultSecondaryWait
		if abuse.RetryAfter != nil && *abuse.RetryAfter > 0 {
			wait = *abuse.RetryAfter
		}
		until := c.now().Add(wait)
		c.block(resourceSecondary, until)
		return &RateLimitedError{Until: until, Secondary: true}
	}
	if resp == nil || resp.StatusCode < 400 {
		return err // network error, timeout, cancelled: retryable
	}
	msg := err.Error()
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Message != "" {
		msg = er.Message
	}
	switch code := resp.StatusCode; {
	case code == http.StatusForbidden || code == http.StatusTooManyRequests:
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			until := c.retryAfter(ra)
			c.block(resourceSecondary, until)
			return &RateLimitedError{Until: until, Secondary: true}
		}
		if resp.Header.Get("X-RateLimit-Remaining") == "0" {
			until := c.now().Add(defaultSecondaryWait)
			if reset, perr := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); perr == nil {
				until = time.Unix(reset, 0)
			}
			res := resp.Header.Get("X-RateLimit-Resource")
			if res == "" {
				res = resourceCore
			}
			c.block(res, until)
			return &RateLimitedError{Until: until, Resource: res}
		}
		if code == http.StatusTooManyRequests || strings.Contains(strings.ToLower(msg), "secondary rate limit") {
			until := c.now().Add(defaultSecondaryWait)
			c.block(resourceSecondary, until)
			return &RateLimitedError{Until: until, Secondary: true}
		}
		return fmt.Errorf("%w: %s", ErrForbidden, msg)
	case (code == http.StatusNotFound || code == http.StatusUnauthorized) && (er == nil || er.Message == ""):
		// GitHub's errors always carry a message: this is another server's JSON.
		return &ConfigError{Status: code, Reason: notGitHubMsg + ": an error without message", Hint: hintBaseURL}
	case code == http.StatusNotFound || code == http.StatusUnprocessableEntity || code == http.StatusGone:
		return fmt.Errorf("%w: %d %s", ErrNotFound, code, msg)
	case code == http.StatusUnavailableForLegalReasons:
		return fmt.Errorf("%w: %d %s", ErrForbidden, code, msg)
	case code == http.StatusUnauthorized:
		// A bad or expired credential stops every request: the client pauses until it works again.
		return &ConfigError{Status: code, Reason: msg, Hint: c.authHint()}
	case code >= 500 || code == http.StatusRequestTimeout:
		return fmt.Errorf("github: server error %d: %s", code, msg)
	default:
		return fmt.Errorf("%w: %d %s", ErrRejected, code, msg)
	}
}

// retryAfter is when a Retry-After header (seconds or an HTTP date) allows requests again; a
// value it cannot read asks for GitHub's minimum of a minute.
func (c *Client) retryAfter(v string) time.Time {
	now := c.now()
	v = strings.TrimSpace(v)
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return now.Add(time.Duration(secs) * time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return now.Add(defaultSecondaryWait)
}

// ErrRejected means GitHub rejected the request itself (400 and other unexpected 4xx): a bug in
// the request, not a condition that passes.
var ErrRejected = errors.New("github: request rejected")

func outcome(resp *http.Response, err error) string {
	var rl *RateLimitedError
	switch {
	case err == nil:
		return OutcomeOK
	case errors.As(err, new(*ConfigError)):
		return OutcomeConfigFault
	case errors.As(err, &rl) && rl.Secondary:
		return OutcomeSecondaryRateLimited
	case errors.As(err, &rl):
		return OutcomeRateLimited
	case errors.Is(err, ErrNotFound):
		return OutcomeNotFound
	case errors.Is(err, ErrForbidden):
		return OutcomeForbidden
	case resp != nil && resp.StatusCode >= 500:
		return OutcomeServerError
	default:
		return OutcomeError
	}
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
