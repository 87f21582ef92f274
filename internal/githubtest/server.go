// Package githubtest is a fake GitHub for tests: an httptest server holding in-memory repositories
// (commit graphs with squash, merge and rebase merges and force pushes) that answers the REST
// compare and commit endpoints and the GraphQL pull-request query the enricher sends, the way
// GitHub does — Link pagination, compare statuses, 404/422, rate-limit headers, 403 when the quota
// is spent, secondary limits with Retry-After, injected 5xx — and counts every request.
package githubtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Endpoint names used by Calls.
const (
	EndpointCompare  = "compare"
	EndpointCommit   = "commit"
	EndpointGraphQL  = "graphql"
	EndpointAppToken = "app_token"
)

// Fault is an answer the server gives instead of the real one.
type Fault struct {
	Status int
	Header http.Header
	Body   string
}

// ServerError is a 503 as GitHub sends it during an outage.
var ServerError = Fault{Status: http.StatusServiceUnavailable, Body: `{"message":"Service Unavailable"}`}

// SecondaryLimit returns GitHub's secondary-rate-limit answer: 403 with Retry-After.
func SecondaryLimit(retryAfter time.Duration) Fault {
	return Fault{Status: http.StatusForbidden,
		Header: http.Header{"Retry-After": {strconv.Itoa(int(retryAfter / time.Second))}},
		Body: `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",` +
			`"documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`}
}

type quota struct {
	limit, remaining int
	reset            time.Time
}

// Server is the fake GitHub.
type Server struct {
	srv *httptest.Server

	mu     sync.Mutex
	repos  map[string]*Repo
	calls  map[string]int
	status map[int]int
	log    []string
	faults []Fault
	quotas map[string]*quota // resource → quota; absent: unlimited
	tokens map[string]bool   // accepted tokens; empty: no authentication required
	app    *appConfig
	now    func() time.Time
}

type appConfig struct {
	id, installation int64
	key              *rsa.PublicKey
	issued           int
}

// New starts a fake GitHub, closed when the test ends.
func New(t testing.TB) *Server {
	s := Start()
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake GitHub on a loopback port, for demos and end-to-end runs; Close stops it.
func Start() *Server {
	s := &Server{repos: map[string]*Repo{}, calls: map[string]int{}, status: map[int]int{}, quotas: map[string]*quota{},
		tokens: map[string]bool{}, now: time.Now}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL returns the REST root with its trailing slash, ready for go-github's BaseURL.
func (s *Server) URL() string { return s.srv.URL + "/" }

// Repo returns the repository owner/name, creating it empty.
func (s *Server) Repo(owner, name string) *Repo {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(owner + "/" + name)
	if r, ok := s.repos[key]; ok {
		return r
	}
	r := &Repo{s: s, owner: strings.ToLower(owner), name: strings.ToLower(name), commits: map[string]*commit{},
		prs: map[int]*pullRequest{}, clock: Epoch}
	s.repos[key] = r
	return r
}

// Forbid makes a repository answer 403 "Resource not accessible by integration".
func (s *Server) Forbid(owner, name string) {
	r := s.Repo(owner, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	r.forbidden = true
}

// FailNext makes the next n requests (any endpoint) answer f.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.faults = append(s.faults, f)
	}
}

// PendingFaults returns how many injected faults are still to be served.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults)
}

// SetQuota limits a rate-limit resource (core, graphql): remaining requests until reset, after
// which the quota is limit again. A request with no quota left gets 403 and X-RateLimit-Remaining: 0.
func (s *Server) SetQuota(resource string, limit, remaining int, reset time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quotas[resource] = &quota{limit: limit, remaining: remaining, reset: reset}
}

// RequireToken makes the server answer 401 to requests without one of the accepted tokens.
func (s *Server) RequireToken(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tokens {
		s.tokens[t] = true
	}
}

// EnableApp accepts JWTs signed by key for app id and issues installation tokens for installation.
// Installation tokens are then required on every API request.
func (s *Server) EnableApp(id, installation int64, key *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app = &appConfig{id: id, installation: installation, key: key}
}

// TokensIssued returns how many installation tokens the app endpoint issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.app == nil {
		return 0
	}
	return s.app.issued
}

// Calls returns the number of requests per endpoint.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// TotalCalls returns the number of API requests (app token exchanges excluded).
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.calls {
		if k != EndpointAppToken {
			n += v
		}
	}
	return n
}

