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
	stepRollback                 // a history entry back to the previous state
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
	// change index a deploy ships (the component's n-th change); -1: the latest.
	change int
	// degraded, on a deploy: health turns Degraded this long after it (seen with the new entry).
	degraded time.Duration
}

// timeline builds the world's steps in time order, from monday (00:00 UTC) on.
func timeline(seed uint64, monday time.Time) []step {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var steps []step
	changes := map[string]int{}
	start := monday.Add(9 * time.Hour)
	fail := start.AddDate(0, 0, 3).Add(5 * time.Hour) // Thursday, week 1
	bad := start.AddDate(0, 0, 8).Add(4 * time.Hour)  // Tuesday, week 2
	deg := start.AddDate(0, 0, 14).Add(3 * time.Hour) // Monday, week 3
	// The days of the fixed stories below: no other change of that component lands on them.
	reserved := map[string]bool{"payment-gateway " + fail.Format(time.DateOnly): true,
		"checkout-api " + bad.Format(time.DateOnly): true, "auth-service " + deg.Format(time.DateOnly): true}
	for day := range 15 { // three working weeks
		date := start.AddDate(0, 0, day+2*(day/5))
		for _, c := range demoComponents {
			if rng.Float64() > 0.55 || reserved[c.name+" "+date.Format(time.DateOnly)] {
				continue
			}
			merged := date.Add(time.Duration(30+rng.IntN(300)) * time.Minute)
			merge := []string{"squash", "merge", "rebase"}[rng.IntN(3)]
			steps = append(steps, step{at: merged, kind: stepChange, component: c.name, merge: merge, commits: 1 + rng.IntN(3)})
			n := changes[c.name]
			changes[c.name]++
			for _, cl := range demoClusters {
				steps = append(steps, step{at: merged.Add(cl.lag), kind: stepDeploy, component: c.name, cluster: cl.name, change: n})
			}
		}
	}
	// The events every demo shows, whatever the seed: a failed sync that is retried, a bad
	// change rolled back, a degradation that recovers, and incidents.
	steps = append(steps,
		step{at: fail.Add(-3 * time.Hour), kind: stepChange, component: "payment-gateway", merge: "squash", commits: 2},
		step{at: fail, kind: stepFailSync, component: "payment-gateway", cluster: "prod-eu"},
		step{at: fail.Add(20 * time.Minute), kind: stepDeploy, component: "payment-gateway", cluster: "prod-eu", change: -1},
	)
	steps = append(steps,
		step{at: bad.Add(-5 * time.Hour), kind: stepChange, component: "checkout-api", merge: "merge", commits: 3},
		step{at: bad, kind: stepDeploy, component: "checkout-api", cluster: "prod-us", change: -1},
		step{at: bad.Add(20 * time.Minute), kind: stepIncident, key: "ITN-2026-00101", product: "Checkout", severity: "2",
			summary: "Checkout errors above SLO in us-east", resolved: 95 * time.Minute},
		step{at: bad.Add(70 * time.Minute), kind: stepRollback, component: "checkout-api", cluster: "prod-us"},
	)
	steps = append(steps,
		step{at: deg.Add(-2 * time.Hour), kind: stepChange, component: "auth-service", merge: "rebase", commits: 2},
		step{at: deg, kind: stepDeploy, component: "auth-service", cluster: "prod-eu", change: -1, degraded: 10 * time.Minute},
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
		return fmt.Sprintf("%s  %-15s pull request merged (%s, %d commits)", day, s.component, s.merge, s.commits)
	case stepDeploy:
		if s.degraded > 0 {
			return fmt.Sprintf("%s  %-15s deployed to %s, Degraded %s later", day, s.component, s.cluster, s.degraded)
		}
		return fmt.Sprintf("%s  %-15s deployed to %s", day, s.component, s.cluster)
	case stepFailSync:
		return fmt.Sprintf("%s  %-15s sync to %s FAILED", day, s.component, s.cluster)
	case stepRollback:
		return fmt.Sprintf("%s  %-15s rolled back on %s", day, s.component, s.cluster)
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
