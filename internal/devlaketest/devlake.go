// Package devlaketest is a contract-faithful fake of Apache DevLake's webhook plugin (v1.0.3), for
// tests and the local demo. It reproduces what doraflow's devlake-sink must honour
// (devlake-webhook.md): the /rest and /api/rest routes, Bearer API keys with per-connection scope,
// DevLake's weakly typed, case-insensitive decoding, required fields and enums, the accepted and
// rejected date layouts, and upserts with last-write-wins, zeroed omitted fields and DevLake's row
// ids, for deployments, issues and (v1.0.3+) pull requests. The first writes to a fresh connection
// race on creating its board or scope as on PostgreSQL (400, SQLSTATE 23505). PRMetrics computes
// DevLake's own change lead time (project_pr_metrics) from the stored rows. Tests read back the
// stored rows, count writes and requests, and inject faults.
//
// Deliberate differences from DevLake: paths without /rest (which DevLake serves without any key
// check) answer 404, so a client that forgets the key-checked form fails loudly; and injected faults
// never store anything, so "stored exactly once" is observable.
//
// It imports only the standard library.
package devlaketest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DevLake is the fake. It is an http.Handler; Start serves it on a loopback port.
type DevLake struct {
	// URL is the base URL when started with Start: the backend form, posted to as URL+"/rest/...".
	// The config-ui form is URL+"/api".
	URL string

	mu       sync.Mutex
	now      func() time.Time
	conns    map[uint64]Connection
	byName   map[string]uint64
	keys     map[string]*regexp.Regexp
	nextConn uint64
	store    *store
	requests []Request
	faults   Faults
	rng      *rand.Rand
	down     int
	rejects  map[writeKey]string
	// scopes are the (connection, kind) whose scope row exists; creating those in a first write.
	scopes     map[writeKey]bool
	creating   map[writeKey]bool
	firstWrite time.Duration
	hold       chan struct{}
	pending    atomic.Int64
	closing    chan struct{}
	closed     bool
}

// Connection is a webhook connection and its per-connection API key.
type Connection struct {
	ID   uint64
	Name string
	// APIKey is valid only for paths under /plugins/webhook/connections/<ID>/.
	APIKey string
}

// Request is one request the fake answered.
type Request struct {
	Method string
	// Path is the request path as received, such as /rest/plugins/webhook/connections/1/deployments.
	Path string
	// Connection and Kind are set when the path named them.
	Connection uint64
	Kind       Kind
	Status     int
	Body       []byte
	// Fault names an injected fault (server_error, stall, down, reject) or the first-write race
	// (duplicate_key), empty otherwise.
	Fault string
	At    time.Time
}

// Faults configures injected failures. Each request draws one number from a generator seeded with
// Seed, so a run with the same request order fails the same requests. Faults strike before
// anything is decoded or stored.
type Faults struct {
	Seed int64
	// ServerErrors is the fraction of requests answered 500 (a database error) without storing.
	ServerErrors float64
	// Stalls is the fraction of requests that hang without storing until the client gives up, or
	// StallFor passes (then 504).
	Stalls   float64
	StallFor time.Duration
}

// New returns an empty fake: no connections, no keys.
func New() *DevLake {
	return &DevLake{now: time.Now, conns: map[uint64]Connection{}, byName: map[string]uint64{},
		keys: map[string]*regexp.Regexp{}, nextConn: 1, store: newStore(), rejects: map[writeKey]string{},
		scopes: map[writeKey]bool{}, creating: map[writeKey]bool{}, firstWrite: 20 * time.Millisecond,
		closing: make(chan struct{}), rng: rand.New(rand.NewPCG(0, 0))}
}

// Start serves a new fake on a loopback port until the test ends.
func Start(t testing.TB) *DevLake {
	t.Helper()
	d := New()
	srv := httptest.NewServer(d)
	d.URL = srv.URL
	t.Cleanup(func() {
		d.Close()
		srv.Close()
	})
	return d
}

// Close releases stalled requests. The fake answers 503 afterwards.
func (d *DevLake) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.closed = true
		close(d.closing)
	}
}

// SetClock replaces the clock that stamps created_at and updated_at.
func (d *DevLake) SetClock(now func() time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.now = now
}

// AddConnection creates a webhook connection with a per-connection key, as
// POST /plugins/webhook/connections does. IDs count from 1.
func (d *DevLake) AddConnection(name string) Connection {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := d.nextConn
	d.nextConn++
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", id, name)))
	c := Connection{ID: id, Name: name, APIKey: "devlake-fake-" + hex.EncodeToString(sum[:])[:24]}
	d.conns[id] = c
	d.byName[name] = id
	d.keys[c.APIKey] = regexp.MustCompile(fmt.Sprintf("/plugins/webhook/connections/%d/.*", id))
	return c
}

