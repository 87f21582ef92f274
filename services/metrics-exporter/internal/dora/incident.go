package dora

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/doraflow/doraflow/pkg/events"
)

// Link reasons of an incident's attribution, the values of the link label of
// doraflow_metrics_exporter_incidents: the enricher's reasons, the exporter's own fallback, or none.
const (
	LinkExporterFallback = "exporter_last_production_deployment_of_component"
	LinkNone             = "unlinked"
	// LinkTooOld: the last candidate deployment finished longer than the look-back limit before the
	// incident was created; the incident is linked to nothing.
	LinkTooOld = "too_old"
)

var linkReasons = []string{string(events.LinkExplicit), string(events.LinkLastProductionDeployment), LinkExporterFallback,
	LinkTooOld, LinkNone}

type incKey struct {
	component, team, severity, source string
}

// incSeries aggregates incidents for classic time to restore (MTTR).
type incSeries struct {
	key incKey
	// count and restore take the incidents whose first observed state has these labels; open the
	// incidents whose latest state has them and is unresolved.
	count    uint64
	open     int
	everOpen bool
	restore  *hist
}

// incident is the latest observed state of one incident.
type incident struct {
	key string // source/incident id
	// version orders states: the latest observation wins, whatever order they arrive in.
	version             [2]int64
	eventID             string
	publicKey           string // the source's public key, such as ITN-2026-00317
	source, severity    string
	component, team     string
	components          []string // every component it names: its link's and its own
	created, resolved   int64
	isResolved          bool
	causedBy, causedWhy string
	link                *deployment
	linkReason          string
	// applied contribution: first is the series of the first observed state (count, restore),
	// openIn the series of the latest state while it is open.
	first    *incSeries
	restored bool
	openIn   *incSeries
}

var severityPattern = regexp.MustCompile(`^[a-z0-9_-]{1,16}$`)

// Severity normalises an incident severity to a bounded label value: the lower-cased value when it
// is a short token, "unknown" when empty, else "other".
func Severity(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	switch {
	case v == "":
		return "unknown"
	case severityPattern.MatchString(v):
		return v
	}
	return "other"
}

// AddIncident applies one observed state of an incident. The state with the latest observation
// time (then update time, then event ID) is the incident's state.
func (s *State) AddIncident(e events.IncidentEnriched) (Outcome, error) {
	if err := e.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[e.ID]; ok {
		return Duplicate, nil
	}
	s.seen[e.ID] = struct{}{}
	for _, f := range e.Quality {
		s.q.incidentFlags[string(f)]++
	}
	key := e.Source + "/" + e.IncidentID
	inc := s.incidents[key]
	version := [2]int64{e.ObservedAt.UnixNano(), e.UpdatedAt.UnixNano()}
	if inc == nil {
		inc = &incident{key: key}
		s.incidents[key] = inc
	} else if c := slices.Compare(version[:], inc.version[:]); c < 0 || (c == 0 && e.ID <= inc.eventID) {
		return Applied, nil // an older state: kept as history, changes nothing
	}
	oldComponents, oldCreated := inc.components, inc.created
	s.unapplyIncident(inc)
	inc.version, inc.eventID = version, e.ID
	inc.source = s.intern(e.Source)
	inc.publicKey = e.Key
	inc.severity = s.intern(Severity(e.Severity))
	inc.team = s.intern(Team(e.Routing, ""))
	inc.created = e.CreatedAt.UnixMilli()
	inc.isResolved = e.Resolved
	inc.resolved = 0
	if e.Resolved {
		inc.resolved = e.ResolvedAt.UnixMilli()
	}
	inc.causedBy, inc.causedWhy = "", ""
	var comps []string
	if e.CausedBy != nil {
		// Only explicit links are kept: the enricher's "last production deployment" is recomputed
		// here, by event time against the exporter's own history (README "Attribution").
		if e.CausedBy.Reason != events.LinkLastProductionDeployment {
			inc.causedBy, inc.causedWhy = e.CausedBy.DeploymentID, string(e.CausedBy.Reason)
		}
		if e.CausedBy.Component != "" {
			comps = append(comps, s.intern(e.CausedBy.Component))
		}
	}
	for _, c := range e.Components {
		if c != "" && !slices.Contains(comps, c) {
			comps = append(comps, s.intern(c))
		}
	}
	if e.Component != "" && !slices.Contains(comps, e.Component) {
		comps = append(comps, s.intern(e.Component))
	}
	inc.components = comps
	inc.component = "unknown"
	if len(comps) > 0 {
		inc.component = comps[0]
	}
	s.index(inc, oldComponents)
	s.relink(inc)
	s.applyIncident(inc)
	// Hotfix detection of production deployments of its components may change.
	from := inc.created
	if oldCreated != 0 {
		from = min(from, oldCreated)
	}
	for _, c := range append(slices.Clone(oldComponents), comps...) {
		list := s.prod[c]
		i, _ := slices.BinarySearchFunc(list, from, func(d *deployment, t int64) int { return cmpInt(d.finished, t) })
		for _, d := range list[i:] {
			s.reevaluate(d)
		}
	}
	return Applied, nil
}

