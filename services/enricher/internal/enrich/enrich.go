// Package enrich turns observed deployments and incidents into enriched ones. For a deployment it
// finds its logical deployment (one change rolled out to several clusters) and whether it is the
// deployment that counts under the rollout policy; for that one it computes the exact application
// commits that reached the environment for the first time — GitHub's comparison of the last
// deployed commit with the new one, per component, environment and repository — with the pull
// request that brought each commit in; it routes the event to the global and team projects; it
// recognises GitOps reverts and infers the change failure of the deployment
// they revert; and it flags, never drops, whatever it could not establish. For an incident it
// resolves components and teams and links the last logical production deployment of the component.
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
// comparison came back incomplete, an answer was larger than the client reads, or stored state is
// corrupt. Everything else (GitHub outages, rate limits, configuration faults, store errors)
// passes with time.
func IsPermanent(err error) bool {
	return errors.Is(err, github.ErrRejected) || errors.Is(err, github.ErrIncompleteComparison) ||
		errors.Is(err, github.ErrAnswerTooLarge) || errors.Is(err, errCorruptState)
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
	// Rollout says how the deployments of one change to several clusters are grouped and counted.
	Rollout RolloutConfig
	// IncidentLinkLookback bounds how old the deployment an incident is linked to may be (default
	// 30 days); an incident after a longer quiet spell is linked to nothing, QualityLinkTooOld.
	IncidentLinkLookback time.Duration
}

// RolloutConfig is the counting policy of logical deployments (argocd.md §3.9).
type RolloutConfig struct {
	// Policy is first (default), each or all.
	Policy events.RolloutPolicy
	// Expected are, per environment, the clusters policy all waits for. An environment without
	// expected clusters is counted as under first.
	Expected map[events.Environment][]string
	// Components override Policy and Expected per component.
	Components map[string]RolloutOverride
}

