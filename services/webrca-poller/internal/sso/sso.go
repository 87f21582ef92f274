// Package sso exchanges Red Hat SSO credentials for access tokens to call OpenShift APIs such as
// WebRCA: the client_credentials grant for a service account, or the refresh_token grant with a
// person's offline token. It caches the access token until shortly before it expires, refreshes it
// single-flight, keeps a rotated refresh token in memory, retries SSO's transient failures with
// backoff, and reports a rejection (4xx) as a configuration failure. It never logs, and its errors
// never contain a token or a form body.
package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/doraflow/doraflow/internal/config"
)

// DefaultOfflineClientID is the public client that offline tokens are issued to.
const DefaultOfflineClientID = "cloud-services"

// DefaultScope is requested with client_credentials.
const DefaultScope = "openid api.ocm"

// Grant is an OAuth 2.0 grant type.
type Grant string

// Grants doraflow uses.
const (
	GrantClientCredentials Grant = "client_credentials"
	GrantRefreshToken      Grant = "refresh_token"
)

// Outcome is the result of one exchange with SSO, for metrics.
type Outcome string

// Outcomes.
const (
	OutcomeOK Outcome = "ok"
	// OutcomeError: a transient failure (5xx, 429, network, an unreadable answer); retried.
	OutcomeError Outcome = "error"
	// OutcomeRejected: SSO refused the credentials (4xx); a configuration failure.
	OutcomeRejected Outcome = "rejected"
	// OutcomeRotatedRejected: SSO refused a rotated refresh token; the configured one is tried next.
	OutcomeRotatedRejected Outcome = "rotated_rejected"
)

// Config configures a Source. Set ClientID and ClientSecret for a service account (preferred), or
// OfflineToken for the refresh_token grant.
type Config struct {
	TokenURL     string
	ClientID     string
	ClientSecret config.Secret
	// Scope sent with client_credentials (default DefaultScope).
	Scope        string
	OfflineToken config.Secret
	// OfflineClientID is the client_id sent with the refresh_token grant (default cloud-services).
	OfflineClientID string

	HTTPClient *http.Client
	// Timeout bounds one exchange request (default 30s).
	Timeout time.Duration
	// Attempts bounds the exchanges of one refresh when SSO fails transiently (default 4).
	Attempts int
	// Backoff is the wait before the second attempt; it doubles after each (default 1s).
	Backoff time.Duration
	// EarlyRefresh is how long before expires_in a cached token is replaced (default 60s). For
	// tokens living less than twice that, half their lifetime is used instead.
	EarlyRefresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observe, when set, is called after each exchange with SSO.
	Observe func(Grant, Outcome)
}

// ErrRejected means SSO refused the credentials (a 4xx other than 408 and 429): an expired or
// revoked offline token, a wrong client secret. Retrying cannot fix it; the configuration must.
var ErrRejected = errors.New("SSO rejected the credentials")

// RejectedError is a rejection, with the OAuth error SSO gave. It matches ErrRejected.
type RejectedError struct {
	Grant  Grant
	Status int
	// Code and Description are SSO's OAuth error (RFC 6749 §5.2), such as invalid_grant / "Offline
	// user session not found"; they never contain a credential.
	Code        string
	Description string
}

func (e *RejectedError) Error() string {
	msg := fmt.Sprintf("SSO rejected the %s grant: HTTP %d", e.Grant, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Retryable is false: a rejection needs a configuration change.
func (e *RejectedError) Retryable() bool { return false }

// TransientError is an exchange that failed in a way that may pass: 5xx, 429, network, timeout, an
// unreadable response.
type TransientError struct {
	Grant    Grant
	Attempts int
	// RetryAfter is SSO's Retry-After (at most an hour), when it sent one.
	RetryAfter time.Duration
	Err        error
}

// RetryDelay is the server's Retry-After, or 0: the caller must not ask again sooner.
func (e *TransientError) RetryDelay() time.Duration { return e.RetryAfter }

// busyError is a 429, 408 or 5xx answer, with its Retry-After.
type busyError struct {
	status     int
	retryAfter time.Duration
}

func (e *busyError) Error() string {
	if e.retryAfter > 0 {
		return fmt.Sprintf("token endpoint answered HTTP %d, retry after %s", e.status, e.retryAfter)
	}
	return fmt.Sprintf("token endpoint answered HTTP %d", e.status)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped at an hour.
func retryAfter(v string, now time.Time) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), time.Hour)
	}
	return 0
}

