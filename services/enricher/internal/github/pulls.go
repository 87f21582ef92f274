package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v60/github"
)

// PullRequest is the merged pull request that brought a commit into the repository.
type PullRequest struct {
	Number    int       `json:"number"`
	URL       string    `json:"url,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	MergedAt  time.Time `json:"merged_at"`
	// FirstCommitAt is the earliest author date among the pull request's first 100 commits: where
	// the lead time of a squash or rebase merge starts.
	FirstCommitAt time.Time `json:"first_commit_at,omitzero"`
}

// PullRequestBatch is the number of commits asked about in one GraphQL query. Each commit asks
// for up to 5 pull requests with up to 100 commits each: 50 × 5 × 100 = 25,000 nodes, well inside
// GitHub's 500,000-node limit, at a cost of about 3 points.
const PullRequestBatch = 50

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// PullRequests returns, for each commit, the merged pull request that brought it in, or nil when
// none did (a direct push). It asks GitHub's GraphQL API about up to PullRequestBatch commits per
// request; the REST equivalent (GET commits/{sha}/pulls, then the pull request's commits) costs
// two requests per commit. SHAs must be full 40-hex SHAs. A commit GitHub does not know maps to nil.
func (c *Client) PullRequests(ctx context.Context, repo Repo, shas []string) (map[string]*PullRequest, error) {
	out := make(map[string]*PullRequest, len(shas))
	for start := 0; start < len(shas); start += PullRequestBatch {
		batch := shas[start:min(start+PullRequestBatch, len(shas))]
		if err := c.pullRequestBatch(ctx, repo, batch, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *Client) pullRequestBatch(ctx context.Context, repo Repo, shas []string, out map[string]*PullRequest) error {
	var q strings.Builder
	q.WriteString("query($owner: String!, $name: String!) {\n  rateLimit { remaining resetAt }\n  repository(owner: $owner, name: $name) {\n")
	for i, sha := range shas {
		if !fullSHA.MatchString(sha) {
			return fmt.Errorf("pull requests of %s: %q is not a full lower-case SHA", repo, sha)
		}
		fmt.Fprintf(&q, "    c%d: object(oid: %q) { ... on Commit { %s } }\n", i, sha, prFields)
	}
	q.WriteString("  }\n}\n")
	body := graphqlRequest{Query: q.String(), Variables: map[string]string{"owner": repo.Owner, "name": repo.Name}}

	var res graphqlResponse
	err := c.do(ctx, EndpointPullRequests, resourceGraphQL, func(ctx context.Context) (*gh.Response, error) {
		req, err := c.gh.NewRequest(http.MethodPost, c.graphqlURL, body)
		if err != nil {
			return nil, err
		}
		resp, err := c.gh.Do(ctx, req, &res)
		if err == nil {
			// GraphQL reports most failures with HTTP 200.
			err = c.graphqlErrors(res)
		}
		return resp, err
	})
	if err != nil {
		return fmt.Errorf("pull requests of %d commits in %s: %w", len(shas), repo, err)
	}
	if res.Data.Repository == nil {
		return fmt.Errorf("pull requests of %d commits in %s: %w: no repository in the answer", len(shas), repo, ErrNotFound)
	}
	for i, sha := range shas {
		var obj *graphqlCommit
		if raw, ok := res.Data.Repository["c"+strconv.Itoa(i)]; ok && len(raw) > 0 && string(raw) != "null" {
			obj = &graphqlCommit{}
			if err := json.Unmarshal(raw, obj); err != nil {
				return fmt.Errorf("pull requests in %s: decode commit %s: %w", repo, short(sha), err)
			}
		}
		out[sha] = obj.mergedPullRequest()
	}
	return nil
}

const prFields = `associatedPullRequests(first: 5) { nodes { number url createdAt mergedAt merged commits(first: 100) { nodes { commit { authoredDate } } } } }`

type graphqlRequest struct {
	Query     string            `json:"query"`
	Variables map[string]string `json:"variables"`
}

type graphqlResponse struct {
	Data struct {
		RateLimit *struct {
			Remaining int       `json:"remaining"`
			ResetAt   time.Time `json:"resetAt"`
		} `json:"rateLimit"`
		Repository map[string]json.RawMessage `json:"repository"`
	} `json:"data"`
	Errors []graphqlError `json:"errors"`
}

type graphqlError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Path    []any  `json:"path"`
}

type graphqlCommit struct {
	AssociatedPullRequests struct {
		Nodes []struct {
			Number    int       `json:"number"`
			URL       string    `json:"url"`
			CreatedAt time.Time `json:"createdAt"`
			MergedAt  time.Time `json:"mergedAt"`
			Merged    bool      `json:"merged"`
			Commits   struct {
				Nodes []struct {
					Commit struct {
						AuthoredDate time.Time `json:"authoredDate"`
					} `json:"commit"`
				} `json:"nodes"`
			} `json:"commits"`
		} `json:"nodes"`
	} `json:"associatedPullRequests"`
}

// mergedPullRequest picks the pull request that brought the commit in: the earliest merged one.
// Open or closed-unmerged pull requests that contain the commit did not bring it anywhere.
func (g *graphqlCommit) mergedPullRequest() *PullRequest {
	if g == nil {
		return nil
	}
	var best *PullRequest
	for _, n := range g.AssociatedPullRequests.Nodes {
		if !n.Merged || n.MergedAt.IsZero() {
			continue
		}
		if best != nil && !n.MergedAt.Before(best.MergedAt) {
			continue
		}
		pr := &PullRequest{Number: n.Number, URL: n.URL, CreatedAt: n.CreatedAt.UTC(), MergedAt: n.MergedAt.UTC()}
		for _, cn := range n.Commits.Nodes {
			if t := cn.Commit.AuthoredDate; !t.IsZero() && (pr.FirstCommitAt.IsZero() || t.Before(pr.FirstCommitAt)) {
				pr.FirstCommitAt = t.UTC()
			}
		}
		best = pr
	}
	return best
}

// graphqlErrors classifies the errors GraphQL reports with HTTP 200: a repository that does not
// exist or cannot be seen, missing permission, or an exhausted quota. Errors on a single commit
// (NOT_FOUND on c<i>) leave that commit without a pull request.
func (c *Client) graphqlErrors(res graphqlResponse) error {
	for _, e := range res.Errors {
		onCommit := len(e.Path) > 1
		switch e.Type {
		case "NOT_FOUND":
			if onCommit {
				continue
			}
			return fmt.Errorf("%w: %s", ErrNotFound, e.Message)
		case "FORBIDDEN":
			return fmt.Errorf("%w: %s", ErrForbidden, e.Message)
		case "RATE_LIMITED":
			until := c.now().Add(defaultSecondaryWait)
			if rl := res.Data.RateLimit; rl != nil && !rl.ResetAt.IsZero() {
				until = rl.ResetAt
			}
			c.block(resourceGraphQL, until)
			return &RateLimitedError{Until: until, Resource: resourceGraphQL}
		default:
			return fmt.Errorf("github: graphql error %s: %s", e.Type, e.Message)
		}
	}
	return nil
}
