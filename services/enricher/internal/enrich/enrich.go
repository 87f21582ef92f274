// Package enrich turns observed deployments and incidents into enriched ones. For a deployment it
// computes the exact application commits that reached the environment for the first time — GitHub's
// comparison of the last deployed commit with the new one, per component, environment and
// repository — with the pull request that brought each commit in; it routes the event to the global
// and team projects; and it flags, never drops, whatever it could not establish. For an incident it
// resolves components and teams and links the last production deployment of the component.
//
// The package holds no NATS or logging code: GitHub and the state store are small interfaces,
// implemented by internal/github and by JetStream KV in package main, and by fakes in tests.
package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// GitHub is what enrichment asks GitHub. *github.Cached implements it.
type GitHub interface {
	// Compare returns base...head with every commit, oldest first.
	Compare(ctx context.Context, repo github.Repo, base, head string) (github.Comparison, error)
	// Commit returns one commit; sha may be abbreviated.
	Commit(ctx context.Context, repo github.Repo, sha string) (github.Commit, error)
	// PullRequests returns the merged pull request of each commit, nil for none.
	PullRequests(ctx context.Context, repo github.Repo, shas []string) (map[string]*github.PullRequest, error)
}

// Store keeps the enricher's state: deployment baselines and per-component deployment history.
type Store interface {
	// Get returns the value, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
}

// ErrNotFound means the store holds no value for a key.
var ErrNotFound = errors.New("enrich: not found")

// errCorruptState means a stored value does not decode: a human must look (the key is in the error).
var errCorruptState = errors.New("enrich: stored state does not decode")

// IsPermanent reports whether retrying err cannot help: GitHub rejected the request itself, a
// comparison came back incomplete, or stored state is corrupt. Everything else (GitHub outages,
// rate limits, store errors) passes with time.
func IsPermanent(err error) bool {
	return errors.Is(err, github.ErrRejected) || errors.Is(err, github.ErrIncompleteComparison) ||
		errors.Is(err, errCorruptState)
}

// Config is the enrichment's behaviour.
type Config struct {
	// GlobalProjectID is the DevLake project that receives every event ("" for none).
	GlobalProjectID string
	Teams           []Team
	Products        []Product
	// RepoHosts are the web hosts of GitHub repositories (github.com, a GitHub Enterprise host).
	RepoHosts []string
	// HistoryPerComponent bounds the production deployments remembered per component for incident
	// linking (default 100).
	HistoryPerComponent int
}

// Team is a team and the components it owns.
type Team struct {
	Name       string
	ProjectID  string
	Components []string
}

// Product maps an incident product name to components and teams.
type Product struct {
	Name       string
	Components []string
	Teams      []string
}

// Enricher enriches deployments and incidents. It is safe for concurrent use; deployments of one
// component and environment must be enriched in order (see Deployment).
type Enricher struct {
	cfg   Config
	gh    GitHub
	state Store
	now   func() time.Time
}

// New returns an Enricher. now is the clock for EnrichedAt (time.Now when nil).
func New(cfg Config, gh GitHub, state Store, now func() time.Time) *Enricher {
	if cfg.HistoryPerComponent <= 0 {
		cfg.HistoryPerComponent = 100
	}
	if len(cfg.RepoHosts) == 0 {
		cfg.RepoHosts = []string{"github.com"}
	}
	if now == nil {
		now = time.Now
	}
	return &Enricher{cfg: cfg, gh: gh, state: state, now: now}
}

// Plan is an enriched deployment plus the state its publication commits. Apply may run before or
// after the event is published: a redelivery of a deployment whose state was applied recomputes
// the same event (each baseline keeps the state before the deployment that wrote it, and history
// entries are recorded once).
type Plan struct {
	Event     events.DeploymentEnriched
	baselines map[string]baseline
	history   *historyEntry
	component string
}

