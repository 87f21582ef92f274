package events

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is implemented by every contract type, so a publisher can address, identify and date any of
// them without knowing which one it holds.
type Event interface {
	// Meta returns the message's identity and routing attributes.
	Meta() Meta
	// Validate reports every problem that makes the event unusable, joined in one error.
	Validate() error
}

// Meta holds the attributes a publisher turns into the NATS subject and the CloudEvents headers.
type Meta struct {
	ID      string    // ce-id and Nats-Msg-Id: deterministic for the real-world event
	Type    string    // ce-type, such as TypeDeploymentObserved
	Subject string    // NATS subject, such as SubjectDeploymentObserved
	About   string    // ce-subject: what the event is about, such as "prod-eu/shop/checkout"
	Time    time.Time // ce-time: when the event happened in the world
}

// SourceOf returns the CloudEvents source of events a doraflow service publishes.
func SourceOf(service string) string { return cloudEventsSourcePrefix + service }

// Headers returns the CloudEvents and JetStream headers for an event published by service. The map
// uses canonical header names as keys; values are single strings.
func Headers(m Meta, service, correlationID string) map[string]string {
	h := map[string]string{
		HeaderSpecVersion: CloudEventsSpecVersion,
		HeaderID:          m.ID,
		HeaderType:        m.Type,
		HeaderSource:      SourceOf(service),
		HeaderContentType: ContentTypeJSON,
		HeaderMsgID:       m.ID,
	}
	if !m.Time.IsZero() {
		h[HeaderTime] = m.Time.UTC().Format(time.RFC3339Nano)
	}
	if m.About != "" {
		h[HeaderSubject] = truncate(m.About, maxCloudEventsSubjectLen)
	}
	if correlationID == "" {
		correlationID = m.ID
	}
	h[HeaderCorrelationID] = correlationID
	return h
}

// NewID returns a deterministic event ID: prefix, a dash and 32 hex characters of the SHA-256 of the
// parts. The same parts always give the same ID; parts are separated so ("ab","c") ≠ ("a","bc").
func NewID(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return prefix + "-" + hex.EncodeToString(h.Sum(nil))[:32]
}

// DeploymentID is the ID of the deployment that Argo CD recorded as history entry historyID of the
// Application with the given UID on an Argo CD instance. A recreated Application has a new UID, so its
// restarted history IDs never collide with the old ones.
func DeploymentID(instance, uid string, historyID int64) string {
	return NewID("dep", instance, uid, strconv.FormatInt(historyID, 10))
}

// FailedOperationID is the ID of a failed or errored sync operation, which adds no history entry and
// is identified by its start time instead.
func FailedOperationID(instance, uid string, operationStartedAt time.Time) string {
	return NewID("dep", instance, uid, "operation", operationStartedAt.UTC().Format(time.RFC3339Nano))
}

// IncidentEventID is the ID of one observed state of an incident: the same incident in the same state
// (fingerprint) always gets the same ID.
func IncidentEventID(source, incidentID string, change IncidentChange, fingerprint string) string {
	return NewID("inc", source, incidentID, string(change), fingerprint)
}

// LogicalDeploymentID returns the ID of the logical deployment whose first child rollout (the first
// cluster to deploy the change) has the deployment ID first: "ldep-…". Under the rollout policy
// "each" a deployment is its own logical deployment and keeps its ID instead.
func LogicalDeploymentID(component string, env Environment, first string) string {
	return NewID("ldep", component, string(env), first)
}

// ChangeFailureID is the ID of a change-failure signal: one per deployment, detection and phase
// ("detected" or "recovered").
func ChangeFailureID(deploymentID string, detection Detection, recovered bool) string {
	phase := "detected"
	if recovered {
		phase = "recovered"
	}
	return NewID("cfs", deploymentID, string(detection), phase)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// problems collects validation problems of one event.
type problems []error

func (p *problems) require(cond bool, field, msg string) {
	if !cond {
		*p = append(*p, fmt.Errorf("%s: %s", field, msg))
	}
}

func (p *problems) oneOf(field, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	*p = append(*p, fmt.Errorf("%s: %q is not one of %s", field, value, strings.Join(allowed, ", ")))
}

func (p problems) err(kind string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("invalid %s: %w", kind, errors.Join(p...))
}
