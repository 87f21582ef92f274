package sso_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
)

const (
	offline = "offline-token-value-xyz"
	secret  = "p@ss word&=+/"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type observed struct {
	mu  sync.Mutex
	got []string
}

func (o *observed) Observe(g sso.Grant, out sso.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, string(g)+"/"+string(out))
}

func (o *observed) List() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

func newSource(t *testing.T, cfg sso.Config) (*sso.Source, *clock, *observed) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	o := &observed{}
	cfg.Now, cfg.Observe, cfg.Backoff = c.Now, o.Observe, time.Millisecond
	s, err := sso.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, o
}

func clientCreds(f *webrcatest.SSO) sso.Config {
	return sso.Config{TokenURL: f.URL(), ClientID: "svc-doraflow", ClientSecret: config.NewSecret(secret)}
}

func offlineCreds(f *webrcatest.SSO) sso.Config {
	return sso.Config{TokenURL: f.URL(), OfflineToken: config.NewSecret(offline)}
}

func TestClientCredentialsPreferredAndCached(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddClient("svc-doraflow", secret)
	f.AddOfflineToken(offline)
	cfg := clientCreds(f)
	cfg.OfflineToken = config.NewSecret(offline) // both set: the service account wins
	s, _, o := newSource(t, cfg)
	if s.Grant() != sso.GrantClientCredentials {
		t.Fatalf("grant = %s, want client_credentials", s.Grant())
	}
	a, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a != b || f.Exchanges("client_credentials") != 1 {
		t.Errorf("tokens %q, %q after %d exchanges; want one cached token", a, b, f.Exchanges(""))
	}
	form := f.LastForm()
	if form.Get("scope") != sso.DefaultScope || form.Get("refresh_token") != "" || form.Get("client_secret") != "" {
		t.Errorf("form %v: want scope %q, the secret only in Basic auth", form, sso.DefaultScope)
	}
	if diff := cmp.Diff([]string{"client_credentials/ok"}, o.List()); diff != "" {
		t.Errorf("observed (-want +got)\n%s", diff)
	}
}

func TestRefreshTokenGrant(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddOfflineToken(offline)
	s, _, _ := newSource(t, offlineCreds(f))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	form := f.LastForm()
	if form.Get("grant_type") != "refresh_token" || form.Get("client_id") != "cloud-services" || form.Get("refresh_token") != offline {
		t.Errorf("form has grant_type=%q client_id=%q; want refresh_token, cloud-services and the offline token",
			form.Get("grant_type"), form.Get("client_id"))
	}
}

func TestExpiryRefreshesOnceAMinuteEarly(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddClient("svc-doraflow", secret)
	s, c, _ := newSource(t, clientCreds(f)) // tokens live 900 s
	first, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c.Add(839 * time.Second)
	if tok, _ := s.Token(t.Context()); tok != first || f.Exchanges("") != 1 {
		t.Fatalf("at 839 s: token %q after %d exchanges, want the cached one", tok, f.Exchanges(""))
	}
	c.Add(time.Second) // 840 s = expires_in − 60 s
	second, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if second == first || f.Exchanges("") != 2 {
		t.Errorf("at 840 s: token %q after %d exchanges, want a new one after exactly one refresh", second, f.Exchanges(""))
	}
	if _, err := s.Token(t.Context()); err != nil || f.Exchanges("") != 2 {
		t.Errorf("the refreshed token is not cached: %d exchanges, %v", f.Exchanges(""), err)
	}
}

func TestShortLivedTokenUsesHalfItsLife(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddClient("svc-doraflow", secret)
	f.SetExpiresIn(60)
	s, c, _ := newSource(t, clientCreds(f))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Add(29 * time.Second)
	if _, err := s.Token(t.Context()); err != nil || f.Exchanges("") != 1 {
		t.Errorf("at 29 s of 60: %d exchanges (%v), want the cached token", f.Exchanges(""), err)
	}
	c.Add(time.Second)
	if _, err := s.Token(t.Context()); err != nil || f.Exchanges("") != 2 {
		t.Errorf("at 30 s of 60: %d exchanges (%v), want a refresh", f.Exchanges(""), err)
	}
}