// baseline is what one component in one environment last deployed from one repository.
type baseline struct {
	Component   string `json:"component"`
	Environment string `json:"environment"`
	Repo        string `json:"repo"`
	// Head is the furthest commit ever deployed (the high-water mark): new commits are counted from
	// it, so a roll-forward after a rollback does not count the same commits twice.
	Head string `json:"head"`
	// Current is the commit running now; it differs from Head after a rollback.
	Current string `json:"current"`
	// DeploymentID wrote this state; FinishedAt is that deployment's finish.
	DeploymentID string    `json:"deployment_id"`
	FinishedAt   time.Time `json:"finished_at"`
	// Previous is the state before DeploymentID, so a redelivery of that deployment recomputes the
	// same answer instead of comparing the head with itself.
	Previous *baseline `json:"previous,omitempty"`
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// Deployment enriches one observed deployment. The commit set of a successful deployment, per
// repository it was built from, is every commit between the component's last deployed commit in
// that environment (the baseline) and the new one:
//
//   - ahead: the commits GitHub lists for baseline...head, each with its pull request;
//   - identical: no commits (a configuration-only change, or a second cluster of the same revision);
//   - behind: a rollback; no commits, QualityBehind; the baseline keeps its high-water mark, so the
//     roll-forward counts only commits never deployed before;
//   - diverged (history rewritten, or the baseline commit is gone): no commits,
//     QualityDivergedHistory; the baseline restarts at the new head;
//   - no baseline: the head commit only, QualityFirstDeployment.
//
// Failed deployments and redeploys carry no commits and leave baselines alone. Deployments of one
// component and environment must be enriched in order: the handler consumes them one at a time.
func (e *Enricher) Deployment(ctx context.Context, in events.DeploymentObserved) (Plan, error) {
	out := events.DeploymentEnriched{DeploymentObserved: in, Commits: []events.Commit{}}
	var flags flagSet
	var hasTeam bool
	out.Routing, hasTeam = e.route([]string{in.Component}, nonEmpty(in.Team))
	if !hasTeam {
		flags.add(events.QualityNoTeam)
	}
	p := Plan{baselines: map[string]baseline{}, component: in.Component}
	if in.Result == events.ResultSuccess && in.Environment == events.EnvironmentProduction && in.Kind != events.KindRedeploy {
		p.history = &historyEntry{ID: in.ID, FinishedAt: in.FinishedAt, Cluster: in.Cluster, Kind: in.Kind}
	}
	if in.Environment == events.EnvironmentUnknown {
		// No commit range: one baseline shared by unrelated unknown environments would be wrong, and
		// these deployments are excluded from DORA numbers anyway.
		flags.add(events.QualityUnknownEnvironment)
	}
	if in.Result != events.ResultSuccess || in.Kind == events.KindRedeploy || in.Environment == events.EnvironmentUnknown {
		out.Quality = flags.list()
		out.EnrichedAt = e.now().UTC()
		p.Event = out
		return p, nil
	}
	if len(in.AppCommits) == 0 {
		flags.add(events.QualityNoAppSHA)
	}
	seen := map[string]bool{}
	for _, ref := range in.AppCommits {
		sha := strings.ToLower(strings.TrimSpace(ref.SHA))
		if !hexSHA.MatchString(sha) {
			flags.add(events.QualityNoAppSHA)
			continue
		}
		repo, err := github.ParseRepoURL(ref.RepoURL, e.cfg.RepoHosts)
		if err != nil {
			flags.add(events.QualityUnknownRepo)
			continue
		}
		// One range per repository: images built from one repository at one commit are one change.
		if seen[repo.URL()] {
			continue
		}
		seen[repo.URL()] = true
		r, err := e.repoRange(ctx, in, repo, sha)
		if err != nil {
			return Plan{}, err
		}
		out.Commits = append(out.Commits, r.commits...)
		if r.rng != nil {
			out.Ranges = append(out.Ranges, *r.rng)
		}
		for _, f := range r.flags {
			flags.add(f)
		}
		if r.next != nil {
			p.baselines[r.key] = *r.next
		}
	}
	out.Quality = flags.list()
	out.EnrichedAt = e.now().UTC()
	p.Event = out
	return p, nil
}

type repoResult struct {
	key     string
	commits []events.Commit
	rng     *events.CommitRange
	flags   []events.QualityFlag
	next    *baseline // nil: unchanged
}

func (e *Enricher) repoRange(ctx context.Context, in events.DeploymentObserved, repo github.Repo, sha string) (repoResult, error) {
	res := repoResult{key: baselineKey(in.Component, in.Environment, repo)}
	prev, err := e.loadBaseline(ctx, res.key)
	if err != nil {
		return repoResult{}, err
	}
	if prev != nil && prev.DeploymentID == in.ID {
		prev = prev.Previous // redelivered after its state was written: answer as the first time
	}
	next := func(head, current string) *baseline {
		b := &baseline{Component: in.Component, Environment: string(in.Environment), Repo: repo.URL(),
			Head: head, Current: current, DeploymentID: in.ID, FinishedAt: in.FinishedAt}
		if prev != nil {
			p := *prev
			p.Previous = nil
			b.Previous = &p
		}
		return b
	}
	flagged := func(err error) (repoResult, error) {
		if f, ok := githubFlag(err); ok {
			res.flags = append(res.flags, f)
			return res, nil
		}
		return repoResult{}, err
	}

	full := sha
	var headCommit *github.Commit
	if len(sha) != 40 || prev == nil {
		c, err := e.gh.Commit(ctx, repo, sha)
		if err != nil {
			return flagged(err)
		}
		full, headCommit = c.SHA, &c
	}

	var commits []github.Commit
	switch {
	case prev == nil:
		commits = []github.Commit{*headCommit}
		res.rng = &events.CommitRange{RepoURL: repo.URL(), HeadSHA: full, Status: events.CompareFirst, Commits: 1}
		res.flags = append(res.flags, events.QualityFirstDeployment)
		res.next = next(full, full)
	case prev.Head == full:
		res.rng = &events.CommitRange{RepoURL: repo.URL(), BaseSHA: full, HeadSHA: full, Status: events.CompareIdentical}
		res.next = next(full, full)
	default:
		cmp, err := e.gh.Compare(ctx, repo, prev.Head, full)
		if errors.Is(err, github.ErrNotFound) {
			// The baseline commit may be gone (force push, then garbage collection) while the new
			// head exists: history was rewritten. If the head is missing too, the repository is.
			if _, herr := e.gh.Commit(ctx, repo, full); herr != nil {
				return flagged(herr)
			}
			cmp = github.Comparison{Status: string(events.CompareDiverged)}
		} else if err != nil {
			return flagged(err)
		}
		rng := &events.CommitRange{RepoURL: repo.URL(), BaseSHA: prev.Head, HeadSHA: full, Status: events.CompareStatus(cmp.Status)}
		res.rng = rng
		switch events.CompareStatus(cmp.Status) {
		case events.CompareAhead:
			commits = cmp.Commits
			rng.Commits = len(commits)
			res.next = next(full, full)
		case events.CompareIdentical:
			res.next = next(full, full)
		case events.CompareBehind:
			res.flags = append(res.flags, events.QualityBehind)
			res.next = next(prev.Head, full)
		case events.CompareDiverged:
			res.flags = append(res.flags, events.QualityDivergedHistory)
			res.next = next(full, full)
		}
	}
	if len(commits) == 0 {
		return res, nil
	}
	shas := make([]string, len(commits))
	for i, c := range commits {
		shas[i] = c.SHA
	}
	prs, err := e.gh.PullRequests(ctx, repo, shas)
	if f, ok := githubFlag(err); ok {
		// The commits stand; only their pull requests are unknown.
		res.flags = append(res.flags, f)
		prs = nil
	} else if err != nil {
		return repoResult{}, err
	}
	res.commits = make([]events.Commit, len(commits))
	for i, c := range commits {
		res.commits[i] = events.Commit{SHA: c.SHA, RepoURL: repo.URL(), Author: c.Author,
			AuthoredAt: c.AuthoredAt, CommittedAt: c.CommittedAt, Title: c.Title}
		if pr := prs[c.SHA]; pr != nil {
			res.commits[i].PullRequest = &events.PullRequest{Number: pr.Number, URL: pr.URL, CreatedAt: pr.CreatedAt,
				MergedAt: pr.MergedAt, FirstCommitAt: pr.FirstCommitAt}
		}
	}
	return res, nil
}

// githubFlag maps the GitHub answers that retrying cannot change to data-quality flags.
func githubFlag(err error) (events.QualityFlag, bool) {
	switch {
	case errors.Is(err, github.ErrNotFound):
		return events.QualityRepoNotFound, true
	case errors.Is(err, github.ErrForbidden):
		return events.QualityRepoForbidden, true
	}
	return "", false
}

// Apply commits a plan's state: the new baselines, and the deployment in its component's
// production history. It is idempotent.
func (e *Enricher) Apply(ctx context.Context, p Plan) error {
	keys := make([]string, 0, len(p.baselines))
	for k := range p.baselines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := e.put(ctx, k, p.baselines[k]); err != nil {
			return err
		}
	}
	if p.history != nil {
		return e.recordProduction(ctx, p.component, *p.history)
	}
	return nil
}

