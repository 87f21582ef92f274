// Package webrca reads incidents from Red Hat's WebRCA API (GET /api/web-rca/v1/incidents): it pages
// through the listing with a bearer token, decodes each page leniently but safely into its own
// Incident type, and classifies every failure. A listing either returns every incident, complete and
// consistent, or an error: nothing half-parsed ever leaves this package.
package webrca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Incident is one WebRCA incident, as doraflow needs it. Dates that the API sent as missing, null,
// empty or the zero date 0001-01-01T00:00:00Z are the zero time.Time; all others are in UTC.
type Incident struct {
	// ID is the incident's UUID: the stable key and the API's path parameter.
	ID string
	// IncidentID is the public identifier, ITN-YYYY-NNNNN.
	IncidentID   string
	Summary      string
	Description  string
	Status       string // raw, as sent; the set of values is open
	Severity     string // "1"–"4" as seen; a JSON number is accepted and kept as its digits
	IncidentType string
	// Products are the product display names; their capitalisation is not stable.
	Products      []string
	CreatedAt     time.Time
	UpdatedAt     time.Time // bumped by background jobs: never a change or resolution signal
	LastChangedAt time.Time
	ResolvedAt    time.Time
	ClosedAt      time.Time
	LastOpenedAt  time.Time
	DeletedAt     time.Time
	ReopenCounter int
	Invalid       bool
	Private       bool
}

// Page is one decoded page of the incidents listing.
type Page struct {
	Page  int
	Size  int
	Total int
	// HasTotal is false when the response carried no total.
	HasTotal bool
	Items    []Incident
}

// ErrMalformed means a body is not one complete JSON object: an HTML error page, truncated JSON,
// trailing garbage. Usually transient (a proxy, a cut connection).
var ErrMalformed = errors.New("malformed JSON")

// ErrSchema means a body is valid JSON of an unexpected shape: a field of the wrong type, a required
// field missing, another kind of object. Retrying soon does not help.
var ErrSchema = errors.New("unexpected schema")

// MaxIDLen bounds the length of an incident's id and incident_id.
const MaxIDLen = 200

// wirePage and wireIncident are the JSON shapes. Unknown fields are ignored; scalar fields that are
// missing or null stay empty; a value of the wrong JSON type is an error (schema drift).
type wirePage struct {
	Kind  *string         `json:"kind"`
	Page  *int            `json:"page"`
	Size  *int            `json:"size"`
	Total *int            `json:"total"`
	Items *[]wireIncident `json:"items"`
}

type wireIncident struct {
	Kind          string     `json:"kind"`
	ID            string     `json:"id"`
	IncidentID    string     `json:"incident_id"`
	Summary       string     `json:"summary"`
	Description   string     `json:"description"`
	Status        string     `json:"status"`
	Severity      flexString `json:"severity"`
	IncidentType  string     `json:"incident_type"`
	Products      []string   `json:"products"`
	CreatedAt     wireTime   `json:"created_at"`
	UpdatedAt     wireTime   `json:"updated_at"`
	LastChangedAt wireTime   `json:"last_changed_at"`
	ResolvedAt    wireTime   `json:"resolved_at"`
	ClosedAt      wireTime   `json:"closed_at"`
	LastOpenedAt  wireTime   `json:"last_opened_at"`
	DeletedAt     wireTime   `json:"deleted_at"`
	ReopenCounter *int       `json:"reopen_counter"`
	Invalid       *bool      `json:"invalid"`
	Private       *bool      `json:"private"`
}

