// Package poll decides which WebRCA incidents to publish, and publishes them in an order that never
// loses a change: it lists the incidents, keeps those of the configured products, drops invalid
// ones, maps each to an IncidentObserved with a fingerprint of its mapped state, and publishes those
// whose fingerprint differs from the one stored for the incident. The stored state advances only
// after the publish succeeded; because event ids are deterministic, a crash between the two
// republishes the same id, which JetStream de-duplicates.
//
// The package has no NATS or logging imports: the lister, the store and the publisher are small
// interfaces, and Poll returns what happened for the caller to log and count.
package poll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/webrca"
)

// Source is the IncidentObserved source.
const Source = "webrca"

// DefaultUIBase is where an incident's page lives: UIBase + incident_id.
const DefaultUIBase = "https://web-rca.devshift.net/incident/"

// MaxDescription bounds the description carried in an event, in bytes.
const MaxDescription = 16 << 10

// Lister lists every incident (webrca.Client).
type Lister interface {
	List(ctx context.Context) ([]webrca.Incident, error)
}

// Store keeps the state of each incident, keyed by its UUID.
type Store interface {
	// Get returns the stored state, or found=false.
	Get(ctx context.Context, incidentID string) (s State, found bool, err error)
	Put(ctx context.Context, incidentID string, s State) error
}

// Publisher publishes an event, de-duplicated by its id.
type Publisher interface {
	Publish(ctx context.Context, ev events.IncidentObserved) error
}

// State is what doraflow remembers of an incident between polls.
type State struct {
	// Fingerprint of the last published state; empty if nothing was published.
	Fingerprint string `json:"fingerprint,omitempty"`
	// EventID and Change of the last published event.
	EventID string                `json:"event_id,omitempty"`
	Change  events.IncidentChange `json:"change,omitempty"`
	// Resolved, ResolvedAt and ResolvedAtInferred as last published. An inferred resolution time is
	// kept here, so it stays the same on every later poll.
	Resolved           bool      `json:"resolved"`
	ResolvedAt         time.Time `json:"resolved_at,omitzero"`
	ResolvedAtInferred bool      `json:"resolved_at_inferred,omitempty"`
	ReopenCounter      int       `json:"reopen_counter,omitempty"`
	// Invalid is true once the incident was seen with invalid:true; it is no longer published.
	Invalid bool `json:"invalid,omitempty"`
	// PublishedAt is when the last event was published.
	PublishedAt time.Time `json:"published_at,omitzero"`
}

// Published reports whether an event was ever published for the incident.
func (s State) Published() bool { return s.Fingerprint != "" }

// Config is what Poll needs besides its interfaces.
type Config struct {
	// Products are the configured product names; an incident is kept when one of its products
	// matches one of them, ignoring case and surrounding space. Empty keeps every incident.
	Products []string
	// UIBase prefixes incident_id to make the event's URL (default DefaultUIBase).
	UIBase string
}

// Poller runs polls.
type Poller struct {
	cfg   Config
	list  Lister
	store Store
	pub   Publisher
	now   func() time.Time
	match map[string]string // lower-cased trimmed name → configured name
}

// New returns a Poller; now is the clock (time.Now in production).
func New(cfg Config, list Lister, store Store, pub Publisher, now func() time.Time) *Poller {
	if cfg.UIBase == "" {
		cfg.UIBase = DefaultUIBase
	}
	m := map[string]string{}
	for _, p := range cfg.Products {
		if k := normalize(p); k != "" {
			if _, dup := m[k]; !dup {
				m[k] = strings.TrimSpace(p)
			}
		}
	}
	return &Poller{cfg: cfg, list: list, store: store, pub: pub, now: now, match: m}
}

// Errors of a poll, wrapped around their cause, for callers to classify with errors.Is.
var (
	// ErrList: listing the incidents failed; nothing was published or stored.
	ErrList = errors.New("list incidents")
	// ErrState: reading or writing the state store failed.
	ErrState = errors.New("incident state")
	// ErrPublish: publishing an event failed; its state was not advanced.
	ErrPublish = errors.New("publish incident")
)

// Published is one event published by a poll.
type Published struct {
	Event events.IncidentObserved
	// UnknownStatus is true when the status is none of the statuses doraflow knows.
	UnknownStatus bool
	// Clamped is true when the source's resolution time was before created_at and was clamped.
	Clamped bool
	// NewlyInferred is true when this event set an inferred resolution time for the first time.
	NewlyInferred bool
}

// Rejected is an incident that mapped to an event that failed validation; it is skipped.
type Rejected struct {
	IncidentID string
	Err        error
}

