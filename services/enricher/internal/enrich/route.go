package enrich

import (
	"slices"

	"github.com/doraflow/doraflow/pkg/events"
)

// route resolves the teams of components (teams that list them) plus named teams (the
// doraflow.io/team label, a product's teams), and their targets: the global project, then each
// team's project. It reports whether any team was found. A named team without configuration is
// kept in Teams but has no project to target.
func (e *Enricher) route(components []string, named []string) (events.Routing, bool) {
	r := events.Routing{Targets: []events.Target{}}
	if e.cfg.GlobalProjectID != "" {
		r.Targets = append(r.Targets, events.Target{Scope: events.ScopeGlobal, ProjectID: e.cfg.GlobalProjectID})
	}
	for _, t := range e.cfg.Teams {
		for _, c := range components {
			if slices.Contains(t.Components, c) {
				r.Teams = append(r.Teams, t.Name)
				break
			}
		}
	}
	for _, n := range named {
		if !slices.Contains(r.Teams, n) {
			r.Teams = append(r.Teams, n)
		}
	}
	for _, name := range r.Teams {
		for _, t := range e.cfg.Teams {
			if t.Name == name && t.ProjectID != "" {
				r.Targets = append(r.Targets, events.Target{Scope: events.ScopeTeam, Team: t.Name, ProjectID: t.ProjectID})
			}
		}
	}
	return r, len(r.Teams) > 0
}