// DecodePage decodes one page of GET /incidents. It returns an error, and no page, when the body is
// not one complete JSON object (an HTML error page, truncated JSON, trailing garbage), when a field
// has the wrong JSON type, when the object is not an IncidentList, or when an incident lacks what
// doraflow cannot do without: id, incident_id and created_at.
func DecodePage(body []byte) (Page, error) {
	trimmed := bytes.TrimLeftFunc(body, unicode.IsSpace)
	if len(trimmed) == 0 {
		return Page{}, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if trimmed[0] != '{' {
		return Page{}, fmt.Errorf("%w: body is not a JSON object (starts with %s)", ErrMalformed, quoteStart(trimmed))
	}
	var w wirePage
	// json.Unmarshal checks the whole body is one valid JSON value before decoding anything, so a
	// truncated body or trailing garbage fails here and nothing is half-filled.
	if err := json.Unmarshal(trimmed, &w); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return Page{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return Page{}, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if w.Kind != nil && *w.Kind != "IncidentList" {
		return Page{}, fmt.Errorf("%w: kind is %q, want IncidentList", ErrSchema, truncate(*w.Kind, 40))
	}
	var p Page
	if w.Page != nil {
		p.Page = *w.Page
	}
	if w.Size != nil {
		p.Size = *w.Size
	}
	if w.Total != nil {
		p.Total, p.HasTotal = *w.Total, true
	}
	if p.Page < 0 || p.Size < 0 || p.Total < 0 {
		return Page{}, fmt.Errorf("%w: negative page (%d), size (%d) or total (%d)", ErrSchema, p.Page, p.Size, p.Total)
	}
	if w.Items == nil {
		if p.HasTotal && p.Total == 0 {
			return p, nil // an empty listing may omit items
		}
		return Page{}, fmt.Errorf("%w: no items in the incident list", ErrSchema)
	}
	p.Items = make([]Incident, 0, len(*w.Items))
	var problems []error
	for i, wi := range *w.Items {
		inc, err := wi.incident()
		if err != nil {
			problems = append(problems, fmt.Errorf("items[%d]: %w", i, err))
			continue
		}
		p.Items = append(p.Items, inc)
	}
	if len(problems) > 0 {
		return Page{}, fmt.Errorf("%w: %w", ErrSchema, errors.Join(problems...))
	}
	return p, nil
}

func (w wireIncident) incident() (Incident, error) {
	var problems []string
	if w.Kind != "" && w.Kind != "Incident" {
		problems = append(problems, fmt.Sprintf("kind is %q, want Incident", truncate(w.Kind, 40)))
	}
	if msg := checkID(w.ID); msg != "" {
		problems = append(problems, "id "+msg)
	}
	if msg := checkID(w.IncidentID); msg != "" {
		problems = append(problems, "incident_id "+msg)
	}
	if w.CreatedAt.IsZero() {
		problems = append(problems, "created_at is missing")
	}
	if len(problems) > 0 {
		id := w.ID
		if id == "" {
			id = w.IncidentID
		}
		return Incident{}, fmt.Errorf("incident %q: %s", truncate(id, 60), strings.Join(problems, "; "))
	}
	inc := Incident{
		ID: w.ID, IncidentID: w.IncidentID, Summary: w.Summary, Description: w.Description,
		Status: w.Status, Severity: string(w.Severity), IncidentType: w.IncidentType,
		CreatedAt: w.CreatedAt.Time, UpdatedAt: w.UpdatedAt.Time, LastChangedAt: w.LastChangedAt.Time,
		ResolvedAt: w.ResolvedAt.Time, ClosedAt: w.ClosedAt.Time, LastOpenedAt: w.LastOpenedAt.Time,
		DeletedAt: w.DeletedAt.Time,
	}
	if len(w.Products) > 0 {
		inc.Products = w.Products
	}
	if w.ReopenCounter != nil {
		inc.ReopenCounter = *w.ReopenCounter
	}
	if w.Invalid != nil {
		inc.Invalid = *w.Invalid
	}
	if w.Private != nil {
		inc.Private = *w.Private
	}
	return inc, nil
}

// checkID returns what is wrong with an identifier, or "".
func checkID(s string) string {
	switch {
	case s == "":
		return "is missing"
	case len(s) > MaxIDLen:
		return fmt.Sprintf("is longer than %d bytes", MaxIDLen)
	case strings.TrimSpace(s) != s:
		return "has surrounding whitespace"
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return "has control or invalid characters"
		}
	}
	return ""
}

// wireTime is a date-time that may be missing, null, "" or the zero date, all meaning unset.
type wireTime struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *wireTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date-time is not a string: %s", quoteStart(b))
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("date-time %q is not RFC 3339", truncate(s, 40))
	}
	if v.Year() <= 1 {
		// 0001-01-01T00:00:00Z (in any zone) is WebRCA's "not set".
		t.Time = time.Time{}
		return nil
	}
	if v.UTC().Year() > 9999 {
		return fmt.Errorf("date-time %q is after year 9999", truncate(s, 40))
	}
	t.Time = v.UTC()
	return nil
}

// flexString accepts a JSON string, number or null; severity has been seen both ways in clients.
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*f = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or number, got %s", quoteStart(b))
	}
	if _, err := strconv.ParseFloat(n.String(), 64); err != nil {
		return fmt.Errorf("want a string or number, got %s", quoteStart(b))
	}
	*f = flexString(n.String())
	return nil
}

// quoteStart quotes the first bytes of b for an error message.
func quoteStart(b []byte) string {
	const n = 32
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + "…"
	}
	return strconv.Quote(string(b))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