// Statuses returns the number of responses per HTTP status.
func (s *Server) Statuses() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int, len(s.status))
	for k, v := range s.status {
		out[k] = v
	}
	return out
}

// Requests returns "METHOD path?query" of every request, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

var (
	compareRoute = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/compare/([^/]+)$`)
	commitRoute  = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/commits/([^/]+)$`)
	tokenRoute   = regexp.MustCompile(`^/app/installations/(\d+)/access_tokens$`)
)

func (s *Server) serve(rw http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &statusRecorder{ResponseWriter: rw, code: http.StatusOK}
	defer func() { s.status[w.code]++ }()
	path := strings.TrimPrefix(r.URL.Path, "/api/v3") // GitHub Enterprise Server layout
	if path == "/api/graphql" {
		path = "/graphql"
	}
	s.log = append(s.log, r.Method+" "+path+query(r))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")

	if m := tokenRoute.FindStringSubmatch(path); m != nil && r.Method == http.MethodPost {
		s.calls[EndpointAppToken]++
		s.issueToken(w, r, m[1])
		return
	}
	endpoint, resource := "", "core"
	switch {
	case path == "/graphql" && r.Method == http.MethodPost:
		endpoint, resource = EndpointGraphQL, "graphql"
	case compareRoute.MatchString(path) && r.Method == http.MethodGet:
		endpoint = EndpointCompare
	case commitRoute.MatchString(path) && r.Method == http.MethodGet:
		endpoint = EndpointCommit
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	s.calls[endpoint]++

	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		for k, v := range f.Header {
			w.Header()[k] = v
		}
		s.rateHeaders(w, resource, false)
		w.WriteHeader(f.Status)
		_, _ = io.WriteString(w, f.Body)
		return
	}
	if !s.authorized(r) {
		// GitHub's answer to a missing, revoked or expired token, on every endpoint.
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials",
			"documentation_url": "https://docs.github.com/rest", "status": "401"})
		return
	}
	if !s.rateHeaders(w, resource, true) {
		writeJSON(w, http.StatusForbidden, map[string]string{
			"message":           "API rate limit exceeded for installation ID 1.",
			"documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"})
		return
	}
	switch endpoint {
	case EndpointGraphQL:
		s.graphql(w, r)
	case EndpointCompare:
		m := compareRoute.FindStringSubmatch(path)
		s.compare(w, r, m[1], m[2], m[3])
	case EndpointCommit:
		m := commitRoute.FindStringSubmatch(path)
		s.commit(w, m[1], m[2], m[3])
	}
}

func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

