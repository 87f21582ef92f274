package enrich_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/enrich"
)

const prod = events.EnvironmentProduction

// withPolicy is routingConfig counting production under policy (all waits for eu and us).
func withPolicy(policy events.RolloutPolicy) enrich.Config {
	cfg := routingConfig
	cfg.Rollout = enrich.RolloutConfig{Policy: policy}
	if policy == events.RolloutAll {
		cfg.Rollout.Expected = map[events.Environment][]string{prod: {"eu", "us"}}
	}
	return cfg
}

func shopFingerprint(sha string) string { return "https://github.com/acme/shop@" + sha }

// child is what one cluster's deployment of a change carries.
type child struct {
	Rollout *events.Rollout
	Commits []string
	Ranges  int
	Quality []events.QualityFlag
	Calls   int
}

func (f *fixture) child(in events.DeploymentObserved) child {
	f.t.Helper()
	before := f.srv.TotalCalls()
	got := f.enrich(in)
	return child{Rollout: got.Rollout, Commits: commitSHAs(got.Commits), Ranges: len(got.Ranges), Quality: got.Quality,
		Calls: f.srv.TotalCalls() - before}
}

// twoChanges deploys a commit a to clusters eu and us, then a newer one; it returns a and the
// deployments of the newer one.
func (f *fixture) twoChanges() (a string, eu, us events.DeploymentObserved) {
	a = f.repo.Push(1)[0]
	f.enrich(f.dep(prod, "eu", a))
	f.enrich(f.dep(prod, "us", a))
	f.repo.Push(1)
	eu, us = f.dep(prod, "eu", f.repo.Head()), f.dep(prod, "us", f.repo.Head())
	f.enrich(eu)
	f.enrich(us)
	return a, eu, us
}

// redeliver restarts the enricher and enriches in again, as a redelivery after Apply does (a crash
// before the processed mark), and fails unless that yields what first did.
func (f *fixture) redeliver(name string, in events.DeploymentObserved, first enrich.Plan) {
	f.t.Helper()
	f.build()
	again := f.plan(in)
	if diff := cmp.Diff(first.Event, again.Event); diff != "" {
		f.t.Errorf("%s: redelivered event differs (-first +again):\n%s", name, diff)
	}
	if diff := cmp.Diff(first.Inferred, again.Inferred); diff != "" {
		f.t.Errorf("%s: redelivered change failures differ (-first +again):\n%s", name, diff)
	}
}

// TestOneChangeOnTwoClustersIsOneLogicalDeployment deploys one change to two production clusters
// under each policy: first counts the first cluster with the commits, each counts both (the
// commits stay with the first), all counts the cluster that completes the expected set and gives it
// the commits. Children that are not the range's carrier ask GitHub nothing.
func TestOneChangeOnTwoClustersIsOneLogicalDeployment(t *testing.T) {
	for _, policy := range []events.RolloutPolicy{events.RolloutFirst, events.RolloutEach, events.RolloutAll} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixtureWith(t, withPolicy(policy))
			r := f.repo
			base := r.Push(1)[0]
			f.enrich(f.dep(prod, "eu", base))
			f.enrich(f.dep(prod, "us", base))
			added := r.Push(2)
			head := r.Head()
			eu, us := f.dep(prod, "eu", head), f.dep(prod, "us", head)
			eu.StartedAt, us.StartedAt = eu.FinishedAt.Add(-time.Minute), us.FinishedAt.Add(-time.Minute)
			got := [2]child{f.child(eu), f.child(us)}

			logical := events.LogicalDeploymentID("checkout", prod, eu.ID)
			fp := shopFingerprint(head)
			rollout := func(id string, counted bool, clusters []string, complete bool) *events.Rollout {
				return &events.Rollout{LogicalID: id, Policy: policy, Fingerprint: fp, Counted: counted, Clusters: clusters,
					Complete: complete, StartedAt: eu.StartedAt, FirstFinishedAt: eu.FinishedAt}
			}
			var want [2]child
			switch policy {
			case events.RolloutFirst:
				want = [2]child{
					{Rollout: rollout(logical, true, []string{"eu"}, true), Commits: added, Ranges: 1, Calls: 2},
					{Rollout: rollout(logical, false, []string{"eu", "us"}, true)},
				}
			case events.RolloutEach:
				own := &events.Rollout{LogicalID: us.ID, Policy: policy, Fingerprint: fp, Counted: true, Clusters: []string{"us"},
					Complete: true, StartedAt: us.StartedAt, FirstFinishedAt: us.FinishedAt}
				want = [2]child{
					{Rollout: rollout(eu.ID, true, []string{"eu"}, true), Commits: added, Ranges: 1, Calls: 2},
					{Rollout: own},
				}
			case events.RolloutAll:
				w0 := rollout(logical, false, []string{"eu"}, false)
				w1 := rollout(logical, true, []string{"eu", "us"}, true)
				w0.Expected, w1.Expected = []string{"eu", "us"}, []string{"eu", "us"}
				want = [2]child{{Rollout: w0}, {Rollout: w1, Commits: added, Ranges: 1, Calls: 2}}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("eu, us (-want +got):\n%s", diff)
			}
		})
	}
}