// AddAPIKey adds a key with an allowedPath regular expression, matched unanchored against the path
// without /rest, as POST /api-keys does (for example "/plugins/webhook/.*").
func (d *DevLake) AddAPIKey(key, allowedPath string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys[key] = regexp.MustCompile(allowedPath)
}

// SetFaults replaces the injected faults and reseeds the generator.
func (d *DevLake) SetFaults(f Faults) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f.StallFor <= 0 {
		f.StallFor = 30 * time.Second
	}
	d.faults = f
	d.rng = rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15))
}

// SetDown answers every request with status (such as 503) until SetDown(0).
func (d *DevLake) SetDown(status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = status
}

// Reject makes connection conn answer 400 with message for the deployment id or issue key id.
func (d *DevLake) Reject(conn uint64, kind Kind, id, message string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rejects[writeKey{conn, kind, id}] = message
}

// Deployments returns the cicd_deployments rows whose scope is the connection, sorted by id.
func (d *DevLake) Deployments(conn uint64) []Deployment {
	d.mu.Lock()
	defer d.mu.Unlock()
	scope := scopeID(conn)
	return sortedValues(d.store.deployments, func(r Deployment) bool { return r.CicdScopeID == scope })
}

// DeploymentCount is len(Deployments(conn)) without copying or sorting rows (for polling).
func (d *DevLake) DeploymentCount(conn uint64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	scope, n := scopeID(conn), 0
	for _, r := range d.store.deployments {
		if r.CicdScopeID == scope {
			n++
		}
	}
	return n
}

// Deployment returns the cicd_deployments row with the id, on whichever connection wrote it last.
func (d *DevLake) Deployment(id string) (Deployment, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.store.deployments[id]
	return r, ok
}

// DeploymentCommits returns the cicd_deployment_commits rows of the connection, sorted by id.
func (d *DevLake) DeploymentCommits(conn uint64) []DeploymentCommit {
	d.mu.Lock()
	defer d.mu.Unlock()
	scope := scopeID(conn)
	return sortedValues(d.store.commits, func(r DeploymentCommit) bool { return r.CicdScopeID == scope })
}

// Issues returns the issues rows of the connection's board, sorted by id.
func (d *DevLake) Issues(conn uint64) []Issue {
	d.mu.Lock()
	defer d.mu.Unlock()
	board := scopeID(conn)
	return sortedValues(d.store.issues, func(r Issue) bool { return r.BoardID == board })
}

// Issue returns the issue with the key on the connection.
func (d *DevLake) Issue(conn uint64, issueKey string) (Issue, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.store.issues[IssueRowID(conn, issueKey)]
	return r, ok
}

// Incidents returns the incidents rows of the connection, sorted by id.
func (d *DevLake) Incidents(conn uint64) []Incident {
	d.mu.Lock()
	defer d.mu.Unlock()
	scope := scopeID(conn)
	return sortedValues(d.store.incidents, func(r Incident) bool { return r.ScopeID == scope })
}

// Writes returns how many accepted posts wrote the deployment id or issue key on the connection.
func (d *DevLake) Writes(conn uint64, kind Kind, id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.store.writes[writeKey{conn, kind, id}]
}

// WriteCounts returns the accepted writes per id of a kind on a connection.
func (d *DevLake) WriteCounts(conn uint64, kind Kind) map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, n := range d.store.writes {
		if k.conn == conn && k.kind == kind {
			out[k.id] = n
		}
	}
	return out
}

// Requests returns every request answered so far, in order.
func (d *DevLake) Requests() []Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Request(nil), d.requests...)
}

// StatusCounts returns how many requests were answered with each status.
func (d *DevLake) StatusCounts() map[int]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[int]int{}
	for _, r := range d.requests {
		out[r.Status]++
	}
	return out
}

var (
	reByID     = regexp.MustCompile(`^/plugins/webhook/connections/(\d+)/(deployments|issues|pull_requests)$`)
	reShort    = regexp.MustCompile(`^/plugins/webhook/(\d+)/(deployments|issues|pull_requests)$`)
	reByName   = regexp.MustCompile(`^/plugins/webhook/connections/by-name/([^/]+)/(deployments|issues|pull_requests)$`)
	reClose    = regexp.MustCompile(`^/plugins/webhook/connections/(\d+)/issue/([^/]+)/close$`)
	successMsg = []byte(`{"code":0,"success":true,"message":"success","causes":null,"data":null}`)
)

