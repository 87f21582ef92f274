package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// The demo's simulated organisation: two teams, three components, one staging and two production
// clusters, three weeks of work. Everything derives from the seed, so a seed always gives the same
// world and the same numbers.
const (
	demoInstance  = "demo"
	demoNamespace = "argocd"
)

// demoWeeks returns the simulated weeks: they start on the Monday (00:00 UTC) three weeks before
// the current week's Monday, and the exporter's windows end three weeks later. Shifting by whole
// weeks keeps weekdays and UTC day boundaries, so every week gives the same numbers; and the
// simulated past is recent enough for the watcher's health windows (argocd.degraded_window).
func demoWeeks(now time.Time) (start, evaluation time.Time) {
	day := now.UTC().Truncate(24 * time.Hour)
	monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	start = monday.AddDate(0, 0, -21)
	return start, start.AddDate(0, 0, 21)
}

type demoComponent struct {
	name, team, product string
}

type demoCluster struct {
	name, env string // env is the overlay directory: production or staging
	lag       time.Duration
}

var (
	demoComponents = []demoComponent{
		{"checkout-api", "payments", "Checkout"},
		{"payment-gateway", "payments", "Payments"},
		{"auth-service", "platform", "Identity"},
	}
	demoClusters = []demoCluster{
		{"stage-eu", "staging", 30 * time.Minute},
		{"prod-eu", "production", 2 * time.Hour},
		{"prod-us", "production", 2*time.Hour + 30*time.Minute},
	}
)

// stepKind is what one step of the timeline does.
type stepKind int

const (
	stepChange   stepKind = iota // a pull request merged on main
	stepDeploy                   // a sync that adds a history entry
	stepFailSync                 // a sync that ends Failed (no history entry)
	stepRollback                 // `argocd app rollback`: auto-sync off, a history entry back to the previous state
	stepRevert                   // a GitOps revert: an automated sync to a new revision shipping the previous image
	stepRecover                  // health back to Healthy
	stepIncident                 // a WebRCA incident opens (and, with resolve set, is resolved)
)

// step is one thing that happens in the world, at a simulated time.
type step struct {
	at        time.Time
	kind      stepKind
	component string
	cluster   string
	// change: how the pull request merges (squash, merge, rebase) and how many commits it has.
	merge   string
	commits int
	// incident: key, product, severity and resolution.
	key      string
	product  string
	severity string
	summary  string
	resolved time.Duration // zero: still open at the end
	// change identifies a change (on stepChange) and the change a deploy ships (on stepDeploy).
	change int
	// degraded, on a deploy: health turns Degraded this long after it (seen with the new entry).
	degraded time.Duration
	// rolling, on a deploy: the entry appears while the rolling update runs (health Progressing, the
	// old and the new image live) and the app turns Healthy with only the new image this long after.
	rolling time.Duration
}

