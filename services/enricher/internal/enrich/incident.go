package enrich

import (
	"context"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
)

// historyEntry is one logical production deployment of a component, recorded when it starts and
// again when it is counted (a GitOps revert is known as a rollback only then). ID is its LogicalID;
// FinishedAt is its first cluster's finish. A redeploy changes nothing and causes nothing, so it is
// not recorded; rollbacks are recorded with their kind and skipped by incident linking.
type historyEntry struct {
	ID         string      `json:"id"`
	FinishedAt time.Time   `json:"finished_at"`
	Cluster    string      `json:"cluster,omitempty"`
	Kind       events.Kind `json:"kind"`
}

// history is a component's recent production deployments, oldest first.
type history struct {
	Component   string         `json:"component"`
	Deployments []historyEntry `json:"deployments"`
}

func historyKey(component string) string { return "history." + keyToken(component) }

// recordProduction adds a deployment to its component's history, in finish order, once; a second
// record of the same ID updates its kind.
func (e *Enricher) recordProduction(ctx context.Context, component string, d historyEntry) error {
	key := historyKey(component)
	h := history{Component: component}
	if _, err := e.get(ctx, key, &h); err != nil {
		return err
	}
	if i := slices.IndexFunc(h.Deployments, func(x historyEntry) bool { return x.ID == d.ID }); i >= 0 {
		if h.Deployments[i].Kind == d.Kind {
			return nil
		}
		h.Deployments[i].Kind = d.Kind
		return e.put(ctx, key, h)
	}
	h.Deployments = append(h.Deployments, d)
	slices.SortStableFunc(h.Deployments, func(a, b historyEntry) int { return a.FinishedAt.Compare(b.FinishedAt) })
	if n := len(h.Deployments) - e.cfg.HistoryPerComponent; n > 0 {
		h.Deployments = h.Deployments[n:]
	}
	return e.put(ctx, key, h)
}

// Incident enriches one observed incident: its components (the one it names, and those of its
// products), the teams owning them (and the products' teams), the routing, and the deployment it
// may have been caused by — the last logical production deployment of one of its components that
// finished before the incident was created, skipping rollbacks (Argo CD rollbacks and GitOps
// reverts restore an earlier state; the failing state came from the deployment before them). When
// the incident names a component, only that component's deployments are candidates; products widen
// the candidates only when it does not. A candidate older than IncidentLinkLookback links nothing
// (QualityLinkTooOld).
func (e *Enricher) Incident(ctx context.Context, in events.IncidentObserved) (events.IncidentEnriched, error) {
	out := events.IncidentEnriched{IncidentObserved: in}
	var flags flagSet
	var components, teams []string
	add := func(list *[]string, s string) {
		if s != "" && !slices.Contains(*list, s) {
			*list = append(*list, s)
		}
	}
	add(&components, in.Component)
	for _, name := range in.Products {
		for _, p := range e.cfg.Products {
			if p.Name != name {
				continue
			}
			for _, c := range p.Components {
				add(&components, c)
			}
			for _, t := range p.Teams {
				add(&teams, t)
			}
		}
	}
	out.Components = components
	var hasTeam bool
	out.Routing, hasTeam = e.route(components, teams)
	if !hasTeam {
		flags.add(events.QualityNoTeam)
	}

	candidates := components
	if in.Component != "" {
		candidates = []string{in.Component}
	}
	for _, c := range candidates {
		var h history
		if _, err := e.get(ctx, historyKey(c), &h); err != nil {
			return events.IncidentEnriched{}, err
		}
		for i := len(h.Deployments) - 1; i >= 0; i-- {
			d := h.Deployments[i]
			if !d.FinishedAt.Before(in.CreatedAt) || d.Kind == events.KindRollback || d.Kind == events.KindRedeploy {
				continue
			}
			if out.CausedBy == nil || d.FinishedAt.After(out.CausedBy.FinishedAt) ||
				(d.FinishedAt.Equal(out.CausedBy.FinishedAt) && d.ID < out.CausedBy.DeploymentID) {
				out.CausedBy = &events.DeploymentLink{DeploymentID: d.ID, Component: c,
					Environment: events.EnvironmentProduction, FinishedAt: d.FinishedAt,
					Reason: events.LinkLastProductionDeployment}
			}
			break
		}
	}
	switch {
	case out.CausedBy == nil:
		flags.add(events.QualityNoLinkedDeployment)
	case in.CreatedAt.Sub(out.CausedBy.FinishedAt) > e.cfg.IncidentLinkLookback:
		out.CausedBy = nil
		flags.add(events.QualityLinkTooOld)
	}
	out.Quality = flags.list()
	out.EnrichedAt = e.now().UTC()
	return out, nil
}