// ServeHTTP implements http.Handler.
func (d *DevLake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	rec := Request{Method: r.Method, Path: r.URL.Path, Body: body, At: time.Now()}
	status, resp := d.serve(r, body, &rec)
	rec.Status = status
	d.mu.Lock()
	d.requests = append(d.requests, rec)
	d.mu.Unlock()
	if status == 0 {
		return // the client went away during a stall
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(resp)
}

func errorBody(status int, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"code": status, "success": false, "message": msg, "causes": nil, "data": nil})
	return b
}

func (d *DevLake) serve(r *http.Request, body []byte, rec *Request) (int, []byte) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return http.StatusServiceUnavailable, errorBody(503, "fake DevLake closed")
	}
	if d.down != 0 {
		status := d.down
		d.mu.Unlock()
		rec.Fault = "down"
		return status, errorBody(status, http.StatusText(status))
	}
	u := d.rng.Float64()
	f := d.faults
	d.mu.Unlock()
	switch {
	case u < f.ServerErrors:
		rec.Fault = "server_error"
		return http.StatusInternalServerError, errorBody(500, "Error 1213 (40001): Deadlock found when trying to get lock (injected)")
	case u < f.ServerErrors+f.Stalls:
		rec.Fault = "stall"
		select {
		case <-r.Context().Done():
			return 0, nil
		case <-d.closing:
			return http.StatusServiceUnavailable, errorBody(503, "fake DevLake closed")
		case <-time.After(f.StallFor):
			return http.StatusGatewayTimeout, errorBody(504, "gateway timeout (injected stall)")
		}
	}

	// Only /rest paths are served (and key-checked); /api/rest is config-ui's proxy to them.
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/api/rest/"):
		path = strings.TrimPrefix(path, "/api/rest")
	case strings.HasPrefix(path, "/rest/"):
		path = strings.TrimPrefix(path, "/rest")
	default:
		return http.StatusNotFound, errorBody(404, "devlaketest: only the key-checked /rest (or /api/rest) routes are served")
	}
	if status, msg := d.authorize(r.Header.Get("Authorization"), path); status != 0 {
		return status, errorBody(status, msg)
	}
	if r.Method != http.MethodPost {
		return http.StatusNotFound, errorBody(404, "404 page not found")
	}

	var conn uint64
	var kind Kind
	var closeKey string
	d.mu.Lock()
	switch {
	case reByID.MatchString(path):
		m := reByID.FindStringSubmatch(path)
		conn, _ = strconv.ParseUint(m[1], 10, 64)
		kind = Kind(m[2])
	case reShort.MatchString(path):
		m := reShort.FindStringSubmatch(path)
		conn, _ = strconv.ParseUint(m[1], 10, 64)
		kind = Kind(m[2])
	case reByName.MatchString(path):
		m := reByName.FindStringSubmatch(path)
		conn = d.byName[m[1]]
		kind = Kind(m[2])
	case reClose.MatchString(path):
		m := reClose.FindStringSubmatch(path)
		conn, _ = strconv.ParseUint(m[1], 10, 64)
		closeKey = m[2]
	default:
		d.mu.Unlock()
		return http.StatusNotFound, errorBody(404, "404 page not found")
	}
	_, known := d.conns[conn]
	d.mu.Unlock()
	rec.Connection, rec.Kind = conn, kind
	if !known {
		return http.StatusNotFound, errorBody(404, "record not found")
	}
	if closeKey != "" {
		d.mu.Lock()
		defer d.mu.Unlock()
		if !d.store.closeIssue(conn, closeKey, d.now().UTC()) {
			return http.StatusNotFound, errorBody(404, "record not found")
		}
		return http.StatusOK, successMsg
	}

	m, err := parseBody(body)
	if err != nil {
		return http.StatusInternalServerError, errorBody(500, err.Error())
	}
	d.mu.Lock()
	var write func(now time.Time)
	switch kind {
	case KindDeployment:
		req, msg := decodeDeployment(m)
		if msg == "" {
			if rej, ok := d.rejects[writeKey{conn, kind, req.id}]; ok {
				msg, rec.Fault = rej, "reject"
			}
		}
		if msg != "" {
			d.mu.Unlock()
			return http.StatusBadRequest, errorBody(400, msg)
		}
		write = func(now time.Time) { d.store.upsertDeployment(conn, req, now) }
	case KindPullRequest:
		req, msg, bare := decodePullRequest(m)
		if msg != "" {
			d.mu.Unlock()
			if bare { // a decoding error is answered as a bare string
				b, _ := json.Marshal(msg)
				return http.StatusBadRequest, b
			}
			return http.StatusBadRequest, errorBody(400, msg)
		}
		write = func(now time.Time) { d.store.upsertPullRequest(conn, req, now) }
	default:
		req, msg := decodeIssue(m)
		if msg == "" {
			if rej, ok := d.rejects[writeKey{conn, kind, req.issueKey}]; ok {
				msg, rec.Fault = rej, "reject"
			}
		}
		if msg != "" {
			d.mu.Unlock()
			// The issues endpoint answers a bare JSON string.
			b, _ := json.Marshal(msg)
			return http.StatusBadRequest, b
		}
		write = func(now time.Time) { d.store.upsertIssue(conn, req, now) }
	}
	d.mu.Unlock()
	switch status, body := d.createScope(r, conn, kind, rec); {
	case status < 0:
		return 0, nil
	case status != 0:
		return status, body
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	write(d.now().UTC())
	return http.StatusOK, successMsg
}

