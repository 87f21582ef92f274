// Package webrcatest provides httptest fakes of Red Hat SSO's token endpoint and of the WebRCA
// incidents API. They behave like the real services where doraflow depends on it, and reject what
// the real services reject: an unknown grant, a missing client_id, wrong client credentials, a
// revoked refresh token, an unknown scope, a missing or expired bearer token, a bad page size or
// order. Failures can be injected for the next requests.
package webrcatest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TokenPath is Red Hat SSO's token endpoint path.
const TokenPath = "/auth/realms/redhat-external/protocol/openid-connect/token"

// SSO is a fake of the Red Hat SSO (Keycloak) token endpoint.
type SSO struct {
	srv *httptest.Server

	mu           sync.Mutex
	publicClient string
	clients      map[string]string // confidential clients: id → secret
	refresh      map[string]bool   // valid refresh (offline) tokens
	scopes       map[string]bool
	expiresIn    int
	rotate       bool
	issued       map[string]bool // valid access tokens
	seq          int
	fail         []Failure
	exchanges    map[string]int // by grant_type, answered 200
	requests     int
	lastForm     url.Values
}

// Failure is an injected answer.
type Failure struct {
	Status      int
	ContentType string
	Body        string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
}

// NewSSO starts a fake with the public client cloud-services, the scopes openid and api.ocm, and
// access tokens living 900 s (Red Hat SSO's lifetime).
func NewSSO(t testing.TB) *SSO {
	t.Helper()
	s := StartSSO()
	t.Cleanup(s.Close)
	return s
}

// StartSSO starts the fake on a loopback port, for demos and end-to-end runs; Close stops it.
func StartSSO() *SSO {
	s := &SSO{publicClient: "cloud-services", clients: map[string]string{}, refresh: map[string]bool{},
		scopes: map[string]bool{"openid": true, "api.ocm": true, "profile": true}, expiresIn: 900,
		issued: map[string]bool{}, exchanges: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *SSO) Close() { s.srv.Close() }

// URL is the token endpoint.
func (s *SSO) URL() string { return s.srv.URL + TokenPath }

// AddClient registers a service account.
func (s *SSO) AddClient(id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = secret
}

// AddOfflineToken registers a valid offline token.
func (s *SSO) AddOfflineToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh[token] = true
}

// RevokeRefreshToken makes token invalid, as logging out or an expired session does.
func (s *SSO) RevokeRefreshToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, token)
}

// SetExpiresIn sets the lifetime of the access tokens issued from now on.
func (s *SSO) SetExpiresIn(seconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiresIn = seconds
}

// RotateRefreshTokens makes the refresh_token grant return a new refresh token, as Keycloak does
// with refresh token rotation; the new one is then valid too.
func (s *SSO) RotateRefreshTokens(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate = on
}

// ExpireAccessTokens makes every issued access token invalid, so the API answers 401.
func (s *SSO) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued = map[string]bool{}
}

// Valid reports whether token is an unexpired access token this fake issued.
func (s *SSO) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[token]
}

// FailNext makes the next len(f) requests answer f in order.
func (s *SSO) FailNext(f ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, f...)
}

// Exchanges returns the number of successful exchanges of grant ("" for all).
func (s *SSO) Exchanges(grant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if grant == "" {
		n := 0
		for _, v := range s.exchanges {
			n += v
		}
		return n
	}
	return s.exchanges[grant]
}

// Requests returns the number of requests answered, failures included.
func (s *SSO) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// LastForm returns the form of the last request.
func (s *SSO) LastForm() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastForm
}

func (s *SSO) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if len(s.fail) > 0 {
		f := s.fail[0]
		s.fail = s.fail[1:]
		if f.ContentType != "" {
			w.Header().Set("Content-Type", f.ContentType)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return
	}
	if r.URL.Path != TokenPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	form := r.PostForm
	s.lastForm = form
	grant := form.Get("grant_type")
	switch grant {
	case "":
		oauthErr(w, http.StatusBadRequest, "invalid_request", "Missing form parameter: grant_type")
	case "refresh_token":
		s.refreshGrant(w, r, form)
	case "client_credentials":
		s.clientCredentials(w, r, form)
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
}

func (s *SSO) refreshGrant(w http.ResponseWriter, _ *http.Request, form url.Values) {
	switch client := form.Get("client_id"); {
	case client == "":
		oauthErr(w, http.StatusBadRequest, "invalid_request", "Missing parameter: client_id")
		return
	case client != s.publicClient:
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return
	}
	rt := form.Get("refresh_token")
	if rt == "" {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "Missing parameter: refresh_token")
		return
	}
	if !s.refresh[rt] {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
		return
	}
	next := ""
	if s.rotate {
		s.seq++
		next = fmt.Sprintf("rotated-refresh-%d", s.seq)
		s.refresh[next] = true
	}
	s.issue(w, "refresh_token", next)
}

func (s *SSO) clientCredentials(w http.ResponseWriter, r *http.Request, form url.Values) {
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if want, known := s.clients[id]; !known || id == "" || want != secret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return
	}
	for _, sc := range strings.Fields(form.Get("scope")) {
		if !s.scopes[sc] {
			oauthErr(w, http.StatusBadRequest, "invalid_scope", "Invalid scopes: "+form.Get("scope"))
			return
		}
	}
	s.issue(w, "client_credentials", "")
}

func (s *SSO) issue(w http.ResponseWriter, grant, refresh string) {
	s.seq++
	at := fmt.Sprintf("access-%d", s.seq)
	s.issued[at] = true
	s.exchanges[grant]++
	resp := map[string]any{"access_token": at, "expires_in": s.expiresIn, "refresh_expires_in": 0,
		"token_type": "Bearer", "not-before-policy": 0, "session_state": "00000000-0000-0000-0000-000000000000",
		"scope": "openid api.ocm"}
	if refresh != "" {
		resp["refresh_token"] = refresh
	}
	writeJSON(w, http.StatusOK, resp)
}

func oauthErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
