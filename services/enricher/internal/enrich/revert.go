package enrich

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
)

// sourceEnricher is the Source of the change failures the enricher infers.
const sourceEnricher = "enricher"

// revertedDeployment is a logical deployment that a GitOps revert undid.
type revertedDeployment struct {
	id         string    // its LogicalID
	finishedAt time.Time // its counted child's finish
	reason     string
}

// revertsOf returns the logical deployments one repository's range reverts: the one that set the
// baseline when the new commit is behind it, and those that first brought a commit the range's
// commits say they revert ("This reverts commit <sha>."). The deployment's own logical deployment
// is never among them.
func (e *Enricher) revertsOf(r repoResult, st rolloutState, own string) []revertedDeployment {
	var out []revertedDeployment
	if r.rng != nil && r.rng.Status == events.CompareBehind && r.prev != nil && r.prev.LogicalID != "" && r.prev.LogicalID != own {
		out = append(out, revertedDeployment{id: r.prev.LogicalID, finishedAt: r.prev.FinishedAt,
			reason: fmt.Sprintf("%s deployed %s, behind %s", r.rng.RepoURL, short(r.rng.HeadSHA), short(r.rng.BaseSHA))})
	}
	for _, sha := range r.reverts {
		// A commit of a logical deployment that was already reverted (a GitOps revert took the
		// environment back before it) is no longer live: its app-repo revert undoes nothing.
		if l, ok := st.deployedBy(sha); ok && l.ID != own && l.RevertedBy == "" {
			out = append(out, revertedDeployment{id: l.ID, finishedAt: l.CountedAt,
				reason: fmt.Sprintf("a deployed commit reverts %s@%s", r.rng.RepoURL, short(sha))})
		}
	}
	return out
}

// markReverted records in st which deployment reverted each logical deployment of rs.
func markReverted(st *rolloutState, rs []revertedDeployment, by string) {
	for _, r := range rs {
		for i := range st.Rollouts {
			if st.Rollouts[i].ID == r.id && st.Rollouts[i].RevertedBy == "" {
				st.Rollouts[i].RevertedBy = by
			}
		}
	}
}

// uniqueReverted keeps each reverted logical deployment once (its first reason), sorted by ID.
func uniqueReverted(rs []revertedDeployment) []revertedDeployment {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b revertedDeployment) int { return cmp.Compare(a.id, b.id) })
	return slices.CompactFunc(out, func(a, b revertedDeployment) bool { return a.id == b.id })
}

// markRevert makes out a rollback of the most recent logical deployment it reverts.
func markRevert(out *events.DeploymentEnriched, rs []revertedDeployment) {
	latest := rs[0]
	for _, r := range rs[1:] {
		if r.finishedAt.After(latest.finishedAt) {
			latest = r
		}
	}
	out.Kind, out.RollbackOf = events.KindRollback, latest.id
}

// inferred returns the change failure of each reverted logical deployment, detected when the
// revert finished.
func inferred(out events.DeploymentEnriched, rs []revertedDeployment) []events.ChangeFailureInferred {
	cfs := make([]events.ChangeFailureInferred, len(rs))
	for i, r := range rs {
		cfs[i] = events.ChangeFailureInferred{ChangeFailureSignal: events.ChangeFailureSignal{
			ID: events.ChangeFailureID(r.id, events.DetectionRevert, false), DeploymentID: r.id, Source: sourceEnricher,
			Instance: out.Instance, Namespace: out.Namespace, Application: out.Application, Component: out.Component,
			Environment: out.Environment, Team: out.Team, Detection: events.DetectionRevert,
			Reason:     fmt.Sprintf("reverted by %s: %s", out.ID, r.reason),
			DetectedAt: out.FinishedAt, DeploymentFinishedAt: r.finishedAt, RelatedID: out.Rollout.LogicalID,
		}}
	}
	return cfs
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