// RolloutOverride is one component's rollout policy; empty fields inherit RolloutConfig's.
type RolloutOverride struct {
	Policy   events.RolloutPolicy
	Expected map[events.Environment][]string
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
	if cfg.IncidentLinkLookback <= 0 {
		cfg.IncidentLinkLookback = 30 * 24 * time.Hour
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
	Event events.DeploymentEnriched
	// Inferred are the change failures the deployment reveals: the logical deployments it reverts.
	// They are published after Event, each with its ID as Nats-Msg-Id.
	Inferred  []events.ChangeFailureInferred
	baselines map[string]baseline
	rollouts  *rolloutState
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
	// DeploymentID wrote this state; FinishedAt is that deployment's finish. LogicalID is its
	// logical deployment (Rollout.LogicalID), the one a revert of this state fails.
	DeploymentID string    `json:"deployment_id"`
	LogicalID    string    `json:"logical_id,omitempty"`
	FinishedAt   time.Time `json:"finished_at"`
	// Previous is the state before DeploymentID, so a redelivery of that deployment recomputes the
	// same answer instead of comparing the head with itself.
	Previous *baseline `json:"previous,omitempty"`
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// Deployment enriches one observed deployment. A successful deployment of a known environment is
// first placed in its logical deployment (see place): one change, by fingerprint, rolled out to
// one or more clusters. The child that stands for the change under the policy computes its commit
// set; the others ask GitHub nothing and carry no commits. The commit set, per repository the
// deployment was built from, is every commit between the component's last deployed commit in that
// environment (the baseline) and the new one:
//
//   - ahead: the commits GitHub lists for baseline...head, each with its pull request;
//   - identical: no commits (a configuration-only change, or a roll-forward);
//   - behind: a GitOps revert; no commits, QualityBehind; the baseline keeps its high-water mark, so
//     the roll-forward counts only commits never deployed before;
//   - diverged (history rewritten, or the baseline commit is gone): no commits,
//     QualityDivergedHistory; the baseline restarts at the new head;
//   - no baseline: no commits (the repository's history is not this deployment's lead time),
//     QualityFirstDeployment; the head becomes the baseline.
//
// A deployment that is behind, or whose commits revert commits an earlier logical deployment
// brought, is a rollback of that logical deployment (QualityRevert), and the plan carries a
// ChangeFailureInferred for it. Failed deployments and redeploys carry no commits and leave
// baselines alone. Deployments of one component and environment must be enriched in order: the
// handler consumes them one at a time.
func (e *Enricher) Deployment(ctx context.Context, in events.DeploymentObserved) (Plan, error) {
	out := events.DeploymentEnriched{DeploymentObserved: in, Commits: []events.Commit{}}
	var flags flagSet
	for _, f := range in.Flags {
		flags.add(f)
	}
	var hasTeam bool
	out.Routing, hasTeam = e.route([]string{in.Component}, nonEmpty(in.Team))
	if !hasTeam {
		flags.add(events.QualityNoTeam)
	}
	p := Plan{baselines: map[string]baseline{}, component: in.Component}
	done := func() (Plan, error) {
		out.Quality = flags.list()
		out.EnrichedAt = e.now().UTC()
		p.Event = out
		return p, nil
	}
	if in.Environment == events.EnvironmentUnknown {
		// No commit range: one baseline shared by unrelated unknown environments would be wrong, and
		// these deployments are excluded from DORA numbers anyway.
		flags.add(events.QualityUnknownEnvironment)
	}
	if in.Result != events.ResultSuccess || in.Environment == events.EnvironmentUnknown {
		return done()
	}
	fp := fingerprint(in, e.cfg.RepoHosts)
	if in.Kind == events.KindRedeploy {
		// Not a change: its own logical deployment, never counted, joined by nothing.
		policy, _ := e.policy(in.Component, in.Environment)
		id := events.LogicalDeploymentID(in.Component, in.Environment, in.ID)
		if policy == events.RolloutEach {
			id = in.ID
		}
		out.Rollout = &events.Rollout{LogicalID: id, Policy: policy, Fingerprint: fp, Clusters: []string{in.Cluster},
			Complete: true, StartedAt: in.StartedAt, FirstFinishedAt: in.FinishedAt}
		return done()
	}
	refs := e.appCommits(in, &flags)
	pl, err := e.place(ctx, in, fp)
	if err != nil {
		return Plan{}, err
	}
	out.Rollout = pl.rollout
	var ledger []string
	var reverted []revertedDeployment
	if pl.ranged {
		for _, ref := range refs {
			r, err := e.repoRange(ctx, in, ref.repo, ref.sha, pl.rollout.LogicalID)
			if err != nil {
				return Plan{}, err
			}
			out.Commits = append(out.Commits, r.commits...)
			if r.rng != nil {
				out.Ranges = append(out.Ranges, *r.rng)
				if r.rng.Status == events.CompareFirst {
					ledger = append(ledger, r.rng.HeadSHA)
				}
			}
			for _, f := range r.flags {
				flags.add(f)
			}
			if r.next != nil {
				p.baselines[r.key] = *r.next
			}
			if in.Kind == events.KindDeploy {
				reverted = append(reverted, e.revertsOf(r, pl.state, pl.rollout.LogicalID)...)
			}
		}
		for _, c := range out.Commits {
			ledger = append(ledger, c.SHA)
		}
	}
	pl.finish(ledger)
	if pl.store {
		p.rollouts = &pl.state
	}
	if reverted = uniqueReverted(reverted); len(reverted) > 0 {
		markReverted(&pl.state, reverted, in.ID)
		p.rollouts = &pl.state
		markRevert(&out, reverted)
		flags.add(events.QualityRevert)
		p.Inferred = inferred(out, reverted)
	}
	if in.Environment == events.EnvironmentProduction && (pl.isNew || out.Rollout.Counted) {
		l := pl.state.Rollouts[pl.idx]
		p.history = &historyEntry{ID: out.Rollout.LogicalID, FinishedAt: out.Rollout.FirstFinishedAt, Cluster: l.Children[0].Cluster, Kind: out.Kind}
	}
	return done()
}

// repoCommit is the one application commit of a repository a deployment runs.
type repoCommit struct {
	repo github.Repo
	sha  string
}

// appCommits returns the deployment's application commits that can be looked up, one per
// repository, flagging the others. A repository at several commits (old and new pods of a rolling
// update) gives none: which one the new revision deploys cannot be told (QualityAmbiguousImage).
func (e *Enricher) appCommits(in events.DeploymentObserved, flags *flagSet) []repoCommit {
	if len(in.AppCommits) == 0 {
		flags.add(events.QualityNoAppSHA)
	}
	var out []repoCommit
	ambiguous := map[string]bool{}
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
		i := slices.IndexFunc(out, func(c repoCommit) bool { return c.repo.URL() == repo.URL() })
		switch {
		case i < 0:
			out = append(out, repoCommit{repo: repo, sha: sha})
		case strings.HasPrefix(sha, out[i].sha):
			out[i].sha = sha // the same commit, abbreviated before: keep the full SHA
		case !strings.HasPrefix(out[i].sha, sha):
			ambiguous[repo.URL()] = true
		}
	}
	if len(ambiguous) > 0 {
		flags.add(events.QualityAmbiguousImage)
		out = slices.DeleteFunc(out, func(c repoCommit) bool { return ambiguous[c.repo.URL()] })
	}
	return out
}

type repoResult struct {
	key     string
	commits []events.Commit
	rng     *events.CommitRange
	flags   []events.QualityFlag
	next    *baseline // nil: unchanged
	prev    *baseline // the baseline compared with
	reverts []string  // commits the range's commits say they revert
}

func (e *Enricher) repoRange(ctx context.Context, in events.DeploymentObserved, repo github.Repo, sha, logicalID string) (repoResult, error) {
	res := repoResult{key: baselineKey(in.Component, in.Environment, repo)}
	prev, err := e.loadBaseline(ctx, res.key)
	if err != nil {
		return repoResult{}, err
	}
	if prev != nil && prev.DeploymentID == in.ID {
		prev = prev.Previous // redelivered after its state was written: answer as the first time
	}
	res.prev = prev
	next := func(head, current string) *baseline {
		b := &baseline{Component: in.Component, Environment: string(in.Environment), Repo: repo.URL(),
			Head: head, Current: current, DeploymentID: in.ID, LogicalID: logicalID, FinishedAt: in.FinishedAt}
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
	if len(sha) != 40 || prev == nil {
		// An abbreviated SHA is resolved; a first deployment's commit is checked to exist.
		c, err := e.gh.Commit(ctx, repo, sha)
		if err != nil {
			return flagged(err)
		}
		full = c.SHA
	}

	var commits []github.Commit
	switch {
	case prev == nil:
		// No earlier deployment: the head is the baseline, and no commit gets a lead time from
		// this deployment (the repository's whole history did not ship now).
		res.rng = &events.CommitRange{RepoURL: repo.URL(), HeadSHA: full, Status: events.CompareFirst}
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
		res.reverts = append(res.reverts, c.Reverts...)
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
	if p.rollouts != nil {
		key := rolloutKey(p.rollouts.Component, events.Environment(p.rollouts.Environment))
		if err := e.put(ctx, key, *p.rollouts); err != nil {
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