func TestConcurrentCallersShareOneExchange(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddClient("svc-doraflow", secret)
	s, _, _ := newSource(t, clientCreds(f))
	var wg sync.WaitGroup
	tokens := make([]string, 20)
	for i := range tokens {
		wg.Go(func() {
			tok, err := s.Token(t.Context())
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	if n := f.Exchanges(""); n != 1 {
		t.Errorf("exchanges = %d, want 1", n)
	}
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("callers got different tokens: %v", tokens)
		}
	}
}

func TestInvalidateDropsOnlyTheRefusedToken(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddClient("svc-doraflow", secret)
	s, _, _ := newSource(t, clientCreds(f))
	first, _ := s.Token(t.Context())
	s.Invalidate("some-older-token")
	if tok, _ := s.Token(t.Context()); tok != first || f.Exchanges("") != 1 {
		t.Fatalf("invalidating another token dropped the cache")
	}
	s.Invalidate(first)
	if tok, _ := s.Token(t.Context()); tok == first || f.Exchanges("") != 2 {
		t.Fatalf("after Invalidate: token %q, %d exchanges; want a fresh one", tok, f.Exchanges(""))
	}
}

func TestRotatedRefreshTokenIsUsedAndFallsBack(t *testing.T) {
	f := webrcatest.NewSSO(t)
	f.AddOfflineToken(offline)
	f.RotateRefreshTokens(true)
	s, c, o := newSource(t, offlineCreds(f))
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour)
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := f.LastForm().Get("refresh_token"); got != "rotated-refresh-1" {
		t.Fatalf("second exchange used refresh token %q, want the rotated one", got)
	}
	// The rotated token stops working; the configured offline token still does.
	f.RotateRefreshTokens(false)
	f.RevokeRefreshToken("rotated-refresh-3")
	c.Add(time.Hour)
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatalf("fallback to the configured token failed: %v", err)
	}
	if got := f.LastForm().Get("refresh_token"); got != offline {
		t.Errorf("fallback exchange used %q, want the configured token", got)
	}
	want := []string{"refresh_token/ok", "refresh_token/ok", "refresh_token/rotated_rejected", "refresh_token/ok"}
	if diff := cmp.Diff(want, o.List()); diff != "" {
		t.Errorf("observed (-want +got)\n%s", diff)
	}
	if s.Err() != nil {
		t.Errorf("Err() = %v after a successful fallback", s.Err())
	}
}

func TestRejectionIsAConfigurationFailure(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(f *webrcatest.SSO) sso.Config
		status   int
		code     string
		wantDesc string
	}{
		{"revoked offline token", offlineCreds, 400, "invalid_grant", "Invalid refresh token"},
		{"wrong client secret", func(f *webrcatest.SSO) sso.Config {
			c := clientCreds(f)
			c.ClientSecret = config.NewSecret("wrong")
			return c
		}, 401, "invalid_client", "Invalid client or Invalid client credentials"},
		{"unknown scope", func(f *webrcatest.SSO) sso.Config {
			c := clientCreds(f)
			c.Scope = "openid api.everything"
			return c
		}, 400, "invalid_scope", "Invalid scopes"},
		{"wrong public client", func(f *webrcatest.SSO) sso.Config {
			c := offlineCreds(f)
			c.OfflineClientID = "console-dot"
			return c
		}, 401, "invalid_client", "Invalid client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := webrcatest.NewSSO(t)
			f.AddClient("svc-doraflow", secret) // the offline token is not registered: revoked
			s, _, o := newSource(t, tt.cfg(f))
			_, err := s.Token(t.Context())
			var rej *sso.RejectedError
			if !errors.As(err, &rej) || !errors.Is(err, sso.ErrRejected) {
				t.Fatalf("Token error = %v, want a rejection", err)
			}
			if rej.Status != tt.status || rej.Code != tt.code || !strings.Contains(rej.Description, tt.wantDesc) {
				t.Errorf("rejection %+v, want HTTP %d %s %q", rej, tt.status, tt.code, tt.wantDesc)
			}
			if f.Requests() != 1 {
				t.Errorf("requests = %d, want 1: a rejection is not retried", f.Requests())
			}
			if !errors.Is(s.Err(), sso.ErrRejected) {
				t.Errorf("Err() = %v, want the rejection for readiness", s.Err())
			}
			if got := o.List(); len(got) != 1 || !strings.HasSuffix(got[0], "/rejected") {
				t.Errorf("observed %v, want one rejected", got)
			}
			assertNoSecrets(t, err)
		})
	}
}