func (e *TransientError) Error() string {
	return fmt.Sprintf("SSO %s exchange failed after %d attempts: %v", e.Grant, e.Attempts, e.Err)
}

// Unwrap returns the last attempt's cause.
func (e *TransientError) Unwrap() error { return e.Err }

// Retryable is true.
func (e *TransientError) Retryable() bool { return true }

// Source hands out access tokens. It is safe for concurrent use; concurrent callers share one
// exchange.
type Source struct {
	cfg   Config
	grant Grant
	sem   chan struct{} // single flight: held while exchanging

	mu       sync.Mutex
	token    string
	expires  time.Time
	rotated  string // refresh token returned by SSO; preferred over the configured one
	rejected error  // last rejection; cleared by a successful exchange
}

// New returns a Source. It prefers client_credentials when a client id and secret are set.
func New(cfg Config) (*Source, error) {
	if _, err := url.Parse(cfg.TokenURL); err != nil || cfg.TokenURL == "" {
		return nil, fmt.Errorf("SSO token URL %q is not a URL", cfg.TokenURL)
	}
	s := &Source{cfg: cfg, sem: make(chan struct{}, 1)}
	switch {
	case cfg.ClientID != "" && cfg.ClientSecret.IsSet():
		s.grant = GrantClientCredentials
	case cfg.OfflineToken.IsSet():
		s.grant = GrantRefreshToken
	default:
		return nil, errors.New("no SSO credentials: set a client id and secret, or an offline token")
	}
	if s.cfg.Scope == "" {
		s.cfg.Scope = DefaultScope
	}
	if s.cfg.OfflineClientID == "" {
		s.cfg.OfflineClientID = DefaultOfflineClientID
	}
	if s.cfg.HTTPClient == nil {
		s.cfg.HTTPClient = &http.Client{}
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = 30 * time.Second
	}
	if s.cfg.Attempts <= 0 {
		s.cfg.Attempts = 4
	}
	if s.cfg.Backoff <= 0 {
		s.cfg.Backoff = time.Second
	}
	if s.cfg.EarlyRefresh <= 0 {
		s.cfg.EarlyRefresh = time.Minute
	}
	if s.cfg.Now == nil {
		s.cfg.Now = time.Now
	}
	return s, nil
}

// Grant returns the grant the source uses.
func (s *Source) Grant() Grant { return s.grant }

// Token returns a valid access token, exchanging credentials when the cached one is missing or
// about to expire. Errors are *RejectedError, *TransientError or ctx's error.
func (s *Source) Token(ctx context.Context) (string, error) {
	if tok := s.cached(); tok != "" {
		return tok, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.sem }()
	if tok := s.cached(); tok != "" {
		return tok, nil // another caller refreshed while this one waited
	}
	return s.refresh(ctx)
}

// Invalidate drops token from the cache if it is the cached one, after an API refused it.
func (s *Source) Invalidate(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == token {
		s.token, s.expires = "", time.Time{}
	}
}

// Err returns the last rejection by SSO, or nil once an exchange succeeded since. It is the
// readiness signal for bad credentials.
func (s *Source) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

func (s *Source) cached() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.cfg.Now().Before(s.expires) {
		return s.token
	}
	return ""
}

