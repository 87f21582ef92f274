package sink

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

// Reasons a deployment or incident is not posted at all (the skipped metric's reason label).
const (
	SkipUnknownEnvironment = "unknown_environment"
	SkipRedeploy           = "redeploy"
	SkipNoCommits          = "no_commits"
	SkipNoTargets          = "no_targets"
	// SkipRolloutChild: a cluster's deployment of a logical deployment that another child stands
	// for (Rollout.Counted false); DevLake receives the logical deployment once.
	SkipRolloutChild = "rollout_child"
)

// maxIDLen bounds deployment ids: DevLake's commit row id appends ~70 characters to it and the
// column holds 255.
const maxIDLen = 150

// DeploymentID is the DevLake deployment id of an event on a connection:
// doraflow/<connection>/<event id>. DevLake does not namespace cicd_deployments ids by connection,
// so the connection is part of it; it is a pure function of the event, so a replay writes the same
// row. An event id that would make it too long, or that holds unexpected characters, is hashed.
func DeploymentID(eventID string, conn uint64) string {
	id := fmt.Sprintf("doraflow/%d/%s", conn, eventID)
	if len(id) <= maxIDLen && safeID(eventID) {
		return id
	}
	sum := sha256.Sum256([]byte(eventID))
	return fmt.Sprintf("doraflow/%d/h-%s", conn, hex.EncodeToString(sum[:16]))
}