// A cluster that deploys a change after another cluster already moved past it is a late child of
// that change, not a rollback: no compare, no flag, not counted.
func TestLaggingClusterIsNotARevert(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	a := r.Push(1)[0]
	euA := f.dep(prod, "eu", a)
	f.enrich(euA)
	r.Push(1)
	euB := f.dep(prod, "eu", r.Head())
	f.enrich(euB)
	got := [2]child{f.child(f.dep(prod, "us", a)), f.child(f.dep(prod, "us", r.Head()))}
	want := [2]child{
		{Rollout: &events.Rollout{LogicalID: events.LogicalDeploymentID("checkout", prod, euA.ID), Policy: events.RolloutFirst,
			Fingerprint: shopFingerprint(a), Clusters: []string{"eu", "us"}, Complete: true, FirstFinishedAt: euA.FinishedAt}},
		{Rollout: &events.Rollout{LogicalID: events.LogicalDeploymentID("checkout", prod, euB.ID), Policy: events.RolloutFirst,
			Fingerprint: shopFingerprint(r.Head()), Clusters: []string{"eu", "us"}, Complete: true, FirstFinishedAt: euB.FinishedAt}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("us at the old change, then at the new one (-want +got):\n%s", diff)
	}
}

// A redeploy is its own logical deployment, never counted, and nothing joins it; the next cluster of
// the change still joins the change.
func TestRedeployJoinsNothing(t *testing.T) {
	f := newFixture(t)
	a := f.repo.Push(1)[0]
	eu := f.dep(prod, "eu", a)
	f.enrich(eu)
	redeploy := f.dep(prod, "eu", a)
	redeploy.Kind = events.KindRedeploy
	got := [2]child{f.child(redeploy), f.child(f.dep(prod, "us", a))}
	want := [2]child{
		{Rollout: &events.Rollout{LogicalID: events.LogicalDeploymentID("checkout", prod, redeploy.ID), Policy: events.RolloutFirst,
			Fingerprint: shopFingerprint(a), Clusters: []string{"eu"}, Complete: true, FirstFinishedAt: redeploy.FinishedAt}},
		{Rollout: &events.Rollout{LogicalID: events.LogicalDeploymentID("checkout", prod, eu.ID), Policy: events.RolloutFirst,
			Fingerprint: shopFingerprint(a), Clusters: []string{"eu", "us"}, Complete: true, FirstFinishedAt: eu.FinishedAt}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("redeploy, then us (-want +got):\n%s", diff)
	}
}

func TestFingerprints(t *testing.T) {
	f := newFixture(t)
	a := f.repo.Push(1)[0]
	tests := []struct {
		name   string
		modify func(*events.DeploymentObserved)
		want   string
	}{
		{"application commits, sorted", func(d *events.DeploymentObserved) {
			d.AppCommits = append(d.AppCommits, events.CommitRef{SHA: "ABCDEF1", RepoURL: "https://github.com/acme/api.git"})
		}, "https://github.com/acme/api@abcdef1," + shopFingerprint(a)},
		{"no commits: the GitOps revision", func(d *events.DeploymentObserved) { d.AppCommits, d.Revision = nil, "cfg1" }, "cfg1"},
		{"no commits: the revisions of every source", func(d *events.DeploymentObserved) {
			d.AppCommits, d.Revisions = nil, []string{"cfg1", "1.2.0"}
		}, "cfg1,1.2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := f.dep(events.EnvironmentStaging, "eu", a)
			tc.modify(&in)
			if got := f.enrich(in).Rollout.Fingerprint; got != tc.want {
				t.Errorf("fingerprint %q, want %q", got, tc.want)
			}
		})
	}
}

// Without a fingerprint a deployment cannot be matched across clusters: it is a logical deployment
// of its own, counted as under first even when the policy is all (it could never complete).
func TestNoFingerprintIsCountedAlone(t *testing.T) {
	f := newFixtureWith(t, withPolicy(events.RolloutAll))
	for _, cluster := range []string{"eu", "us"} {
		in := f.dep(prod, cluster, "")
		in.AppCommits = nil
		want := &events.Rollout{LogicalID: events.LogicalDeploymentID("checkout", prod, in.ID), Policy: events.RolloutFirst,
			Counted: true, Clusters: []string{cluster}, Complete: true, FirstFinishedAt: in.FinishedAt}
		if diff := cmp.Diff(want, f.enrich(in).Rollout); diff != "" {
			t.Errorf("%s: rollout (-want +got):\n%s", cluster, diff)
		}
	}
}

func TestFailedAndUnknownEnvironmentsHaveNoRollout(t *testing.T) {
	f := newFixture(t)
	a := f.repo.Push(1)[0]
	failed := f.dep(prod, "eu", a)
	failed.Result = events.ResultFailure
	unknown := f.dep(events.EnvironmentUnknown, "eu", a)
	for _, in := range []events.DeploymentObserved{failed, unknown} {
		if got := f.enrich(in); got.Rollout != nil {
			t.Errorf("%s/%s: rollout %+v, want none", in.Result, in.Environment, got.Rollout)
		}
	}
}

var ignoreReason = cmpopts.IgnoreFields(events.ChangeFailureSignal{}, "Reason")

func revertOf(reverted string, revertedAt time.Time, by events.DeploymentObserved, byLogical string) events.ChangeFailureInferred {
	return events.ChangeFailureInferred{ChangeFailureSignal: events.ChangeFailureSignal{
		ID: events.ChangeFailureID(reverted, events.DetectionRevert, false), DeploymentID: reverted, Source: "enricher",
		Namespace: by.Namespace, Application: by.Application, Component: by.Component, Environment: by.Environment,
		Detection: events.DetectionRevert, DetectedAt: by.FinishedAt, DeploymentFinishedAt: revertedAt, RelatedID: byLogical,
	}}
}

// TestGitOpsReverts: a deployment whose commit is behind the last one, or whose commits revert a
// deployed commit, is a rollback of the logical deployment that brought the reverted state, which
// becomes a change failure (detection revert). Redelivered, it says the same.
func TestGitOpsReverts(t *testing.T) {
	tests := []struct {
		name string
		// run deploys on f and returns the reverting deployment, the logical deployment it reverts and
		// that one's counted finish; reverted "" means no revert.
		run     func(f *fixture) (in events.DeploymentObserved, reverted string, at time.Time)
		quality []events.QualityFlag
	}{
		{"commit behind the previous one", func(f *fixture) (events.DeploymentObserved, string, time.Time) {
			a, bad, _ := f.twoChanges()
			return f.dep(prod, "eu", a), events.LogicalDeploymentID("checkout", prod, bad.ID), bad.FinishedAt
		}, []events.QualityFlag{events.QualityBehind, events.QualityRevert}},
		{"commit that reverts a deployed commit", func(f *fixture) (events.DeploymentObserved, string, time.Time) {
			f.enrich(f.dep(prod, "eu", f.repo.Push(1)[0]))
			sha := f.repo.Push(1)[0]
			bad := f.dep(prod, "eu", sha)
			f.enrich(bad)
			f.repo.Push(1)
			f.enrich(f.dep(prod, "eu", f.repo.Head())) // a later change, not reverted
			f.repo.Revert(sha)
			return f.dep(prod, "eu", f.repo.Head()), events.LogicalDeploymentID("checkout", prod, bad.ID), bad.FinishedAt
		}, []events.QualityFlag{events.QualityRevert}},
		{"commit that reverts a commit never deployed", func(f *fixture) (events.DeploymentObserved, string, time.Time) {
			f.enrich(f.dep(prod, "eu", f.repo.Push(1)[0]))
			f.repo.Revert(f.repo.Push(1)[0])
			return f.dep(prod, "eu", f.repo.Head()), "", time.Time{}
		}, nil},
		{"release carrying the app-repo revert of a change GitOps already reverted", func(f *fixture) (events.DeploymentObserved, string, time.Time) {
			a := f.repo.Push(1)[0]
			f.enrich(f.dep(prod, "eu", a))
			bad := f.repo.Push(1)[0]
			f.enrich(f.dep(prod, "eu", bad))
			f.enrich(f.dep(prod, "eu", a)) // the GitOps revert: behind, reverts bad
			f.repo.Revert(bad)
			f.repo.Push(1)
			return f.dep(prod, "eu", f.repo.Head()), "", time.Time{}
		}, nil},
		{"revert in staging fails staging's deployment, which was its first", func(f *fixture) (events.DeploymentObserved, string, time.Time) {
			f.enrich(f.dep(prod, "eu", f.repo.Push(1)[0]))
			sha := f.repo.Push(1)[0]
			f.enrich(f.dep(prod, "eu", sha))
			stage := f.dep(events.EnvironmentStaging, "stage", sha)
			f.enrich(stage)
			f.repo.Revert(sha)
			return f.dep(events.EnvironmentStaging, "stage", f.repo.Head()),
				events.LogicalDeploymentID("checkout", events.EnvironmentStaging, stage.ID), stage.FinishedAt
		}, []events.QualityFlag{events.QualityRevert}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			in, reverted, at := tc.run(f)
			p := f.plan(in)
			got := p.Event
			self := events.LogicalDeploymentID("checkout", in.Environment, in.ID)
			wantKind, wantOf := events.KindDeploy, ""
			var wantInferred []events.ChangeFailureInferred
			if reverted != "" {
				wantKind, wantOf = events.KindRollback, reverted
				wantInferred = []events.ChangeFailureInferred{revertOf(reverted, at, in, self)}
			}
			if got.Kind != wantKind || got.RollbackOf != wantOf {
				t.Errorf("kind %s rollback_of %q, want %s %q", got.Kind, got.RollbackOf, wantKind, wantOf)
			}
			if diff := cmp.Diff(tc.quality, got.Quality); diff != "" {
				t.Errorf("quality (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantInferred, p.Inferred, ignoreReason); diff != "" {
				t.Errorf("inferred (-want +got):\n%s", diff)
			}
			for _, c := range p.Inferred {
				if c.Reason == "" {
					t.Errorf("inferred %s has no reason", c.ID)
				}
			}
			f.redeliver("redelivery", in, p)
		})
	}
}

// Under policy all, the revert is found by the child that completes it.
func TestRevertUnderPolicyAll(t *testing.T) {
	f := newFixtureWith(t, withPolicy(events.RolloutAll))
	a, badEU, badUS := f.twoChanges()
	revEU, revUS := f.dep(prod, "eu", a), f.dep(prod, "us", a)
	before := f.srv.TotalCalls()
	p0 := f.plan(revEU)
	if p0.Event.Kind != events.KindDeploy || len(p0.Inferred) != 0 || f.srv.TotalCalls() != before {
		t.Errorf("first child: kind %s, %d inferred, %d calls; want deploy, none, none", p0.Event.Kind, len(p0.Inferred),
			f.srv.TotalCalls()-before)
	}
	p1 := f.plan(revUS)
	bad := events.LogicalDeploymentID("checkout", prod, badEU.ID)
	want := []events.ChangeFailureInferred{revertOf(bad, badUS.FinishedAt, revUS, events.LogicalDeploymentID("checkout", prod, revEU.ID))}
	if diff := cmp.Diff(want, p1.Inferred, ignoreReason); diff != "" {
		t.Errorf("completing child: inferred (-want +got):\n%s", diff)
	}
	if p1.Event.Kind != events.KindRollback || p1.Event.RollbackOf != bad {
		t.Errorf("completing child: kind %s rollback_of %q, want rollback %q", p1.Event.Kind, p1.Event.RollbackOf, bad)
	}
}

// Every child of every policy, redelivered after its state was applied (a crash before the
// processed mark), recomputes the same event, including after the bounded rollout list dropped
// its oldest entries.
func TestRedeliveryOfEveryChildRecomputesTheSameEvent(t *testing.T) {
	for _, policy := range []events.RolloutPolicy{events.RolloutFirst, events.RolloutEach, events.RolloutAll} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixtureWith(t, withPolicy(policy))
			var last string
			for i := range 30 {
				switch {
				case i%7 == 6:
					f.repo.Revert(last)
				case i%11 == 10:
					// a GitOps revert to an older commit: behind
				default:
					last = f.repo.Push(1)[0]
				}
				sha := f.repo.Head()
				if i%11 == 10 {
					sha = f.repo.Back(3)
				}
				for _, cluster := range []string{"eu", "us"} {
					in := f.dep(prod, cluster, sha)
					f.redeliver(fmt.Sprintf("step %d %s", i, cluster), in, f.plan(in))
				}
			}
		})
	}
}