// rateHeaders writes the X-RateLimit-* headers and spends one unit of the quota; it reports false
// when none was left.
func (s *Server) rateHeaders(w http.ResponseWriter, resource string, spend bool) bool {
	q, ok := s.quotas[resource]
	if !ok {
		q = &quota{limit: 5000, remaining: 5000, reset: s.now().Add(time.Hour).Truncate(time.Second)}
	} else if !s.now().Before(q.reset) {
		q.remaining, q.reset = q.limit, s.now().Add(time.Hour).Truncate(time.Second)
	}
	allowed := q.remaining > 0
	if spend && allowed && ok {
		q.remaining--
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(q.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(q.remaining))
	h.Set("X-RateLimit-Used", strconv.Itoa(q.limit-q.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(q.reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", resource)
	return allowed
}

func (s *Server) authorized(r *http.Request) bool {
	if len(s.tokens) == 0 {
		return true
	}
	auth := r.Header.Get("Authorization")
	for _, prefix := range []string{"Bearer ", "token "} {
		if t, ok := strings.CutPrefix(auth, prefix); ok && s.tokens[t] {
			return true
		}
	}
	return false
}

func (s *Server) repo(owner, name string) *Repo { return s.repos[strings.ToLower(owner+"/"+name)] }

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found",
		"documentation_url": "https://docs.github.com/rest"})
}

func forbidden(w http.ResponseWriter) {
	writeJSON(w, http.StatusForbidden, map[string]string{"message": "Resource not accessible by integration",
		"documentation_url": "https://docs.github.com/rest"})
}

// compare answers GET /repos/{o}/{r}/compare/{base}...{head}. Without per_page or page GitHub
// returns at most 250 commits (the newest); with them it pages through all, default 30, max 100.
func (s *Server) compare(w http.ResponseWriter, r *http.Request, owner, name, spec string) {
	repo := s.repo(owner, name)
	if repo == nil {
		notFound(w)
		return
	}
	if repo.forbidden {
		forbidden(w)
		return
	}
	baseRef, headRef, ok := strings.Cut(spec, "...")
	if !ok {
		notFound(w)
		return
	}
	base, ok1 := repo.resolve(baseRef)
	head, ok2 := repo.resolve(headRef)
	if !ok1 || !ok2 {
		notFound(w)
		return
	}
	inHead, inBase := repo.ancestors(head), repo.ancestors(base)
	var ahead []*commit
	behind := 0
	for sha := range inHead {
		if !inBase[sha] {
			ahead = append(ahead, repo.commits[sha])
		}
	}
	for sha := range inBase {
		if !inHead[sha] {
			behind++
		}
	}
	// Chronological order; creation order is topological and chronological in the fake.
	sort.Slice(ahead, func(i, j int) bool { return ahead[i].index < ahead[j].index })
	status := "diverged"
	switch {
	case len(ahead) == 0 && behind == 0:
		status = "identical"
	case behind == 0:
		status = "ahead"
	case len(ahead) == 0:
		status = "behind"
	}
	mergeBase := ""
	best := -1
	for sha := range inBase {
		if inHead[sha] && repo.commits[sha].index > best {
			best, mergeBase = repo.commits[sha].index, sha
		}
	}
	total := len(ahead)
	q := r.URL.Query()
	page := ahead
	if q.Has("per_page") || q.Has("page") {
		per := atoiDefault(q.Get("per_page"), 30)
		per = min(max(per, 1), 100)
		p := max(atoiDefault(q.Get("page"), 1), 1)
		last := max((total+per-1)/per, 1)
		lo, hi := min((p-1)*per, total), min(p*per, total)
		page = ahead[lo:hi]
		var links []string
		link := func(n int, rel string) {
			u := *r.URL
			v := u.Query()
			v.Set("per_page", strconv.Itoa(per))
			v.Set("page", strconv.Itoa(n))
			u.RawQuery = v.Encode()
			links = append(links, fmt.Sprintf(`<%s%s>; rel="%s"`, s.srv.URL, u.RequestURI(), rel))
		}
		if p < last {
			link(p+1, "next")
			link(last, "last")
		}
		if p > 1 {
			link(1, "first")
			link(p-1, "prev")
		}
		if len(links) > 0 {
			w.Header().Set("Link", strings.Join(links, ", "))
		}
	} else if len(page) > 250 {
		page = page[len(page)-250:]
	}
	commits := make([]any, 0, len(page))
	for _, c := range page {
		commits = append(commits, repo.commitJSON(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"url":               fmt.Sprintf("%srepos/%s/%s/compare/%s", s.URL(), repo.owner, repo.name, spec),
		"status":            status,
		"ahead_by":          len(ahead),
		"behind_by":         behind,
		"total_commits":     total,
		"base_commit":       repo.commitJSON(repo.commits[base]),
		"merge_base_commit": repo.commitJSON(repo.commits[mergeBase]),
		"commits":           commits,
		"files":             []any{},
	})
}

func atoiDefault(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

// commit answers GET /repos/{o}/{r}/commits/{sha}: 404 for an unknown repository, 422 for an
// unknown commit, as GitHub does.
func (s *Server) commit(w http.ResponseWriter, owner, name, ref string) {
	repo := s.repo(owner, name)
	if repo == nil {
		notFound(w)
		return
	}
	if repo.forbidden {
		forbidden(w)
		return
	}
	sha, ok := repo.resolve(ref)
	if !ok {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "No commit found for SHA: " + ref,
			"documentation_url": "https://docs.github.com/rest/commits/commits#get-a-commit"})
		return
	}
	writeJSON(w, http.StatusOK, repo.commitJSON(repo.commits[sha]))
}

func (r *Repo) commitJSON(c *commit) map[string]any {
	if c == nil {
		return nil
	}
	parents := make([]any, 0, len(c.parents))
	for _, p := range c.parents {
		parents = append(parents, map[string]string{"sha": p})
	}
	return map[string]any{
		"sha":      c.sha,
		"html_url": r.URL() + "/commit/" + c.sha,
		"commit": map[string]any{
			"author":    map[string]any{"name": c.author + " Name", "email": c.author + "@example.com", "date": c.authored.Format(time.RFC3339)},
			"committer": map[string]any{"name": "GitHub", "email": "noreply@github.com", "date": c.committed.Format(time.RFC3339)},
			"message":   c.title,
		},
		"author":  map[string]any{"login": c.author},
		"parents": parents,
	}
}

var aliasPattern = regexp.MustCompile(`(c\d+): object\(oid: "([0-9a-f]{40})"\)`)

// graphql answers the enricher's pull-request query: for each aliased commit object, its
// associated pull requests with their first 100 commits' author dates. Errors come with HTTP 200,
// as GitHub sends them.
func (s *Server) graphql(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Query     string            `json:"query"`
		Variables map[string]string `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Query == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "Problems parsing JSON"})
		return
	}
	rate := map[string]any{"remaining": 5000, "resetAt": s.now().Add(time.Hour).UTC().Format(time.RFC3339)}
	if q, ok := s.quotas["graphql"]; ok {
		rate = map[string]any{"remaining": q.remaining, "resetAt": q.reset.UTC().Format(time.RFC3339)}
	}
	owner, name := req.Variables["owner"], req.Variables["name"]
	repo := s.repo(owner, name)
	if repo == nil {
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"rateLimit": rate, "repository": nil},
			"errors": []any{map[string]any{"type": "NOT_FOUND", "path": []string{"repository"},
				"message": fmt.Sprintf("Could not resolve to a Repository with the name '%s/%s'.", owner, name)}}})
		return
	}
	if repo.forbidden {
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"rateLimit": rate, "repository": nil},
			"errors": []any{map[string]any{"type": "FORBIDDEN", "path": []string{"repository"},
				"message": "Resource not accessible by integration"}}})
		return
	}
	objects := map[string]any{}
	for _, m := range aliasPattern.FindAllStringSubmatch(req.Query, -1) {
		c, ok := repo.commits[m[2]]
		if !ok {
			objects[m[1]] = nil
			continue
		}
		nodes := []any{}
		for _, n := range c.prs {
			pr := repo.prs[n]
			var commits []any
			for i, sha := range pr.commits {
				if i == 100 {
					break
				}
				commits = append(commits, map[string]any{"commit": map[string]any{
					"authoredDate": repo.commits[sha].authored.Format(time.RFC3339)}})
			}
			node := map[string]any{"number": pr.number, "url": repo.prURL(pr.number),
				"createdAt": pr.created.Format(time.RFC3339), "merged": !pr.merged.IsZero(), "mergedAt": nil,
				"commits": map[string]any{"nodes": commits}}
			if !pr.merged.IsZero() {
				node["mergedAt"] = pr.merged.Format(time.RFC3339)
			}
			nodes = append(nodes, node)
			if len(nodes) == 5 {
				break
			}
		}
		objects[m[1]] = map[string]any{"associatedPullRequests": map[string]any{"nodes": nodes}}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"rateLimit": rate, "repository": objects}})
}

// issueToken answers POST /app/installations/{id}/access_tokens after verifying the app's JWT.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request, installation string) {
	if s.app == nil || installation != strconv.FormatInt(s.app.installation, 10) {
		notFound(w)
		return
	}
	jwt, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s.verifyJWT(jwt) != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "A JSON web token could not be decoded"})
		return
	}
	s.app.issued++
	tok := fmt.Sprintf("ghs_fake%d", s.app.issued)
	s.tokens[tok] = true
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok,
		"expires_at": s.now().Add(time.Hour).UTC().Format(time.RFC3339)})
}

func (s *Server) verifyJWT(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("want 3 parts, got %d", len(parts))
	}
	enc := base64.RawURLEncoding
	var header struct{ Alg string }
	var claims struct {
		Iat, Exp int64
		Iss      any
	}
	hb, err1 := enc.DecodeString(parts[0])
	cb, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Errorf("bad encoding")
	}
	if json.Unmarshal(hb, &header) != nil || header.Alg != "RS256" || json.Unmarshal(cb, &claims) != nil {
		return fmt.Errorf("bad header or claims")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.app.key, crypto.SHA256, sum[:], sig); err != nil {
		return err
	}
	now := s.now().Unix()
	if fmt.Sprint(claims.Iss) != strconv.FormatInt(s.app.id, 10) || claims.Exp <= now || claims.Iat > now+60 ||
		claims.Exp-claims.Iat > 600 {
		return fmt.Errorf("bad claims")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client sees a truncated body if this fails
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}