func safeID(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

var environments = map[events.Environment]string{
	events.EnvironmentProduction:  devlake.EnvProduction,
	events.EnvironmentStaging:     devlake.EnvStaging,
	events.EnvironmentTesting:     devlake.EnvTesting,
	events.EnvironmentDevelopment: devlake.EnvDevelopment,
}

// DeploymentCommits selects the commits a deployment is posted with: the deployed head commit of
// each repository, with a canonical repoUrl and a 40-hex SHA. DevLake wants the deployed state per
// repository (it diffs consecutive deployments itself); the commits an enricher found in between
// travel in the event for doraflow's own lead time. In order of preference:
//
//  1. the head of each commit range the enricher computed;
//  2. the application commits the source observed (failed deployments carry no ranges);
//  3. when gitops is true, the GitOps revision of each source that is a commit.
//
// The selection is a pure function of the event, so the commit set of a deployment id never changes.
func DeploymentCommits(ev events.DeploymentEnriched, gitops bool) []devlake.DeploymentCommit {
	titles := map[string]string{}
	for _, c := range ev.Commits {
		titles[strings.ToLower(c.SHA)] = c.Title
	}
	var out []devlake.DeploymentCommit
	seen := map[string]bool{}
	add := func(repo, sha, ref string) {
		url, err := devlake.CanonicalRepoURL(repo)
		sha = strings.ToLower(strings.TrimSpace(sha))
		if err != nil || !devlake.IsCommitSHA(sha) || seen[url+"@"+sha] {
			return
		}
		seen[url+"@"+sha] = true
		out = append(out, devlake.DeploymentCommit{RepoURL: url, CommitSha: sha, RefName: ref, CommitMsg: titles[sha]})
	}
	for _, r := range ev.Ranges {
		add(r.RepoURL, r.HeadSHA, "")
	}
	if len(out) == 0 {
		for _, c := range ev.AppCommits {
			add(c.RepoURL, c.SHA, "")
		}
	}
	if len(out) == 0 && gitops {
		switch {
		case len(ev.Revisions) > 0:
			for i, rev := range ev.Revisions {
				if i < len(ev.Sources) {
					add(ev.Sources[i].RepoURL, rev, gitRef(ev.Sources[i].TargetRevision))
				}
			}
		case ev.Revision != "" && len(ev.Sources) > 0:
			add(ev.Sources[0].RepoURL, ev.Revision, gitRef(ev.Sources[0].TargetRevision))
		}
	}
	return out
}

// gitRef keeps a target revision that names a branch or tag; a SHA or HEAD says nothing more.
func gitRef(target string) string {
	if target == "" || strings.EqualFold(target, "HEAD") || devlake.IsCommitSHA(target) {
		return ""
	}
	return target
}

// LogicalID is the id a deployment is posted and recorded under: its logical deployment's
// (Rollout.LogicalID), or its own when it has no Rollout. Under policy each the two are equal.
func LogicalID(ev events.DeploymentEnriched) string {
	if ev.Rollout != nil && ev.Rollout.LogicalID != "" {
		return ev.Rollout.LogicalID
	}
	return ev.ID
}

// BuildDeployment returns the complete body posted for a deployment on a connection, or the reason
// it is not posted. Dates are UTC seconds; result is set at the top level and on every commit.
//
// A deployment that is one cluster's child of a logical deployment is posted only when it is the
// counted child, under the logical id, from the logical deployment's start (the first child's) to
// its own finish, with its commits (the logical deployment's).
func BuildDeployment(ev events.DeploymentEnriched, conn uint64, gitops bool) (devlake.Deployment, string) {
	env, ok := environments[ev.Environment]
	if !ok {
		return devlake.Deployment{}, SkipUnknownEnvironment
	}
	if ev.Kind == events.KindRedeploy {
		return devlake.Deployment{}, SkipRedeploy
	}
	if ev.Rollout != nil && !ev.Rollout.Counted {
		return devlake.Deployment{}, SkipRolloutChild
	}
	commits := DeploymentCommits(ev, gitops)
	if len(commits) == 0 {
		return devlake.Deployment{}, SkipNoCommits
	}
	result := devlake.ResultSuccess
	if ev.Result != events.ResultSuccess {
		result = devlake.ResultFailure
	}
	started := ev.StartedAt
	if ev.Rollout != nil && !ev.Rollout.StartedAt.IsZero() {
		started = ev.Rollout.StartedAt
	}
	if started.IsZero() && ev.ArgoCD != nil {
		started = ev.ArgoCD.OperationStartedAt
	}
	if started.IsZero() || started.After(ev.FinishedAt) {
		started = ev.FinishedAt
	}
	origEnv := ev.OriginalEnvironment
	if origEnv == "" {
		origEnv = string(ev.Environment)
	}
	for i := range commits {
		commits[i].Result = result
		commits[i].Status = devlake.StatusDone
		commits[i].StartedDate = devlake.At(started)
		commits[i].FinishedDate = devlake.At(ev.FinishedAt)
	}
	title := displayTitle(ev, origEnv)
	return devlake.Deployment{
		ID:                  DeploymentID(LogicalID(ev), conn),
		DisplayTitle:        title,
		Name:                title,
		Result:              result,
		Environment:         env,
		OriginalEnvironment: origEnv,
		CreatedDate:         devlake.At(started),
		StartedDate:         devlake.At(started),
		FinishedDate:        devlake.At(ev.FinishedAt),
		DeploymentCommits:   commits,
	}, ""
}

// displayTitle reads like "checkout-api deploy #318 to production on prod-eu-west-1".
func displayTitle(ev events.DeploymentEnriched, env string) string {
	var b strings.Builder
	b.WriteString(ev.Component)
	b.WriteString(" ")
	b.WriteString(string(ev.Kind))
	if ev.Result != events.ResultSuccess {
		b.WriteString(" (failed)")
	}
	if ev.ArgoCD != nil && ev.ArgoCD.HistoryID > 0 {
		fmt.Fprintf(&b, " #%d", ev.ArgoCD.HistoryID)
	}
	b.WriteString(" to ")
	b.WriteString(env)
	if ev.Cluster != "" {
		b.WriteString(" on ")
		b.WriteString(ev.Cluster)
	}
	s := b.String()
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// BuildIssue returns the complete incident posted to every connection: type INCIDENT, DONE when
// resolved (with its resolution date) and IN_PROGRESS otherwise, and the raw status kept in
// originalStatus. A re-open is posted without a resolution date, which clears DevLake's.
func BuildIssue(ev events.IncidentEnriched) devlake.Issue {
	status := devlake.StatusInProgress
	if ev.Resolved {
		status = devlake.StatusDone
	}
	orig := strings.ToLower(strings.TrimSpace(ev.Status))
	if orig == "" {
		orig = "unknown"
	}
	component := ev.Component
	if component == "" && len(ev.Components) > 0 {
		component = ev.Components[0]
	}
	if component == "" && len(ev.Products) > 0 {
		component = ev.Products[0]
	}
	url := ev.URL
	if len(url) > 255 {
		url = "" // DevLake's column holds 255; a cut URL would be wrong
	}
	is := devlake.Issue{
		IssueKey:       ev.Key,
		Type:           devlake.IssueTypeIncident,
		Title:          ev.Title,
		Description:    ev.Description,
		Status:         status,
		OriginalStatus: orig,
		Severity:       ev.Severity,
		Component:      component,
		URL:            url,
		CreatedDate:    devlake.At(ev.CreatedAt),
		UpdatedDate:    devlake.At(ev.UpdatedAt),
	}
	if ev.Resolved {
		is.ResolutionDate = devlake.At(ev.ResolvedAt)
	}
	return is
}

// PullRequestPost is one pull request posted for a deployment, with its canonical repository (the
// pull request key alone identifies a DevLake row on a connection, so the ledger keeps the repository).
type PullRequestPost struct {
	Repo string
	Body devlake.PullRequest
}

// BuildPullRequests returns the merged pull requests of a posted successful deployment's commits,
// for DevLake's change lead time (project_pr_metrics): one per (repository, number), ordered by
// repository and number. A pull request's merge commit is the one DevLake links to a deployment:
// the deployed head of its repository when that commit belongs to the pull request (a squash
// merge, or the head of a merge), else its latest commit (by commit time, then order). Pull
// requests without a merge time are left out: DevLake ignores them.
//
// With firstCommit, createdDate is the pull request's first commit when that is earlier than its
// creation. The webhook cannot write pull_request_commits, so DevLake's coding time (first commit →
// created) is always empty and its cycle time would start at the creation; starting createdDate at
// the first commit makes DevLake's cycle time span first commit → deployment, doraflow's lead time.
func BuildPullRequests(ev events.DeploymentEnriched, conn uint64, posted devlake.Deployment, firstCommit bool) []PullRequestPost {
	if posted.Result != devlake.ResultSuccess {
		return nil
	}
	heads := map[string]bool{}
	for _, c := range posted.DeploymentCommits {
		heads[c.RepoURL+"@"+c.CommitSha] = true
	}
	type group struct {
		repo  string
		pr    events.PullRequest
		merge events.Commit
		head  bool
	}
	groups := map[string]*group{}
	for _, c := range ev.Commits {
		repo, err := devlake.CanonicalRepoURL(c.RepoURL)
		sha := strings.ToLower(c.SHA)
		if err != nil || c.PullRequest == nil || c.PullRequest.Number <= 0 || c.PullRequest.MergedAt.IsZero() || !devlake.IsCommitSHA(sha) {
			continue
		}
		key := fmt.Sprintf("%s#%d", repo, c.PullRequest.Number)
		g, seen := groups[key]
		isHead := heads[repo+"@"+sha]
		switch {
		case !seen:
			groups[key] = &group{repo: repo, pr: *c.PullRequest, merge: c, head: isHead}
		case g.head:
		case isHead || !c.CommittedAt.Before(g.merge.CommittedAt):
			g.merge, g.head = c, isHead
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := groups[keys[i]], groups[keys[j]]
		if a.repo != b.repo {
			return a.repo < b.repo
		}
		return a.pr.Number < b.pr.Number
	})
	out := make([]PullRequestPost, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		url := g.pr.URL
		if url == "" || len(url) > 255 {
			url = fmt.Sprintf("%s/pull/%d", g.repo, g.pr.Number)
		}
		created := g.pr.CreatedAt
		if fc := g.pr.FirstCommitAt; firstCommit && !fc.IsZero() && (created.IsZero() || fc.Before(created)) {
			created = fc
		}
		if created.IsZero() || created.After(g.pr.MergedAt) {
			created = g.pr.MergedAt
		}
		title := g.merge.Title
		if title == "" {
			title = fmt.Sprintf("%s#%d", strings.TrimPrefix(g.repo, "https://"), g.pr.Number)
		}
		if len(title) > 255 {
			title = title[:255]
		}
		out = append(out, PullRequestPost{Repo: g.repo, Body: devlake.PullRequest{
			ID: url, BaseRepoID: fmt.Sprintf("webhook:%d", conn), Status: devlake.PRStatusMerged,
			OriginalStatus: "merged", DisplayTitle: title, URL: url, PullRequestKey: g.pr.Number,
			CreatedDate: devlake.At(created), MergedDate: devlake.At(g.pr.MergedAt),
			MergeCommitSha: strings.ToLower(g.merge.SHA),
		}})
	}
	return out
}