// When live pods run several commits of one repository (a rolling update), no commit of that
// repository is taken; the source's own flags travel into the enriched event.
func TestAmbiguousImages(t *testing.T) {
	f := newFixture(t)
	r := f.repo
	old := r.Push(1)[0]
	f.enrich(f.dep(prod, "eu", old))
	added := r.Push(1)
	head := r.Head()
	ref := func(sha string) events.CommitRef {
		return events.CommitRef{SHA: sha, RepoURL: "https://github.com/acme/shop", Via: "image_tag"}
	}
	tests := []struct {
		name   string
		commit []events.CommitRef
		flags  []events.QualityFlag
		want   want
	}{
		{"two commits of one repository", []events.CommitRef{ref(head), ref(old)}, nil,
			want{quality: []events.QualityFlag{events.QualityAmbiguousImage}, calls: 0}},
		{"the source's flag", []events.CommitRef{ref(old)}, []events.QualityFlag{events.QualityAmbiguousImage},
			want{status: events.CompareIdentical, quality: []events.QualityFlag{events.QualityAmbiguousImage}, calls: 0}},
		{"a full and an abbreviated SHA of one commit", []events.CommitRef{ref(head[:12]), ref(head)}, nil,
			want{commits: added, status: events.CompareAhead, calls: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := f.dep(prod, "eu", head)
			in.AppCommits, in.Flags = tc.commit, tc.flags
			before := f.srv.TotalCalls()
			f.check(tc.name, f.enrich(in), tc.want, before)
		})
	}
}
