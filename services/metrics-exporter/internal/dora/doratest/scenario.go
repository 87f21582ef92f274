// Package doratest holds the golden DORA scenario shared by the dora package's tests, the service's
// restart test and the end-to-end Prometheus test: three weeks of deployments, change failures,
// rollbacks, a revert and incidents across two teams, three components and two environments. The
// expected values are worked out by hand in dora's scenario_test.go.
package doratest

import (
	"crypto/sha1" //nolint:gosec // test commit SHAs, not security
	"encoding/hex"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
)

// Now is when the scenario is evaluated: the windows end here.
var Now = time.Date(2026, 3, 22, 0, 0, 0, 0, time.UTC)

// Mar returns a time on a day of March 2026, UTC.
func Mar(day, hour, minute int) time.Time {
	return time.Date(2026, 3, day, hour, minute, 0, 0, time.UTC)
}

// Feb returns a time on a day of February 2026, UTC.
func Feb(day, hour int) time.Time { return time.Date(2026, 2, day, hour, 0, 0, 0, time.UTC) }

// SHA returns a stable 40-hex commit SHA for a commit name.
func SHA(name string) string {
	h := sha1.Sum([]byte(name)) //nolint:gosec // test data
	return hex.EncodeToString(h[:])
}

const repo = "https://github.com/example-org/"

// Commit is a commit of repo committed at t.
func Commit(name, repoName string, committed time.Time) events.Commit {
	return events.Commit{SHA: SHA(name), RepoURL: repo + repoName, CommittedAt: committed, AuthoredAt: committed, Title: name}
}

// SquashCommit is a squash-merged commit: its commit time is the merge, its pull request's first
// commit is when the work started.
func SquashCommit(name, repoName string, firstCommit, merged time.Time) events.Commit {
	c := Commit(name, repoName, merged)
	c.PullRequest = &events.PullRequest{Number: 7, CreatedAt: firstCommit, FirstCommitAt: firstCommit, MergedAt: merged}
	return c
}

// Dep describes one deployment.
type Dep struct {
	App, Component, Team string
	Env                  events.Environment
	History              int64
	Kind                 events.Kind
	Result               events.Result
	Finished             time.Time
	Commits              []events.Commit
	Quality              []events.QualityFlag
	// Cluster is the destination cluster (prod-eu when empty); Rollout places the deployment in its
	// logical deployment (nil: not grouped, as older events).
	Cluster string
	Rollout *events.Rollout
}

// ID is the deployment's ID.
func (d Dep) ID() string { return events.DeploymentID("argocd-hub", "uid-"+d.App, d.History) }

// Event returns the enriched deployment.
func (d Dep) Event() events.DeploymentEnriched {
	kind, result := d.Kind, d.Result
	if kind == "" {
		kind = events.KindDeploy
	}
	if result == "" {
		result = events.ResultSuccess
	}
	commits := d.Commits
	if commits == nil {
		commits = []events.Commit{}
	}
	cluster := d.Cluster
	if cluster == "" {
		cluster = "prod-eu"
	}
	return events.DeploymentEnriched{
		DeploymentObserved: events.DeploymentObserved{
			ID: d.ID(), Source: "argocd", Instance: "argocd-hub", Cluster: cluster, Namespace: "argocd",
			Application: d.App, Component: d.Component, Environment: d.Env, Kind: kind, Result: result,
			StartedAt: d.Finished.Add(-2 * time.Minute), FinishedAt: d.Finished, ObservedAt: d.Finished.Add(time.Minute),
		},
		Commits:    commits,
		Routing:    events.Routing{Teams: []string{d.Team}, Targets: []events.Target{{Scope: events.ScopeGlobal, ProjectID: "1"}}},
		Quality:    d.Quality,
		Rollout:    d.Rollout,
		EnrichedAt: d.Finished.Add(2 * time.Minute),
	}
}

// LogicalID is the ID the deployment is counted under: its rollout's logical ID, else its own.
func (d Dep) LogicalID() string {
	if d.Rollout != nil {
		return d.Rollout.LogicalID
	}
	return d.ID()
}