func TestRejectionClearsAfterSuccess(t *testing.T) {
	f := webrcatest.NewSSO(t)
	s, _, _ := newSource(t, offlineCreds(f))
	if _, err := s.Token(t.Context()); err == nil {
		t.Fatal("want a rejection of an unknown offline token")
	}
	f.AddOfflineToken(offline) // e.g. SSO recovered a session
	if _, err := s.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.Err() != nil {
		t.Errorf("Err() = %v after a success, want nil", s.Err())
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	html := webrcatest.Failure{Status: 503, ContentType: "text/html", Body: "<html>maintenance</html>"}
	tests := []struct {
		name     string
		failures []webrcatest.Failure
		wantErr  bool
		observed []string
	}{
		{"two 5xx then ok", []webrcatest.Failure{html, {Status: 502}},
			false, []string{"error", "error", "ok"}},
		{"429 then ok", []webrcatest.Failure{{Status: 429}}, false, []string{"error", "ok"}},
		{"200 with HTML then ok", []webrcatest.Failure{{Status: 200, ContentType: "text/html", Body: "<html/>"}},
			false, []string{"error", "ok"}},
		{"200 with broken JSON then ok", []webrcatest.Failure{{Status: 200, ContentType: "application/json", Body: `{"access_token":"` + offline}},
			false, []string{"error", "ok"}},
		{"200 without expires_in then ok", []webrcatest.Failure{{Status: 200, ContentType: "application/json", Body: `{"access_token":"x","token_type":"Bearer"}`}},
			false, []string{"error", "ok"}},
		{"5xx on every attempt", []webrcatest.Failure{html, html, html, html},
			true, []string{"error", "error", "error", "error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := webrcatest.NewSSO(t)
			f.AddOfflineToken(offline)
			f.FailNext(tt.failures...)
			s, _, o := newSource(t, offlineCreds(f))
			_, err := s.Token(t.Context())
			var want []string
			for _, w := range tt.observed {
				want = append(want, "refresh_token/"+w)
			}
			if diff := cmp.Diff(want, o.List()); diff != "" {
				t.Errorf("observed (-want +got)\n%s", diff)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var te *sso.TransientError
			if !errors.As(err, &te) || !te.Retryable() || errors.Is(err, sso.ErrRejected) {
				t.Fatalf("Token error = %v, want a retryable TransientError", err)
			}
			if s.Err() != nil {
				t.Errorf("Err() = %v: a transient failure is not a configuration failure", s.Err())
			}
			assertNoSecrets(t, err)
		})
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	s, _, o := newSource(t, sso.Config{TokenURL: "http://127.0.0.1:1/token", OfflineToken: config.NewSecret(offline), Attempts: 2})
	_, err := s.Token(t.Context())
	var te *sso.TransientError
	if !errors.As(err, &te) {
		t.Fatalf("Token error = %v, want TransientError", err)
	}
	if diff := cmp.Diff([]string{"refresh_token/error", "refresh_token/error"}, o.List()); diff != "" {
		t.Errorf("observed (-want +got)\n%s", diff)
	}
	assertNoSecrets(t, err)
}

func TestNewNeedsCredentials(t *testing.T) {
	_, err := sso.New(sso.Config{TokenURL: "https://sso.example/token", ClientID: "only-the-id"})
	if err == nil {
		t.Fatal("New without a secret or offline token succeeded")
	}
}

func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{offline, secret, "rotated-refresh"} {
		if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v", err), s) {
			t.Errorf("error %q reveals a credential", err)
		}
	}
}

// TestRetryAfterIsHonoured: when SSO says when to come back (429, 503 with Retry-After), the
// refresh stops at once instead of spending its remaining attempts, and the error carries the
// delay for the caller's schedule.
func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name    string
		failure webrcatest.Failure
		want    time.Duration
	}{
		{"429 in seconds", webrcatest.Failure{Status: 429, RetryAfter: "120"}, 120 * time.Second},
		{"503 as an HTTP date", webrcatest.Failure{Status: 503, ContentType: "text/html", Body: "<html>maintenance</html>",
			RetryAfter: time.Now().Add(10 * time.Minute).UTC().Format(http.TimeFormat)}, 10 * time.Minute},
		{"absurd delays are capped at an hour", webrcatest.Failure{Status: 429, RetryAfter: "86400"}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := webrcatest.NewSSO(t)
			f.AddOfflineToken(offline)
			f.FailNext(tt.failure, tt.failure, tt.failure, tt.failure)
			s, _, _ := newSource(t, offlineCreds(f))
			_, err := s.Token(t.Context())
			var te *sso.TransientError
			if !errors.As(err, &te) {
				t.Fatalf("Token error = %v, want a TransientError", err)
			}
			if d := te.RetryDelay(); d > tt.want || d < tt.want-5*time.Second {
				t.Errorf("RetryDelay() = %s, want %s", d, tt.want)
			}
			if f.Requests() != 1 {
				t.Errorf("requests = %d, want 1: SSO said when to come back", f.Requests())
			}
		})
	}
}