// timeline builds the world's steps in time order, from monday (00:00 UTC) on.
func timeline(seed uint64, monday time.Time) []step {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var steps []step
	changes := 0 // every change, of every component, gets its own number
	change := func(at time.Time, component, merge string, commits int) int {
		changes++
		steps = append(steps, step{at: at, kind: stepChange, component: component, merge: merge, commits: commits, change: changes})
		return changes
	}
	deploy := func(at time.Time, component, cluster string, change int) step {
		return step{at: at, kind: stepDeploy, component: component, cluster: cluster, change: change}
	}
	start := monday.Add(9 * time.Hour)
	fail := start.AddDate(0, 0, 3).Add(5 * time.Hour)     // Thursday, week 1
	bad := start.AddDate(0, 0, 8).Add(4 * time.Hour)      // Tuesday, week 2
	revert := start.AddDate(0, 0, 9).Add(6 * time.Hour)   // Wednesday, week 2
	rolling := start.AddDate(0, 0, 10).Add(4 * time.Hour) // Thursday, week 2
	deg := start.AddDate(0, 0, 14).Add(3 * time.Hour)     // Monday, week 3
	// The days of the fixed stories below: no other change of that component lands on them.
	reserved := map[string]bool{}
	for _, r := range []struct {
		component string
		day       time.Time
	}{{"payment-gateway", fail}, {"checkout-api", bad}, {"payment-gateway", revert}, {"auth-service", rolling}, {"auth-service", deg}} {
		reserved[r.component+" "+r.day.Format(time.DateOnly)] = true
	}
	for day := range 15 { // three working weeks
		date := start.AddDate(0, 0, day+2*(day/5))
		for _, c := range demoComponents {
			// Every day draws the same numbers, so a story's reserved day leaves the others alone.
			skip := rng.Float64() > 0.55
			merged := date.Add(time.Duration(30+rng.IntN(300)) * time.Minute)
			merge := []string{"squash", "merge", "rebase"}[rng.IntN(3)]
			commits := 1 + rng.IntN(3)
			if skip || reserved[c.name+" "+date.Format(time.DateOnly)] {
				continue
			}
			n := change(merged, c.name, merge, commits)
			for _, cl := range demoClusters {
				steps = append(steps, deploy(merged.Add(cl.lag), c.name, cl.name, n))
			}
		}
	}
	// The events every demo shows, whatever the seed: a failed sync that is retried, a bad
	// change rolled back on one of the two production clusters, a bad change reverted in Git, a
	// rolling update, a degradation that recovers, and incidents.
	n := change(fail.Add(-3*time.Hour), "payment-gateway", "squash", 2)
	steps = append(steps,
		step{at: fail, kind: stepFailSync, component: "payment-gateway", cluster: "prod-eu"},
		deploy(fail.Add(20*time.Minute), "payment-gateway", "prod-eu", n),
		deploy(fail.Add(50*time.Minute), "payment-gateway", "prod-us", n),
	)
	// Both production clusters get the bad change; only prod-us, where it hurts, is rolled back.
	n = change(bad.Add(-5*time.Hour), "checkout-api", "merge", 3)
	steps = append(steps,
		deploy(bad.Add(-30*time.Minute), "checkout-api", "prod-eu", n),
		deploy(bad, "checkout-api", "prod-us", n),
		step{at: bad.Add(20 * time.Minute), kind: stepIncident, key: "ITN-2026-00101", product: "Checkout", severity: "2",
			summary: "Checkout errors above SLO in us-east", resolved: 95 * time.Minute},
		step{at: bad.Add(70 * time.Minute), kind: stepRollback, component: "checkout-api", cluster: "prod-us"},
	)
	// An auto-sync app: the production image bump is reverted in the GitOps repository, and each
	// production cluster syncs the revert on its own.
	n = change(revert.Add(-4*time.Hour), "payment-gateway", "squash", 1)
	steps = append(steps,
		deploy(revert.Add(-210*time.Minute), "payment-gateway", "stage-eu", n),
		deploy(revert.Add(-2*time.Hour), "payment-gateway", "prod-eu", n),
		deploy(revert.Add(-90*time.Minute), "payment-gateway", "prod-us", n),
		step{at: revert, kind: stepRevert, component: "payment-gateway", cluster: "prod-eu"},
		step{at: revert.Add(4 * time.Minute), kind: stepRevert, component: "payment-gateway", cluster: "prod-us"},
	)
	// A rolling update: the history entry appears while old and new pods both run.
	n = change(rolling.Add(-3*time.Hour), "auth-service", "squash", 2)
	r := deploy(rolling, "auth-service", "prod-eu", n)
	r.rolling = 6 * time.Minute
	steps = append(steps,
		deploy(rolling.Add(-150*time.Minute), "auth-service", "stage-eu", n),
		r,
		deploy(rolling.Add(30*time.Minute), "auth-service", "prod-us", n),
	)
	n = change(deg.Add(-2*time.Hour), "auth-service", "rebase", 2)
	d := deploy(deg, "auth-service", "prod-eu", n)
	d.degraded = 10 * time.Minute
	steps = append(steps, d,
		step{at: deg.Add(15 * time.Minute), kind: stepIncident, key: "ITN-2026-00117", product: "Identity", severity: "1",
			summary: "Login failures in eu-west", resolved: 3 * time.Hour},
		step{at: deg.Add(50 * time.Minute), kind: stepRecover, component: "auth-service", cluster: "prod-eu"},
		step{at: start.AddDate(0, 0, 17).Add(2 * time.Hour), kind: stepIncident, key: "ITN-2026-00123", product: "Payments",
			severity: "3", summary: "Slow refunds for some merchants"},
	)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
	return steps
}

func (s step) String() string {
	day := s.at.Format("Mon 02 Jan 15:04")
	switch s.kind {
	case stepChange:
		commits := "commits"
		if s.commits == 1 {
			commits = "commit"
		}
		return fmt.Sprintf("%s  %-15s pull request merged (%s, %d %s)", day, s.component, s.merge, s.commits, commits)
	case stepDeploy:
		if s.rolling > 0 {
			return fmt.Sprintf("%s  %-15s deployed to %s, rolling update (old and new pods live for %s)", day, s.component, s.cluster, s.rolling)
		}
		if s.degraded > 0 {
			return fmt.Sprintf("%s  %-15s deployed to %s, Degraded %s later", day, s.component, s.cluster, s.degraded)
		}
		return fmt.Sprintf("%s  %-15s deployed to %s", day, s.component, s.cluster)
	case stepFailSync:
		return fmt.Sprintf("%s  %-15s sync to %s FAILED", day, s.component, s.cluster)
	case stepRollback:
		return fmt.Sprintf("%s  %-15s rolled back on %s", day, s.component, s.cluster)
	case stepRevert:
		return fmt.Sprintf("%s  %-15s GitOps revert synced to %s", day, s.component, s.cluster)
	case stepRecover:
		return fmt.Sprintf("%s  %-15s Healthy again on %s", day, s.component, s.cluster)
	case stepIncident:
		state := "still open"
		if s.resolved > 0 {
			state = "resolved after " + s.resolved.String()
		}
		return fmt.Sprintf("%s  incident %s (%s, sev %s) opened; %s", day, s.key, s.product, s.severity, state)
	}
	return day
}
