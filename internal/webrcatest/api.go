package webrcatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// IncidentsPath is the listing path.
const IncidentsPath = "/api/web-rca/v1/incidents"

// Incident is an incident as the API serves it: a JSON object, so tests can send any shape.
type Incident map[string]any

// NewIncident returns an open incident shaped like the live API's (reference §7): product Konflux,
// status investigating, severity "2", resolved_at the zero date, closed_at null.
func NewIncident(id, key string, created time.Time) Incident {
	ts := created.UTC().Format(time.RFC3339Nano)
	return Incident{
		"kind": "Incident", "id": id, "href": IncidentsPath + "/" + id, "incident_id": key,
		"summary": "Incident " + key, "description": "Something broke.", "products": []any{"Konflux"},
		"incident_type": "internal", "status": "investigating", "severity": "2",
		"creator":    map[string]any{"id": "5e1c0a9b-2f44-4d7e-8a63-0c7b9e3d1f28", "kind": "User", "name": "Dana Example"},
		"created_at": ts, "updated_at": ts, "last_changed_at": ts,
		"resolved_at": "0001-01-01T00:00:00Z", "closed_at": nil, "last_opened_at": ts,
		"reopen_counter": 0, "private": false, "invalid": false,
	}
}

// Request is one listing request the fake answered.
type Request struct {
	Page, Size int
	OrderBy    string
	ProductID  string
	// Authorized is false when the bearer token was missing or not valid.
	Authorized bool
}

// API is a fake of the WebRCA API's incident listing, accepting the access tokens sso issued.
type API struct {
	srv *httptest.Server
	sso *SSO

	mu        sync.Mutex
	incidents []Incident
	products  map[string][]string // incident id → status-board product ids
	maxSize   int
	intercept func(w http.ResponseWriter, r *http.Request, req Request) bool
	requests  []Request
}

// NewAPI starts a fake API. Page sizes above 100 are rejected, like OCM-style APIs do.
func NewAPI(t testing.TB, sso *SSO) *API {
	t.Helper()
	a := StartAPI(sso)
	t.Cleanup(a.Close)
	return a
}

// StartAPI starts a fake API on a loopback port, for demos and end-to-end runs; Close stops it.
func StartAPI(sso *SSO) *API {
	a := &API{sso: sso, products: map[string][]string{}, maxSize: 100}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	return a
}

// URL is the API host, the base URL of a client.
func (a *API) URL() string { return a.srv.URL }

// Close closes the server.
func (a *API) Close() { a.srv.Close() }

// SetIncidents replaces the incidents served (deep-copied).
func (a *API) SetIncidents(incs ...Incident) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.incidents = nil
	for _, inc := range incs {
		a.incidents = append(a.incidents, clone(inc))
	}
}

// Update applies fn to the incident with id (deep-copied in and out).
func (a *API) Update(id string, fn func(Incident)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, inc := range a.incidents {
		if inc["id"] == id {
			c := clone(inc)
			fn(c)
			a.incidents[i] = c
			return
		}
	}
	panic("webrcatest: no incident " + id)
}

// SetProductIDs sets the status-board product ids an incident matches with the product_id filter.
func (a *API) SetProductIDs(incidentID string, productIDs ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.products[incidentID] = productIDs
}

// Intercept makes fn see every authorized listing request first; when it returns true it has
// written the response. fn runs without the fake's lock, so it may call SetIncidents.
func (a *API) Intercept(fn func(w http.ResponseWriter, r *http.Request, req Request) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.intercept = fn
}

// Requests returns the listing requests answered so far.
func (a *API) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// ResetRequests forgets the recorded requests.
func (a *API) ResetRequests() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = nil
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != IncidentsPath {
		ocmErr(w, http.StatusNotFound, "404", "The requested resource '"+r.URL.Path+"' doesn't exist")
		return
	}
	if r.Method != http.MethodGet {
		ocmErr(w, http.StatusMethodNotAllowed, "405", "Method not allowed")
		return
	}
	req := Request{OrderBy: r.URL.Query().Get("order_by"), ProductID: r.URL.Query().Get("product_id")}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	req.Authorized = ok && token != "" && a.sso.Valid(token)
	var err error
	if req.Page, err = intParam(r, "page", 1); err != nil || req.Page < 1 {
		a.record(req)
		ocmErr(w, http.StatusBadRequest, "400", "page must be a positive integer")
		return
	}
	if req.Size, err = intParam(r, "size", 100); err != nil || req.Size < 1 {
		a.record(req)
		ocmErr(w, http.StatusBadRequest, "400", "size must be a positive integer")
		return
	}
	a.record(req)
	if !req.Authorized {
		ocmErr(w, http.StatusUnauthorized, "401", "Account authentication could not be verified")
		return
	}
	a.mu.Lock()
	intercept, maxSize := a.intercept, a.maxSize
	a.mu.Unlock()
	if intercept != nil && intercept(w, r, req) {
		return
	}
	if req.Size > maxSize {
		ocmErr(w, http.StatusBadRequest, "400", fmt.Sprintf("size must be at most %d", maxSize))
		return
	}
	a.mu.Lock()
	items, err := a.listLocked(req)
	a.mu.Unlock()
	if err != nil {
		ocmErr(w, http.StatusBadRequest, "400", err.Error())
		return
	}
	total := len(items)
	start := min((req.Page-1)*req.Size, total)
	end := min(start+req.Size, total)
	page := items[start:end]
	writeJSON(w, http.StatusOK, map[string]any{"kind": "IncidentList", "page": req.Page, "size": len(page),
		"total": total, "items": page})
}

func (a *API) record(req Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, req)
}

func (a *API) listLocked(req Request) ([]Incident, error) {
	var out []Incident
	for _, inc := range a.incidents {
		if req.ProductID != "" && !contains(a.products[fmt.Sprint(inc["id"])], req.ProductID) {
			continue
		}
		out = append(out, inc)
	}
	field, dir := "created_at", "asc"
	if req.OrderBy != "" {
		f := strings.Fields(req.OrderBy)
		if len(f) == 0 || len(f) > 2 || (f[0] != "created_at" && f[0] != "updated_at") ||
			(len(f) == 2 && f[1] != "asc" && f[1] != "desc") {
			return nil, fmt.Errorf("invalid order_by %q", req.OrderBy)
		}
		field = f[0]
		if len(f) == 2 {
			dir = f[1]
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := fmt.Sprint(out[i][field]), fmt.Sprint(out[j][field])
		if dir == "desc" {
			return a > b
		}
		return a < b
	})
	return out, nil
}

func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	return strconv.Atoi(v)
}

func ocmErr(w http.ResponseWriter, status int, id, reason string) {
	writeJSON(w, status, map[string]any{"kind": "Error", "id": id, "href": "/api/web-rca/v1/errors/" + id,
		"code": "WEBRCA-" + id, "reason": reason})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func clone(inc Incident) Incident {
	b, err := json.Marshal(inc)
	if err != nil {
		panic(err)
	}
	var c Incident
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return c
}