// Result is what one poll saw and did. Poll returns it, with what was done before any error.
type Result struct {
	// Listed incidents, and of those: Matched (configured products, valid), OtherProduct, Invalid.
	Listed, Matched, OtherProduct, Invalid int
	// InvalidPublished counts listed invalid incidents that were published before they became
	// invalid: DevLake has no delete, so each needs a manual cleanup.
	InvalidPublished int
	// NewlyInvalid are incidents first seen invalid in this poll after having been published.
	NewlyInvalid []string
	Published    []Published
	Rejected     []Rejected
}

// Poll lists the incidents once and publishes every change. It stops at the first error: the
// changes published before it are in Result and stored; the failed one and those after it are
// retried by the next poll.
func (p *Poller) Poll(ctx context.Context) (Result, error) {
	var res Result
	incs, err := p.list.List(ctx)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrList, err)
	}
	now := p.now().UTC()
	res.Listed = len(incs)
	// A stable order makes runs reproducible; the listing's own order may shift between polls.
	sort.Slice(incs, func(i, j int) bool { return incs[i].ID < incs[j].ID })
	for i, inc := range incs {
		if i > 0 && incs[i-1].ID == inc.ID {
			continue // a listing may repeat an incident; the lister already kept the latest copy
		}
		products, ok := p.matchProducts(inc.Products)
		if !ok {
			res.OtherProduct++
			continue
		}
		prev, _, err := p.store.Get(ctx, inc.ID)
		if err != nil {
			return res, fmt.Errorf("%w: read %s: %w", ErrState, inc.ID, err)
		}
		if inc.Invalid {
			res.Invalid++
			if prev.Published() {
				res.InvalidPublished++
			}
			if !prev.Invalid {
				next := prev
				next.Invalid = true
				if err := p.store.Put(ctx, inc.ID, next); err != nil {
					return res, fmt.Errorf("%w: write %s: %w", ErrState, inc.ID, err)
				}
				if prev.Published() {
					res.NewlyInvalid = append(res.NewlyInvalid, inc.ID)
				}
			}
			continue
		}
		res.Matched++
		d := Decide(p.cfg.UIBase, inc, products, prev, now)
		if d.Event == nil {
			if d.Next != prev {
				// Only the invalid mark went away: remember that, publish nothing.
				if err := p.store.Put(ctx, inc.ID, d.Next); err != nil {
					return res, fmt.Errorf("%w: write %s: %w", ErrState, inc.ID, err)
				}
			}
			continue
		}
		if err := d.Event.Validate(); err != nil {
			res.Rejected = append(res.Rejected, Rejected{IncidentID: inc.ID, Err: err})
			continue
		}
		if err := p.pub.Publish(ctx, *d.Event); err != nil {
			return res, fmt.Errorf("%w %s: %w", ErrPublish, inc.ID, err)
		}
		res.Published = append(res.Published, Published{Event: *d.Event, UnknownStatus: !KnownStatus(d.Event.Status),
			Clamped: d.Clamped, NewlyInferred: d.Event.ResolvedAtInferred && (!prev.Resolved || !prev.ResolvedAtInferred)})
		if err := p.store.Put(ctx, inc.ID, d.Next); err != nil {
			return res, fmt.Errorf("%w: write %s after publishing %s: %w", ErrState, inc.ID, d.Event.ID, err)
		}
	}
	return res, nil
}

