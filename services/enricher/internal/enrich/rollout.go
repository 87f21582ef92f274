package enrich

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// State bounds of logical deployments.
const (
	// maxRollouts is how many recent logical deployments are kept per component and environment:
	// a cluster that deploys a change older than the last maxRollouts starts a new one.
	maxRollouts = 20
	// maxLedgerCommits bounds the commits remembered per logical deployment for revert detection
	// (the newest are kept).
	maxLedgerCommits = 250
)

// rolloutState is the recent logical deployments of one component in one environment: the changes
// (by fingerprint) and the clusters each reached, in the order they started.
type rolloutState struct {
	Component   string    `json:"component"`
	Environment string    `json:"environment"`
	Rollouts    []logical `json:"rollouts"` // oldest first, at most maxRollouts
	// LastID is the deployment that wrote this state and Evicted the logical deployments its write
	// dropped, so that its redelivery sees the state before it (see before).
	LastID  string    `json:"last_id,omitempty"`
	Evicted []logical `json:"evicted,omitempty"`
}

// logical is one logical deployment: one change rolled out to one or more clusters.
type logical struct {
	ID              string    `json:"id"`
	Fingerprint     string    `json:"fingerprint"`
	Children        []child   `json:"children"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	FirstFinishedAt time.Time `json:"first_finished_at"`
	// RangeID is the child that computed the logical deployment's commit range, and CountedAt its
	// finish; Commits are the SHAs that range first brought to the environment (its head too on a
	// first deployment), for revert detection.
	RangeID   string    `json:"range_id,omitempty"`
	CountedAt time.Time `json:"counted_at,omitzero"`
	Commits   []string  `json:"commits,omitempty"`
	// RevertedBy is the deployment that reverted this logical deployment: a later release that
	// carries the app-repo revert of one of its commits is then a roll-forward, not a second revert.
	RevertedBy string `json:"reverted_by,omitempty"`
}

// child is one cluster's deployment of a logical deployment.
type child struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
}

func rolloutKey(component string, env events.Environment) string {
	return "rollout." + keyToken(component) + "." + keyToken(string(env))
}

func (l logical) clusters() []string {
	out := make([]string, len(l.Children))
	for i, c := range l.Children {
		out[i] = c.Cluster
	}
	return out
}

func (l logical) has(cluster string) bool {
	return slices.ContainsFunc(l.Children, func(c child) bool { return c.Cluster == cluster })
}

// covers reports whether the logical deployment reached every expected cluster.
func (l logical) covers(expected []string) bool {
	for _, c := range expected {
		if !l.has(c) {
			return false
		}
	}
	return true
}

// before returns the state as it was before deployment id was applied: a redelivery of the last
// deployment (state applied, event not yet marked processed) is computed as the first time.
func (s rolloutState) before(id string) rolloutState {
	out := rolloutState{Component: s.Component, Environment: s.Environment}
	if s.LastID == id {
		out.Rollouts = append(out.Rollouts, s.Evicted...)
	}
	out.Rollouts = append(out.Rollouts, s.Rollouts...)
	for i := range out.Rollouts {
		if out.Rollouts[i].RevertedBy == id {
			out.Rollouts[i].RevertedBy = "" // its own write, undone for the redelivery
		}
	}
	for i := range out.Rollouts {
		l := &out.Rollouts[i]
		j := slices.IndexFunc(l.Children, func(c child) bool { return c.ID == id })
		if j < 0 {
			continue
		}
		l.Children = slices.Clone(l.Children[:j])
		if l.RangeID == id {
			l.RangeID, l.CountedAt, l.Commits = "", time.Time{}, nil
		}
		if len(l.Children) == 0 {
			out.Rollouts = slices.Delete(out.Rollouts, i, i+1)
		}
		break
	}
	return out
}

// deployedBy returns the logical deployment that first brought commit sha (full or abbreviated)
// to the environment, newest first.
func (s rolloutState) deployedBy(sha string) (logical, bool) {
	for i := len(s.Rollouts) - 1; i >= 0; i-- {
		l := s.Rollouts[i]
		if slices.ContainsFunc(l.Commits, func(c string) bool { return strings.HasPrefix(c, sha) }) {
			return l, true
		}
	}
	return logical{}, false
}

// policy returns the rollout policy of a component in an environment and, under all, the
// clusters it waits for. Policy all without expected clusters counts as first.
func (e *Enricher) policy(component string, env events.Environment) (events.RolloutPolicy, []string) {
	p, expected := e.cfg.Rollout.Policy, e.cfg.Rollout.Expected[env]
	if o, ok := e.cfg.Rollout.Components[component]; ok {
		if o.Policy != "" {
			p = o.Policy
		}
		if cs, ok := o.Expected[env]; ok {
			expected = cs
		}
	}
	switch {
	case p == "":
		p = events.RolloutFirst
	case p == events.RolloutAll && len(expected) == 0:
		p = events.RolloutFirst
	}
	if p != events.RolloutAll {
		expected = nil
	}
	return p, expected
}

// placement is where a deployment falls in its logical deployment, and what it must do.
type placement struct {
	state   rolloutState // the state after this deployment (written unless fingerprint is empty)
	idx     int          // the logical deployment in state.Rollouts
	isNew   bool         // the deployment started its logical deployment
	ranged  bool         // the deployment computes the logical deployment's commit range
	rollout *events.Rollout
	store   bool
}

// place puts a successful deployment (not a redeploy) of a known environment into its logical
// deployment: it joins the most recent logical deployment with the same fingerprint that its
// cluster has not deployed yet, or starts a new one. An empty fingerprint joins nothing, is not
// stored, and is counted as under first.
func (e *Enricher) place(ctx context.Context, in events.DeploymentObserved, fp string) (placement, error) {
	policy, expected := e.policy(in.Component, in.Environment)
	if fp == "" && policy == events.RolloutAll {
		// Nothing to match other clusters by: the logical deployment could never complete.
		policy, expected = events.RolloutFirst, nil
	}
	st := rolloutState{Component: in.Component, Environment: string(in.Environment)}
	if fp != "" {
		var stored rolloutState
		ok, err := e.get(ctx, rolloutKey(in.Component, in.Environment), &stored)
		if err != nil {
			return placement{}, err
		}
		if ok {
			st = stored.before(in.ID)
		}
	}
	pl := placement{idx: -1, store: fp != ""}
	for i := len(st.Rollouts) - 1; fp != "" && i >= 0; i-- {
		if l := st.Rollouts[i]; l.Fingerprint == fp && !l.has(in.Cluster) {
			pl.idx = i
			break
		}
	}
	if pl.idx < 0 {
		id := events.LogicalDeploymentID(in.Component, in.Environment, in.ID)
		if policy == events.RolloutEach {
			id = in.ID
		}
		st.Rollouts = append(st.Rollouts, logical{ID: id, Fingerprint: fp, StartedAt: in.StartedAt, FirstFinishedAt: in.FinishedAt})
		pl.idx, pl.isNew = len(st.Rollouts)-1, true
	}
	l := &st.Rollouts[pl.idx]
	wasComplete := !pl.isNew && l.covers(expected)
	l.Children = append(l.Children, child{ID: in.ID, Cluster: in.Cluster})
	r := &events.Rollout{LogicalID: l.ID, Policy: policy, Fingerprint: fp, Clusters: l.clusters(), Complete: true,
		StartedAt: l.StartedAt, FirstFinishedAt: l.FirstFinishedAt}
	switch policy {
	case events.RolloutFirst:
		r.Counted, pl.ranged = pl.isNew, pl.isNew
	case events.RolloutEach:
		// Every deployment counts as its own; the change's commits stay with its first cluster.
		r.Counted, pl.ranged = true, pl.isNew
		r.LogicalID, r.Clusters, r.StartedAt, r.FirstFinishedAt = in.ID, []string{in.Cluster}, in.StartedAt, in.FinishedAt
	case events.RolloutAll:
		r.Expected = expected
		r.Complete = l.covers(expected)
		r.Counted = r.Complete && !wasComplete
		pl.ranged = r.Counted
	}
	if pl.ranged {
		l.RangeID, l.CountedAt = in.ID, in.FinishedAt
	}
	pl.rollout = r
	st.LastID, st.Evicted = in.ID, nil
	pl.state = st
	return pl, nil
}

// finish records the commits the ranged child brought and bounds the state.
func (pl *placement) finish(commits []string) {
	st := &pl.state
	if pl.ranged {
		if n := len(commits) - maxLedgerCommits; n > 0 {
			commits = commits[n:]
		}
		st.Rollouts[pl.idx].Commits = commits
	}
	if n := len(st.Rollouts) - maxRollouts; n > 0 {
		st.Evicted = slices.Clone(st.Rollouts[:n])
		st.Rollouts = slices.Clone(st.Rollouts[n:])
		pl.idx -= n
	}
}

// fingerprint identifies a deployment's state across clusters: its application commits as sorted
// repo@sha, or, without any, its GitOps revision(s).
func fingerprint(in events.DeploymentObserved, hosts []string) string {
	var parts []string
	for _, ref := range in.AppCommits {
		repo := strings.TrimSpace(ref.RepoURL)
		if r, err := github.ParseRepoURL(ref.RepoURL, hosts); err == nil {
			repo = r.URL()
		}
		parts = append(parts, repo+"@"+strings.ToLower(strings.TrimSpace(ref.SHA)))
	}
	if len(parts) > 0 {
		slices.Sort(parts)
		return strings.Join(slices.Compact(parts), ",")
	}
	if in.Revision != "" {
		return in.Revision
	}
	return strings.Join(in.Revisions, ",")
}