func (s *Source) refresh(ctx context.Context) (string, error) {
	backoff := s.cfg.Backoff
	var last error
	for attempt := 1; attempt <= s.cfg.Attempts; attempt++ {
		s.mu.Lock()
		rotated := s.rotated
		s.mu.Unlock()
		refreshToken := s.cfg.OfflineToken.Reveal()
		if rotated != "" {
			refreshToken = rotated
		}
		tr, err := s.exchange(ctx, refreshToken)
		if err == nil {
			s.store(tr)
			s.observe(OutcomeOK)
			return tr.AccessToken, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		var rej *RejectedError
		if errors.As(err, &rej) {
			if rotated != "" {
				// The rotated token stopped working (a session ended, a server restarted): forget it
				// and try the configured one right away.
				s.mu.Lock()
				s.rotated = ""
				s.mu.Unlock()
				s.observe(OutcomeRotatedRejected)
				attempt--
				continue
			}
			s.mu.Lock()
			s.token, s.expires, s.rejected = "", time.Time{}, rej
			s.mu.Unlock()
			s.observe(OutcomeRejected)
			return "", rej
		}
		s.observe(OutcomeError)
		last = err
		var busy *busyError
		if errors.As(err, &busy) && busy.retryAfter > 0 {
			// SSO said when to come back: the remaining attempts would only be refused.
			return "", &TransientError{Grant: s.grant, Attempts: attempt, RetryAfter: busy.retryAfter, Err: err}
		}
		if attempt == s.cfg.Attempts {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
	return "", &TransientError{Grant: s.grant, Attempts: s.cfg.Attempts, Err: last}
}

func (s *Source) observe(o Outcome) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(s.grant, o)
	}
}

func (s *Source) store(tr tokenResponse) {
	// A lifetime beyond a day is not believed (and would overflow a Duration when absurd).
	life := time.Duration(min(tr.ExpiresIn, 86400)) * time.Second
	early := min(s.cfg.EarlyRefresh, life/2)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = tr.AccessToken
	s.expires = s.cfg.Now().Add(life - early)
	s.rejected = nil
	if s.grant == GrantRefreshToken && tr.RefreshToken != "" {
		s.rotated = tr.RefreshToken
	}
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

// exchange makes one token request. Its errors never include the form.
func (s *Source) exchange(ctx context.Context, refreshToken string) (tokenResponse, error) {
	form := url.Values{}
	form.Set("grant_type", string(s.grant))
	switch s.grant {
	case GrantClientCredentials:
		if s.cfg.Scope != "" {
			form.Set("scope", s.cfg.Scope)
		}
	case GrantRefreshToken:
		form.Set("client_id", s.cfg.OfflineClientID)
		form.Set("refresh_token", refreshToken)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, fmt.Errorf("build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if s.grant == GrantClientCredentials {
		// RFC 6749 §2.3.1: form-encode the id and secret before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret.Reveal()))
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		// *url.Error carries the URL (no credentials in it) and the cause; never the body.
		return tokenResponse{}, fmt.Errorf("POST token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokenResponse{}, fmt.Errorf("read token response: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return tokenResponse{}, &busyError{status: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())} // a date of the server's wall clock
	case resp.StatusCode >= 400:
		var oe oauthError
		_ = json.Unmarshal(body, &oe) // best effort: the body may be HTML
		return tokenResponse{}, &RejectedError{Grant: s.grant, Status: resp.StatusCode,
			Code: clip(oe.Code, 64), Description: clip(oe.Description, 200)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return tokenResponse{}, fmt.Errorf("token endpoint answered HTTP %d", resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return tokenResponse{}, fmt.Errorf("token endpoint answered content type %q, want application/json", clip(resp.Header.Get("Content-Type"), 60))
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		// The error of a JSON decode may quote part of the body, which holds tokens: don't wrap it.
		return tokenResponse{}, errors.New("token response is not the expected JSON")
	}
	if tr.AccessToken == "" {
		return tokenResponse{}, errors.New("token response has no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return tokenResponse{}, fmt.Errorf("token response has token_type %q, want Bearer", clip(tr.TokenType, 20))
	}
	if tr.ExpiresIn <= 0 {
		return tokenResponse{}, errors.New("token response has no positive expires_in")
	}
	return tr, nil
}

// clip shortens s and keeps only printable ASCII, so an error message stays one short line.
func clip(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}