// matchProducts returns the configured names of inc's products, or all of inc's products (trimmed)
// when no product is configured. ok is false when the incident is of no configured product.
func (p *Poller) matchProducts(products []string) ([]string, bool) {
	var out []string
	seen := map[string]bool{}
	for _, prod := range products {
		k := normalize(prod)
		if k == "" || seen[k] {
			continue
		}
		if len(p.match) == 0 {
			seen[k] = true
			out = append(out, strings.TrimSpace(prod))
			continue
		}
		if name, ok := p.match[k]; ok {
			seen[k] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, len(p.match) == 0 || len(out) > 0
}

func normalize(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Decision is what Decide concluded for one incident.
type Decision struct {
	// Event to publish, or nil when the incident is unchanged.
	Event *events.IncidentObserved
	// Next is the state to store once Event is published (or at once when Event is nil).
	Next State
	// Clamped is true when the resolution time was before created_at and was raised to it.
	Clamped bool
}

// Decide maps inc to an event and compares its fingerprint with prev's. now is the poll's time: the
// event's ObservedAt, and the inferred resolution time when the source gives none.
func Decide(uiBase string, inc webrca.Incident, products []string, prev State, now time.Time) Decision {
	ev := events.IncidentObserved{
		Source: Source, IncidentID: inc.ID, Key: inc.IncidentID,
		Title: strings.TrimSpace(inc.Summary), Description: clip(inc.Description, MaxDescription),
		Status: normalize(inc.Status), Severity: strings.TrimSpace(inc.Severity), Products: products,
		URL: uiBase + inc.IncidentID, CreatedAt: inc.CreatedAt, UpdatedAt: inc.LastChangedAt, ObservedAt: now,
	}
	if ev.Title == "" {
		ev.Title = inc.IncidentID // DevLake needs a title; the key is the best stand-in
	}
	if ev.Status == "" {
		ev.Status = "unknown"
	}
	var d Decision
	ev.Resolved = IsResolved(inc)
	if ev.Resolved {
		ev.ResolvedAt = ResolutionTime(inc)
		if ev.ResolvedAt.IsZero() {
			// No time from the source: the first time doraflow saw it resolved, kept across polls.
			ev.ResolvedAtInferred = true
			ev.ResolvedAt = now
			if prev.Resolved && !prev.ResolvedAt.IsZero() {
				ev.ResolvedAt = prev.ResolvedAt
			}
		}
		if ev.ResolvedAt.Before(inc.CreatedAt) {
			ev.ResolvedAt, d.Clamped = inc.CreatedAt, true
		}
	}
	ev.Fingerprint = Fingerprint(ev, inc.ReopenCounter)
	next := prev
	next.Invalid = false
	if ev.Fingerprint == prev.Fingerprint {
		d.Next = next
		return d
	}
	switch {
	case !prev.Published():
		ev.Change = events.IncidentOpened
	case !prev.Resolved && ev.Resolved:
		ev.Change = events.IncidentResolved
	case prev.Resolved && !ev.Resolved:
		ev.Change = events.IncidentReopened
	case prev.Resolved && ev.Resolved && inc.ReopenCounter > prev.ReopenCounter:
		// Reopened and resolved again between two polls: a new resolution.
		ev.Change = events.IncidentResolved
	default:
		ev.Change = events.IncidentUpdated
	}
	ev.ID = events.IncidentEventID(Source, inc.ID, ev.Change, ev.Fingerprint)
	d.Event = &ev
	d.Next = State{Fingerprint: ev.Fingerprint, EventID: ev.ID, Change: ev.Change, Resolved: ev.Resolved,
		ResolvedAt: ev.ResolvedAt, ResolvedAtInferred: ev.ResolvedAtInferred, ReopenCounter: inc.ReopenCounter,
		PublishedAt: now}
	return d
}

// IsResolved implements reference §5.1: a non-zero resolved_at, or the status resolved or closed.
func IsResolved(inc webrca.Incident) bool {
	if !inc.ResolvedAt.IsZero() {
		return true
	}
	switch normalize(inc.Status) {
	case "resolved", "closed":
		return true
	}
	return false
}

// ResolutionTime is resolved_at, else closed_at, else last_changed_at; never updated_at, which
// background jobs bump. Zero when none is set.
func ResolutionTime(inc webrca.Incident) time.Time {
	for _, t := range []time.Time{inc.ResolvedAt, inc.ClosedAt, inc.LastChangedAt} {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// knownStatuses are the statuses seen or documented; any other status is valid and unresolved, and
// counted so a new one gets noticed.
var knownStatuses = map[string]bool{"open": true, "investigating": true, "identified": true,
	"monitoring": true, "mitigated": true, "pending_customer": true, "resolved": true, "closed": true}

// KnownStatus reports whether a lower-cased status is one doraflow has seen documented.
func KnownStatus(status string) bool { return knownStatuses[status] }

// Fingerprint hashes the mapped state of an incident: every field a consumer acts on (DevLake's
// issue fields, the resolution) plus the reopen counter, and not ObservedAt. An inferred resolution
// time counts only as "inferred", so a retry after a crash between publish and store derives the
// same fingerprint, hence the same event id, and JetStream drops the repeat.
func Fingerprint(ev events.IncidentObserved, reopenCounter int) string {
	resolvedAt := ""
	switch {
	case ev.Resolved && ev.ResolvedAtInferred:
		resolvedAt = "inferred"
	case ev.Resolved:
		resolvedAt = ev.ResolvedAt.UTC().Format(time.RFC3339Nano)
	}
	v := struct {
		Key, Title, Description, Status, Severity, URL string
		Products                                       []string
		Resolved                                       bool
		CreatedAt, UpdatedAt, ResolvedAt               string
		ReopenCounter                                  int
	}{ev.Key, ev.Title, ev.Description, ev.Status, ev.Severity, ev.URL, ev.Products, ev.Resolved,
		ev.CreatedAt.UTC().Format(time.RFC3339Nano), formatTime(ev.UpdatedAt), resolvedAt, reopenCounter}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a struct of strings, bools and ints always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