// scopeTables name the row DevLake creates in the first write of a kind to a connection: the
// board webhook:<id> for issues (measured on v1.0.3: boards_pkey), the CI/CD scope for deployments
// (inferred: the same create-if-missing pattern).
var scopeTables = map[Kind]string{KindIssue: "boards", KindDeployment: "cicd_scopes"}

// createScope is the first write of a kind to a connection creating its scope row, in a
// transaction that stays open for the first-write window (or until HoldFirstPosts is released).
// A first write that arrives while another one is creating the row fails as DevLake v1.0.3 does
// on PostgreSQL: 400 with duplicate key value … (SQLSTATE 23505), storing nothing. It returns 0
// when the write may go ahead, and -1 when the client went away meanwhile.
func (d *DevLake) createScope(r *http.Request, conn uint64, kind Kind, rec *Request) (int, []byte) {
	table, ok := scopeTables[kind]
	if !ok {
		return 0, nil
	}
	k := writeKey{conn: conn, kind: kind}
	d.mu.Lock()
	if d.scopes[k] {
		d.mu.Unlock()
		return 0, nil
	}
	if d.creating[k] {
		d.mu.Unlock()
		rec.Fault = "duplicate_key"
		return http.StatusBadRequest, errorBody(400, fmt.Sprintf(
			`ERROR: duplicate key value violates unique constraint "%s_pkey" (SQLSTATE 23505)`, table))
	}
	d.creating[k] = true
	hold, window := d.hold, d.firstWrite
	d.mu.Unlock()
	d.pending.Add(1)
	var timer <-chan time.Time
	if hold == nil {
		timer = time.After(window)
	}
	status, body := 0, []byte(nil)
	select {
	case <-hold:
	case <-timer:
	case <-r.Context().Done():
		status = -1 // the client went away: the transaction rolls back
	case <-d.closing:
		status, body = http.StatusServiceUnavailable, errorBody(503, "fake DevLake closed")
	}
	d.pending.Add(-1)
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.creating, k)
	if status == 0 {
		d.scopes[k] = true
	}
	return status, body
}

// SetFirstWriteWindow sets how long the first write of each kind to a connection keeps its scope
// transaction open (20 ms by default); concurrent first writes in that window fail with 23505.
func (d *DevLake) SetFirstWriteWindow(w time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.firstWrite = w
}

// HoldFirstPosts keeps the transaction of every first write to a fresh connection open until
// release is called, so a test can send a concurrent first write deterministically. Pending
// reports how many first writes are held.
func (d *DevLake) HoldFirstPosts() (release func()) {
	ch := make(chan struct{})
	d.mu.Lock()
	d.hold = ch
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			d.hold = nil
			d.mu.Unlock()
			close(ch)
		})
	}
}

// Pending returns how many first writes are inside their scope transaction.
func (d *DevLake) Pending() int { return int(d.pending.Load()) }

// authorize checks the API key the way DevLake's /rest middleware does. It returns 0 when allowed.
func (d *DevLake) authorize(header, path string) (int, string) {
	key, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || key == "" {
		return http.StatusUnauthorized, "token is not present or malformed"
	}
	d.mu.Lock()
	allowed, known := d.keys[key]
	d.mu.Unlock()
	if !known {
		return http.StatusForbidden, "api key is invalid"
	}
	if !allowed.MatchString(path) {
		return http.StatusForbidden, fmt.Sprintf("path %s is not allowed for this api key", path)
	}
	return 0, ""
}