// Rollout returns the children of one change rolled out to several clusters under policy first:
// the first (counted) child is first, then the others in the order they deployed, each finished
// step after the one before. Each child is first with its App suffixed by its cluster.
func Rollout(first Dep, step time.Duration, clusters ...string) []Dep {
	logical := events.LogicalDeploymentID(first.Component, first.Env, withCluster(first, clusters[0]).ID())
	out := make([]Dep, len(clusters))
	for i, c := range clusters {
		d := withCluster(first, c)
		d.Finished = first.Finished.Add(time.Duration(i) * step)
		d.Rollout = &events.Rollout{LogicalID: logical, Policy: events.RolloutFirst, Fingerprint: "fp-" + first.App,
			Counted: i == 0, Clusters: slices.Clone(clusters[:i+1]), Complete: true,
			StartedAt: first.Finished.Add(-2 * time.Minute), FirstFinishedAt: first.Finished}
		if i > 0 {
			d.Commits = nil // only the counted child carries the logical deployment's commits
		}
		out[i] = d
	}
	return out
}

func withCluster(d Dep, cluster string) Dep {
	d.App += "-" + cluster
	d.Cluster = cluster
	return d
}

// Inferred returns the enricher's inferred revert: the logical deployment reverted is named by
// d's logical ID, the reverting one by related.
func Inferred(d Dep, detected time.Time, related string) events.ChangeFailureInferred {
	s := Signal(d, events.DetectionRevert, detected, time.Time{}, related)
	s.ID = events.ChangeFailureID(d.LogicalID(), events.DetectionRevert, false)
	s.DeploymentID, s.Source = d.LogicalID(), "enricher"
	return events.ChangeFailureInferred{ChangeFailureSignal: s}
}

// Signal returns a change-failure signal about d: detected, or recovered when recovered is set.
func Signal(d Dep, det events.Detection, detected, recovered time.Time, related string) events.ChangeFailureSignal {
	return events.ChangeFailureSignal{
		ID: events.ChangeFailureID(d.ID(), det, !recovered.IsZero()), DeploymentID: d.ID(), Source: "argocd",
		Application: d.App, Component: d.Component, Environment: d.Env, Detection: det,
		Reason: string(det) + " after deployment", DetectedAt: detected, DeploymentFinishedAt: d.Finished,
		RecoveredAt: recovered, RelatedID: related,
	}
}

// Incident describes one state of an incident.
type Incident struct {
	ID, Key, Team, Severity string
	Change                  events.IncidentChange
	Components              []string
	CausedBy                *Dep
	Created, Resolved       time.Time
	Observed                time.Time
}

// Event returns the enriched incident state.
func (i Incident) Event() events.IncidentEnriched {
	status := "investigating"
	if !i.Resolved.IsZero() {
		status = "resolved"
	}
	fp := string(i.Change) + status
	e := events.IncidentEnriched{
		IncidentObserved: events.IncidentObserved{
			ID: events.IncidentEventID("webrca", i.ID, i.Change, fp), Source: "webrca", IncidentID: i.ID, Key: i.Key,
			Change: i.Change, Title: "incident " + i.Key, Status: status, Resolved: !i.Resolved.IsZero(),
			Severity: i.Severity, CreatedAt: i.Created, UpdatedAt: i.Observed, ResolvedAt: i.Resolved,
			ObservedAt: i.Observed, Fingerprint: fp,
		},
		Routing:    events.Routing{Teams: []string{i.Team}, Targets: []events.Target{{Scope: events.ScopeGlobal, ProjectID: "1"}}},
		Components: i.Components,
	}
	if i.CausedBy != nil {
		e.CausedBy = &events.DeploymentLink{DeploymentID: i.CausedBy.ID(), Component: i.CausedBy.Component,
			Environment: i.CausedBy.Env, FinishedAt: i.CausedBy.Finished, Reason: events.LinkLastProductionDeployment}
	}
	return e
}

const (
	prod    = events.EnvironmentProduction
	staging = events.EnvironmentStaging
)

