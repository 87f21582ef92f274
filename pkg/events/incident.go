package events

import "time"

// IncidentChange says what changed about an incident since doraflow last saw it.
type IncidentChange string

// Incident changes.
const (
	IncidentOpened   IncidentChange = "opened"
	IncidentUpdated  IncidentChange = "updated"
	IncidentResolved IncidentChange = "resolved"
	IncidentReopened IncidentChange = "reopened"
)

// IncidentObserved reports one observed state of an incident: the first sight of it, or a change
// of its status, resolution, severity or other mapped fields. It always carries the full state, so a
// consumer never needs an earlier event to act on it.
type IncidentObserved struct {
	// ID is IncidentEventID(Source, IncidentID, Change, Fingerprint).
	ID string `json:"id"`
	// Source is the incident system: "webrca".
	Source string `json:"source"`
	// IncidentID is the source's stable identifier (the WebRCA UUID).
	IncidentID string `json:"incident_id"`
	// Key is the public identifier, such as ITN-2026-00317; DevLake's issueKey.
	Key    string         `json:"key"`
	Change IncidentChange `json:"change"`
	Title  string         `json:"title"`
	// Description is the incident's description, as the source holds it.
	Description string `json:"description,omitempty"`
	// Status is the raw status, lower-cased; "unknown" when the source sent none.
	Status   string `json:"status"`
	Resolved bool   `json:"resolved"`
	Severity string `json:"severity,omitempty"`
	// Products are the matched product names, as configured.
	Products []string `json:"products,omitempty"`
	// Component is the component the incident names, when the source says.
	Component string    `json:"component,omitempty"`
	URL       string    `json:"url,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is the source's last meaningful change (WebRCA last_changed_at, never updated_at).
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// ResolvedAt is set when Resolved is true.
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// ResolvedAtInferred is true when the source gave no resolution time and doraflow used the time it
	// first saw the incident resolved.
	ResolvedAtInferred bool `json:"resolved_at_inferred,omitempty"`
	// ObservedAt is when doraflow saw this state.
	ObservedAt time.Time `json:"observed_at"`
	// Fingerprint is a hash of the mapped state; equal states have equal fingerprints.
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Meta implements Event.
func (i IncidentObserved) Meta() Meta {
	return Meta{ID: i.ID, Type: TypeIncidentObserved, Subject: SubjectIncidentObserved, About: i.Key,
		Time: i.ObservedAt}
}

// Validate implements Event.
func (i IncidentObserved) Validate() error {
	var p problems
	i.validateInto(&p)
	return p.err("incident")
}

func (i IncidentObserved) validateInto(p *problems) {
	p.require(i.ID != "", "id", "required")
	p.require(i.Source != "", "source", "required")
	p.require(i.IncidentID != "", "incident_id", "required")
	p.require(i.Key != "", "key", "required")
	p.require(i.Title != "", "title", "required")
	p.require(i.Status != "", "status", "required")
	p.require(!i.CreatedAt.IsZero(), "created_at", "required")
	p.require(!i.ObservedAt.IsZero(), "observed_at", "required")
	p.require(i.Fingerprint != "", "fingerprint", "required")
	p.require(i.Resolved == !i.ResolvedAt.IsZero(), "resolved_at", "must be set exactly when resolved")
	p.require(i.ResolvedAt.IsZero() || !i.ResolvedAt.Before(i.CreatedAt), "resolved_at", "before created_at")
	p.oneOf("change", string(i.Change), string(IncidentOpened), string(IncidentUpdated),
		string(IncidentResolved), string(IncidentReopened))
}

// LinkReason says why an incident was linked to a deployment.
type LinkReason string

// Link reasons.
const (
	// LinkLastProductionDeployment: the last production deployment of the same component that
	// finished before the incident was created.
	LinkLastProductionDeployment LinkReason = "last_production_deployment_of_component"
	// LinkExplicit: the incident names the deployment (a label or annotation on the incident).
	LinkExplicit LinkReason = "explicit"
)

// DeploymentLink points from an incident to the deployment that may have caused it, with the reason.
type DeploymentLink struct {
	DeploymentID string      `json:"deployment_id"`
	Component    string      `json:"component"`
	Environment  Environment `json:"environment"`
	FinishedAt   time.Time   `json:"finished_at"`
	Reason       LinkReason  `json:"reason"`
}

// IncidentEnriched is an IncidentObserved plus its routing and the deployment it may have been
// caused by. Its ID equals the observed event's ID.
type IncidentEnriched struct {
	IncidentObserved
	Routing Routing `json:"routing"`
	// Components are the components the incident was attributed to (from products or its component).
	Components []string        `json:"components,omitempty"`
	CausedBy   *DeploymentLink `json:"caused_by,omitempty"`
	Quality    []QualityFlag   `json:"quality,omitempty"`
	EnrichedAt time.Time       `json:"enriched_at,omitzero"`
}

// Meta implements Event.
func (i IncidentEnriched) Meta() Meta {
	m := i.IncidentObserved.Meta()
	m.Type, m.Subject = TypeIncidentEnriched, SubjectIncidentEnriched
	return m
}

// Validate implements Event.
func (i IncidentEnriched) Validate() error {
	var p problems
	i.validateInto(&p)
	i.Routing.validateInto(&p)
	if i.CausedBy != nil {
		p.require(i.CausedBy.DeploymentID != "", "caused_by.deployment_id", "required")
		p.require(i.CausedBy.Reason != "", "caused_by.reason", "required")
	}
	return p.err("enriched incident")
}
