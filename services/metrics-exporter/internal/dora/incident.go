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
)

type incKey struct {
	component, team, severity, source string
}

// incSeries aggregates incidents for classic time to restore (MTTR).
type incSeries struct {
	key     incKey
	count   uint64
	open    int
	restore *hist
	// resolved are the resolved incidents' restore samples (at = resolution time), for windows.
	resolved map[*incident]sample
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
	// applied contribution
	ser      *incSeries
	resample sample
	counted  bool
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
		inc.causedBy, inc.causedWhy = e.CausedBy.DeploymentID, string(e.CausedBy.Reason)
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

// relink attributes an incident to a deployment: the enricher's link when it made one, else the
// last qualifying production deployment of one of its components that finished before the incident
// was created (the newest across its components; ties by deployment ID).
func (s *State) relink(inc *incident) {
	var to *deployment
	reason := LinkNone
	if inc.causedBy != "" {
		to, reason = s.dep(inc.causedBy), inc.causedWhy
	} else {
		for _, c := range inc.components {
			list := s.prod[c]
			i, _ := slices.BinarySearchFunc(list, inc.created, func(d *deployment, t int64) int {
				if d.finished < t {
					return -1
				}
				return 1
			})
			if i > 0 {
				if d := list[i-1]; to == nil || d.finished > to.finished || (d.finished == to.finished && d.id > to.id) {
					to = d
				}
			}
		}
		if to != nil {
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

func (s *State) unapplyIncident(inc *incident) {
	if !inc.counted {
		return
	}
	is := inc.ser
	is.count--
	if inc.isResolved {
		is.restore.remove(inc.resample)
		delete(is.resolved, inc)
	} else {
		is.open--
	}
	inc.counted = false
}

func (s *State) applyIncident(inc *incident) {
	k := incKey{inc.component, inc.team, inc.severity, inc.source}
	is := s.incSeries[k]
	if is == nil {
		is = &incSeries{key: k, restore: newHist(exemplarIncident), resolved: map[*incident]sample{}}
		s.incSeries[k] = is
	}
	inc.ser, inc.counted = is, true
	is.count++
	if inc.isResolved {
		inc.resample = sample{ms: max(0, inc.resolved-inc.created), at: inc.resolved, id: inc.publicKey}
		is.restore.add(inc.resample)
		is.resolved[inc] = inc.resample
	} else {
		is.open++
	}
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