// The scenario's deployments. Times are UTC, March 2026 unless named.
var (
	// checkout-api (team payments), production.
	D1 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 1, Finished: Mar(2, 10, 0),
		Commits: []events.Commit{
			Commit("c1", "checkout-api", Mar(1, 10, 0)),
			SquashCommit("c2", "checkout-api", Feb(28, 10), Mar(2, 8, 0)),
		}, Quality: []events.QualityFlag{events.QualityFirstDeployment}}
	D2 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 2, Finished: Mar(5, 12, 0),
		Commits: []events.Commit{Commit("c3", "checkout-api", Mar(5, 11, 0))}}
	D3 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 3, Finished: Mar(9, 9, 0),
		Commits: []events.Commit{Commit("c4", "checkout-api", Mar(8, 9, 0))}}
	D4 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 4, Finished: Mar(9, 13, 0),
		Commits: []events.Commit{Commit("c5", "checkout-api", Mar(9, 12, 0))}}
	F1 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 1005, Finished: Mar(12, 10, 0),
		Result: events.ResultFailure}
	D5 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 5, Finished: Mar(15, 10, 0),
		Commits: []events.Commit{Commit("c6", "checkout-api", Mar(14, 22, 0))}}
	D6 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 6, Finished: Mar(15, 11, 0),
		Kind: events.KindRollback}
	D7 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 7, Finished: Mar(20, 10, 0),
		Commits: []events.Commit{Commit("c6", "checkout-api", Mar(14, 22, 0)), Commit("c7", "checkout-api", Mar(19, 10, 0))}}
	D8 = Dep{App: "checkout-prod", Component: "checkout-api", Team: "payments", Env: prod, History: 8, Finished: Mar(21, 18, 0),
		Kind: events.KindRedeploy}

	// checkout-api (team payments), staging.
	S1 = Dep{App: "checkout-stage", Component: "checkout-api", Team: "payments", Env: staging, History: 1, Finished: Mar(2, 8, 0),
		Commits: []events.Commit{
			Commit("c1", "checkout-api", Mar(1, 10, 0)),
			SquashCommit("c2", "checkout-api", Feb(28, 10), Mar(2, 8, 0)),
		}, Quality: []events.QualityFlag{events.QualityFirstDeployment}}
	S2 = Dep{App: "checkout-stage", Component: "checkout-api", Team: "payments", Env: staging, History: 2, Finished: Mar(14, 23, 0),
		Commits: []events.Commit{Commit("c6", "checkout-api", Mar(14, 22, 0))}}

	// cart (team payments), production.
	C1 = Dep{App: "cart-prod", Component: "cart", Team: "payments", Env: prod, History: 1, Finished: Mar(3, 10, 0),
		Commits: []events.Commit{Commit("k1", "cart", Mar(3, 9, 30))}}
	C2 = Dep{App: "cart-prod", Component: "cart", Team: "payments", Env: prod, History: 2, Finished: Mar(10, 10, 0),
		Quality: []events.QualityFlag{events.QualityNoAppSHA}}
	C3 = Dep{App: "cart-prod", Component: "cart", Team: "payments", Env: prod, History: 3, Finished: Mar(17, 10, 0),
		Commits: []events.Commit{Commit("k2", "cart", Mar(16, 10, 0))}}

	// login (team identity), production.
	L1 = Dep{App: "login-prod", Component: "login", Team: "identity", Env: prod, History: 1, Finished: Mar(1, 12, 0),
		Commits: []events.Commit{Commit("m1", "login", Feb(20, 12))}, Quality: []events.QualityFlag{events.QualityFirstDeployment}}
	L2 = Dep{App: "login-prod", Component: "login", Team: "identity", Env: prod, History: 2, Finished: Mar(21, 12, 0),
		Commits: []events.Commit{
			Commit("m2", "login", Mar(21, 6, 0)),
			{SHA: SHA("m3"), RepoURL: repo + "login"}, // no commit time known
			Commit("m4", "login", Mar(21, 13, 0)),     // committed after the deployment (clock skew)
		}}
	// U1 has no environment: excluded from every DORA number.
	U1 = Dep{App: "login-lab", Component: "login", Team: "identity", Env: events.EnvironmentUnknown, History: 1,
		Finished: Mar(4, 9, 0), Quality: []events.QualityFlag{events.QualityUnknownEnvironment}}
	// Ghost is never deployed (as far as the exporter knows); a signal names it.
	Ghost = Dep{App: "ghost-prod", Component: "ghost", Team: "payments", Env: prod, History: 1, Finished: Mar(6, 6, 0)}
)