func (e *Enricher) loadBaseline(ctx context.Context, key string) (*baseline, error) {
	var b baseline
	ok, err := e.get(ctx, key, &b)
	if err != nil || !ok {
		return nil, err
	}
	return &b, nil
}

func (e *Enricher) get(ctx context.Context, key string, v any) (bool, error) {
	raw, err := e.state.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read state %s: %w", key, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%w: %s: %w", errCorruptState, key, err)
	}
	return true, nil
}

func (e *Enricher) put(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode state %s: %w", key, err)
	}
	if err := e.state.Put(ctx, key, raw); err != nil {
		return fmt.Errorf("write state %s: %w", key, err)
	}
	return nil
}

// baselineKey is baseline.<component>.<environment>.<host>.<owner>.<repo>, each a KV-safe token.
func baselineKey(component string, env events.Environment, repo github.Repo) string {
	return "baseline." + keyToken(component) + "." + keyToken(string(env)) + "." + hostToken(repo.Host) + "." +
		keyToken(repo.Owner) + "." + keyToken(repo.Name)
}

// keyToken returns s when it is made of [a-z0-9_-] only, else "=" + its hex encoding ("=" never
// appears in a plain token, so the two cannot collide).
func keyToken(s string) string {
	if s == "" {
		return "_"
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return fmt.Sprintf("=%x", s)
		}
	}
	return s
}

// hostToken writes a DNS host name with '_' for '.', which host names cannot contain: github_com.
func hostToken(host string) string {
	for _, r := range host {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '.' {
			return keyToken(host)
		}
	}
	return keyToken(strings.ReplaceAll(host, ".", "_"))
}

// flagSet keeps quality flags once each, in the order first raised.
type flagSet struct{ flags []events.QualityFlag }

func (s *flagSet) add(f events.QualityFlag) {
	if !slices.Contains(s.flags, f) {
		s.flags = append(s.flags, f)
	}
}

func (s *flagSet) list() []events.QualityFlag { return s.flags }

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