// index moves an incident between the per-component indexes.
func (s *State) index(inc *incident, old []string) {
	for _, c := range old {
		delete(s.incByComponent[c], inc)
		delete(s.fallback[c], inc)
	}
	for _, c := range inc.components {
		addTo(s.incByComponent, c, inc)
		if inc.causedBy == "" {
			addTo(s.fallback, c, inc)
		}
	}
}

func addTo(m map[string]map[*incident]struct{}, k string, inc *incident) {
	if m[k] == nil {
		m[k] = map[*incident]struct{}{}
	}
	m[k][inc] = struct{}{}
}

// relink attributes an incident to a deployment: the explicit link when the source made one, else
// the last qualifying production deployment of one of its components that finished before the
// incident was created and introduced a state (rollbacks and reverts are skipped: they return to a
// state an earlier deployment introduced), the newest across its components, ties by deployment
// ID; none when that deployment is older than the look-back limit.
func (s *State) relink(inc *incident) {
	var to *deployment
	reason := LinkNone
	if inc.causedBy != "" {
		to, reason = s.dep(s.resolve(inc.causedBy)), inc.causedWhy
	} else {
		for _, c := range inc.components {
			list := s.prod[c]
			i, _ := slices.BinarySearchFunc(list, inc.created, func(d *deployment, t int64) int {
				if d.finished < t {
					return -1
				}
				return 1
			})
			for i--; i >= 0 && undoes(list[i]); i-- {
			}
			if i >= 0 {
				if d := list[i]; to == nil || d.finished > to.finished || (d.finished == to.finished && d.id > to.id) {
					to = d
				}
			}
		}
		switch lb := s.opts.IncidentLinkLookback; {
		case to != nil && lb > 0 && inc.created-to.finished > lb.Milliseconds():
			to, reason = nil, LinkTooOld
		case to != nil:
			reason = LinkExporterFallback
		}
	}
	if inc.linkReason != "" {
		s.q.incidentLinks[inc.linkReason]--
	}
	s.q.incidentLinks[reason]++
	inc.linkReason = reason
	if to == inc.link {
		if to != nil {
			s.reevaluate(to) // the incident's times may have changed
		}
		return
	}
	if old := inc.link; old != nil {
		delete(old.incidents, inc)
		s.reevaluate(old)
	}
	inc.link = to
	if to != nil {
		if to.incidents == nil {
			to.incidents = map[*incident]struct{}{}
		}
		to.incidents[inc] = struct{}{}
		s.reevaluate(to)
	}
}

// undoes reports whether a deployment returns to an earlier state (a rollback or a revert) rather
// than introducing one: incidents are not attributed to it.
func undoes(d *deployment) bool {
	return d.kind == events.KindRollback || d.revert || d.behind
}

// unapplyIncident takes back what an incident's state contributes and later states can change: its
// open count. Its count and restore sample stay where its first states put them.
func (s *State) unapplyIncident(inc *incident) {
	if inc.openIn != nil {
		inc.openIn.open--
		inc.openIn = nil
	}
}

// applyIncident counts an incident under the labels of its first observed state, records its
// restore sample once (its first resolved state), and counts it open under its latest labels.
func (s *State) applyIncident(inc *incident) {
	is := s.incSeriesFor(incKey{inc.component, inc.team, inc.severity, inc.source})
	if inc.first == nil {
		inc.first = is
		is.count++
	}
	switch {
	case !inc.isResolved:
		inc.openIn = is
		is.open++
		is.everOpen = true
	case !inc.restored:
		inc.restored = true
		inc.first.restore.add(sample{ms: max(0, inc.resolved-inc.created), at: inc.resolved, id: inc.publicKey})
	}
}

func (s *State) incSeriesFor(k incKey) *incSeries {
	is := s.incSeries[k]
	if is == nil {
		is = &incSeries{key: k, restore: newHist(exemplarIncident)}
		s.incSeries[k] = is
	}
	return is
}

// openAt reports whether an incident naming component was open at t (created before t, not yet
// resolved at t).
func (s *State) openAt(component string, t int64) bool {
	for inc := range s.incByComponent[component] {
		if inc.created < t && (!inc.isResolved || inc.resolved > t) {
			return true
		}
	}
	return false
}