// Incidents.
var (
	// INC1 was caused by D3 (the enricher's link) and resolved 5 h after it opened; D4 is a hotfix.
	INC1Open     = Incident{ID: "i-1", Key: "ITN-1", Team: "payments", Severity: "2", Change: events.IncidentOpened, Components: []string{"checkout-api"}, CausedBy: &D3, Created: Mar(9, 10, 0), Observed: Mar(9, 10, 5)}
	INC1Resolved = Incident{ID: "i-1", Key: "ITN-1", Team: "payments", Severity: "2", Change: events.IncidentResolved, Components: []string{"checkout-api"}, CausedBy: &D3, Created: Mar(9, 10, 0), Resolved: Mar(9, 15, 0), Observed: Mar(9, 15, 5)}
	// INC2 has no enricher link: the exporter attributes it to cart's last production deployment
	// before it opened, C3. Still open.
	INC2 = Incident{ID: "i-2", Key: "ITN-2", Team: "payments", Severity: "1", Change: events.IncidentOpened, Components: []string{"cart"}, Created: Mar(18, 12, 0), Observed: Mar(18, 12, 1)}
	// INC3 opened before login's first deployment: nothing to attribute it to.
	INC3 = Incident{ID: "i-3", Key: "ITN-3", Team: "identity", Severity: "3", Change: events.IncidentResolved, Components: []string{"login"}, Created: Feb(25, 10), Resolved: Feb(25, 12), Observed: Feb(25, 12)}
)

// Scenario returns the scenario's events in publication order (each stream in its own order; the
// state does not depend on how the three interleave). It repeats two events, as an at-least-once
// pipeline may.
func Scenario() []events.Event {
	return []events.Event{
		INC3.Event(),
		L1.Event(), S1.Event(), D1.Event(), C1.Event(), U1.Event(),
		D2.Event(),
		Signal(D2, events.DetectionDegraded, Mar(5, 12, 10), time.Time{}, ""),
		Signal(D2, events.DetectionDegraded, Mar(5, 12, 10), Mar(5, 12, 40), ""),
		Signal(Ghost, events.DetectionDegraded, Mar(6, 6, 30), time.Time{}, ""),
		D3.Event(),
		INC1Open.Event(),
		D4.Event(),
		INC1Resolved.Event(),
		C2.Event(),
		F1.Event(),
		Signal(F1, events.DetectionSyncFailed, Mar(12, 10, 0), time.Time{}, ""),
		S2.Event(),
		D5.Event(), D6.Event(),
		Signal(D5, events.DetectionRollback, Mar(15, 11, 0), time.Time{}, D6.ID()),
		C3.Event(),
		Signal(C2, events.DetectionRevert, Mar(17, 10, 0), time.Time{}, C3.ID()),
		INC2.Event(),
		D7.Event(),
		D2.Event(), // a repeat
		D8.Event(),
		L2.Event(),
		Signal(D5, events.DetectionRollback, Mar(15, 11, 0), time.Time{}, D6.ID()), // a repeat
	}
}

// The fleet: changes rolled out to several production clusters (policy first) and a GitOps revert.
var (
	// FleetCheckout is one checkout-api change on three clusters; the ap cluster rolls it back.
	FleetCheckout = Rollout(Dep{App: "checkout", Component: "checkout-api", Team: "payments", Env: prod, History: 11,
		Finished: Mar(18, 10, 0), Commits: []events.Commit{Commit("x1", "checkout-api", Mar(18, 9, 0))}},
		5*time.Minute, "eu", "us", "ap")
	// FleetCart is a cart change on two clusters, reverted in Git by FleetCartRevert (auto-sync: the
	// revert is a new deployment of kind rollback, flagged revert), which the enricher infers.
	FleetCart = Rollout(Dep{App: "cart", Component: "cart", Team: "payments", Env: prod, History: 12,
		Finished: Mar(19, 10, 0), Commits: []events.Commit{Commit("k9", "cart", Mar(19, 8, 0))}},
		5*time.Minute, "eu", "us")
	FleetCartRevert = Rollout(Dep{App: "cart", Component: "cart", Team: "payments", Env: prod, History: 13,
		Finished: Mar(19, 12, 0), Kind: events.KindRollback, Quality: []events.QualityFlag{events.QualityRevert}},
		5*time.Minute, "eu", "us")
)

// Fleet returns the fleet's events: every child rollout, a rollback signal on one checkout-api
// cluster, and the enricher's inferred revert of the cart change. Applied with Scenario it adds two
// logical deployments and one GitOps revert (itself a logical deployment and rework).
func Fleet() []events.Event {
	var out []events.Event
	for _, group := range [][]Dep{FleetCheckout, FleetCart, FleetCartRevert} {
		for _, d := range group {
			out = append(out, d.Event())
		}
	}
	return append(out,
		Signal(FleetCheckout[2], events.DetectionRollback, Mar(18, 11, 0), time.Time{}, ""),
		Inferred(FleetCart[0], FleetCartRevert[0].Finished, FleetCartRevert[0].LogicalID()))
}
