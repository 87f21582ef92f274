package github_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// faultObserver records configuration-fault answers and transitions on top of observer.
type faultObserver struct {
	observer
	mu          sync.Mutex
	statuses    map[int]int
	transitions []string // "open: <cause>" or "closed"
}

func (o *faultObserver) ConfigError(status int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.statuses == nil {
		o.statuses = map[int]int{}
	}
	o.statuses[status]++
}

func (o *faultObserver) ConfigFault(cause *github.ConfigError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cause == nil {
		o.transitions = append(o.transitions, "closed")
		return
	}
	o.transitions = append(o.transitions, "open: "+cause.Error())
}

func (o *faultObserver) seen() ([]string, map[int]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := map[int]int{}
	for k, v := range o.statuses {
		st[k] = v
	}
	return append([]string(nil), o.transitions...), st
}

var htmlHeader = http.Header{"Content-Type": {"text/html; charset=utf-8"}}

// TestConfigFaultClassification: answers that say the client, not one repository, is misconfigured
// are *ConfigError with the answer and what to check; per-repository and transient answers are not.
func TestConfigFaultClassification(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*githubtest.Server)
		token  string
		config bool
		status int
		want   []string // in the error
		other  error    // for non-configuration answers: the class wanted (nil: plain retryable)
	}{
		{name: "401 bad token", setup: func(s *githubtest.Server) { s.RequireToken("t0ken") }, token: "wr0ng",
			config: true, status: 401, want: []string{"HTTP 401", "Bad credentials", "check GITHUB_TOKEN"}},
		{name: "404 HTML from a proxy", setup: func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: 404, Header: htmlHeader, Body: "<html><head><title>404 Not Found</title></head><body>nginx</body></html>"})
		}, config: true, status: 404, want: []string{"HTTP 404", "not GitHub's JSON (text/html)", `"<html><head><title>404 Not Found`, "check github.base_url"}},
		{name: "200 web page: the base URL is the web UI", setup: func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: 200, Header: htmlHeader, Body: "<!doctype html><title>Sign in to GitHub</title>"})
		}, config: true, status: 200, want: []string{"HTTP 200", "not GitHub's JSON (text/html)", "check github.base_url"}},
		{name: "404 JSON of another API", setup: func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: 404, Body: `{"error":"no route"}`})
		}, config: true, status: 404, want: []string{"HTTP 404", "not GitHub's JSON", "check github.base_url"}},
		{name: "404 of GitHub on a repository is per repository", setup: func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: 404, Body: `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`})
		}, other: github.ErrNotFound},
		{name: "403 of GitHub without rate-limit headers is per repository",
			setup: func(s *githubtest.Server) { s.Forbid("acme", "shop") }, other: github.ErrForbidden},
		{name: "502 HTML of a proxy is an outage", setup: func(s *githubtest.Server) {
			s.FailNext(1, githubtest.Fault{Status: 502, Header: htmlHeader, Body: "<html>Bad Gateway</html>"})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := githubtest.New(t)
			head := srv.Repo("acme", "shop").Push(1)[0]
			tc.setup(srv)
			c, _ := newClient(t, srv, func(o *github.Options) {
				if tc.token != "" {
					o.Token = tc.token
				}
			})
			_, err := c.Commit(t.Context(), repo, head)
			var ce *github.ConfigError
			if errors.As(err, &ce) != tc.config {
				t.Fatalf("err = %v; configuration fault %v, want %v", err, !tc.config, tc.config)
			}
			if !tc.config {
				switch {
				case tc.other != nil && !errors.Is(err, tc.other):
					t.Errorf("err = %v, want %v", err, tc.other)
				case tc.other == nil && (err == nil || errors.Is(err, github.ErrNotFound) || errors.Is(err, github.ErrForbidden) ||
					errors.Is(err, github.ErrRejected)):
					t.Errorf("err = %v, want a plain retryable error", err)
				}
				if err := c.Ready(); err != nil {
					t.Errorf("Ready() = %v after a per-repository or transient answer, want nil", err)
				}
				return
			}
			if errors.Is(err, github.ErrNotFound) || errors.Is(err, github.ErrForbidden) {
				t.Errorf("a configuration fault must not be a per-repository answer: %v", err)
			}
			if ce.Status != tc.status {
				t.Errorf("status = %d, want %d", ce.Status, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if len(err.Error()) > 600 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
			if strings.Contains(err.Error(), "wr0ng") {
				t.Errorf("error reveals the token: %v", err)
			}
		})
	}
}

// TestAppCredentialFaultsAreConfigurationFaults: GitHub refusing the app's JWT (a wrong key or
// app ID) or knowing no such installation is a configuration fault naming the GITHUB_APP_* settings.
func TestAppCredentialFaultsAreConfigurationFaults(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(k *rsa.PrivateKey) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	}
	tests := []struct {
		name         string
		key          *rsa.PrivateKey
		installation int64
		status       int
	}{
		{"unknown key", other, 7, 401},
		{"unknown installation", key, 8, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := githubtest.New(t)
			head := srv.Repo("acme", "shop").Push(1)[0]
			srv.EnableApp(42, 7, &key.PublicKey)
			c, _ := newClient(t, srv, func(o *github.Options) {
				o.Token = ""
				o.App = &github.AppCredentials{AppID: 42, InstallationID: tc.installation, PrivateKey: pemOf(tc.key)}
			})
			_, err := c.Commit(t.Context(), repo, head)
			var ce *github.ConfigError
			if !errors.As(err, &ce) || ce.Status != tc.status || !strings.Contains(err.Error(), "GITHUB_APP_") {
				t.Fatalf("err = %v, want a configuration fault with status %d naming GITHUB_APP_*", err, tc.status)
			}
		})
	}
}

// TestConfigFaultPausesTheClientUntilAProbeSucceeds: a 401 pauses every request, not one
// repository's: calls are refused without a request until the next probe, Ready names the fault,
// its start, the next probe and what to check; a refused probe doubles the pause; the observer
// hears of each answer and of each transition once; a successful probe resumes.
func TestConfigFaultPausesTheClientUntilAProbeSucceeds(t *testing.T) {
	clock := time.Date(2026, 3, 10, 17, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); clock = clock.Add(d) }

	srv := githubtest.New(t)
	r := srv.Repo("acme", "shop")
	base := r.Push(1)[0]
	head := r.Push(1)[0]
	srv.RequireToken("the-good-one")
	obs := &faultObserver{}
	c, err := github.New(github.Options{BaseURL: srv.URL(), Token: "s3cret-old-token", Observer: obs, Now: now,
		ProbeEvery: 10 * time.Second, MaxProbeEvery: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Commit(t.Context(), repo, head)
	var ce *github.ConfigError
	if !errors.As(err, &ce) || ce.Status != 401 || ce.Refused {
		t.Fatalf("first call: %v, want the 401 as a configuration fault", err)
	}
	if want := clock.Add(10 * time.Second); !ce.NextProbe.Equal(want) {
		t.Errorf("NextProbe = %v, want %v", ce.NextProbe, want)
	}
	// Paused: another repository, another endpoint, nothing is sent.
	calls := srv.TotalCalls()
	other := github.Repo{Host: "github.com", Owner: "acme", Name: "other"}
	if _, err := c.Compare(t.Context(), other, base, head); !errors.As(err, &ce) || !ce.Refused {
		t.Fatalf("during the pause: %v, want a refused configuration fault", err)
	}
	if _, err := c.PullRequests(t.Context(), repo, []string{head}); !errors.As(err, &ce) || !ce.Refused {
		t.Fatalf("during the pause: %v, want a refused configuration fault", err)
	}
	if n := srv.TotalCalls(); n != calls {
		t.Errorf("GitHub saw %d requests during the pause, want 0", n-calls)
	}
	if n := obs.get("compare/paused") + obs.get("graphql_pull_requests/paused"); n != 2 {
		t.Errorf("paused calls observed = %d, want 2: %v", n, obs.calls)
	}
	ready := c.Ready()
	for _, w := range []string{"github: paused by a configuration fault since 2026-03-10T17:00:00Z", "next probe 2026-03-10T17:00:10Z",
		"HTTP 401", "Bad credentials", "check GITHUB_TOKEN"} {
		if ready == nil || !strings.Contains(ready.Error(), w) {
			t.Errorf("Ready() = %v, want it to contain %q", ready, w)
		}
	}
	if ready != nil && strings.Contains(ready.Error(), "s3cret") {
		t.Errorf("Ready() reveals the token: %v", ready)
	}

	// The probe is refused again: one request, the pause doubles (10s, 20s, then at most 30s).
	advance(10 * time.Second)
	if _, err := c.Commit(t.Context(), repo, head); !errors.As(err, &ce) || ce.Refused || ce.Status != 401 {
		t.Fatalf("probe: %v, want GitHub's 401 again", err)
	}
	if n := srv.TotalCalls(); n != calls+1 {
		t.Errorf("the probe sent %d requests, want 1", n-calls)
	}
	if want := clock.Add(20 * time.Second); !ce.NextProbe.Equal(want) {
		t.Errorf("after a refused probe NextProbe = %v, want %v", ce.NextProbe, want)
	}
	if f, ok := c.ConfigFault(); !ok || !f.Since.Equal(clock.Add(-10*time.Second)) {
		t.Errorf("ConfigFault() = %+v, %v; want it open since the first answer", f, ok)
	}

	srv.RequireToken("s3cret-old-token") // the token is authorised again
	advance(20 * time.Second)
	if _, err := c.Commit(t.Context(), repo, head); err != nil {
		t.Fatalf("probe after the fix: %v", err)
	}
	if err := c.Ready(); err != nil {
		t.Errorf("Ready() after a successful probe = %v", err)
	}
	if _, ok := c.ConfigFault(); ok {
		t.Error("ConfigFault() still open after a successful probe")
	}
	if _, err := c.Compare(t.Context(), repo, base, head); err != nil {
		t.Errorf("after the fix: %v", err)
	}
	transitions, statuses := obs.seen()
	if len(transitions) != 2 || !strings.HasPrefix(transitions[0], "open: ") || transitions[1] != "closed" {
		t.Errorf("transitions = %q, want one opening and one closing", transitions)
	}
	if statuses[401] != 2 || len(statuses) != 1 {
		t.Errorf("configuration-fault answers = %v, want 2 × 401", statuses)
	}
}

// TestRepositoryNotFoundDoesNotPause: a repository GitHub does not show is that repository's
// answer; the next request (another repository) is sent and Ready stays nil.
func TestRepositoryNotFoundDoesNotPause(t *testing.T) {
	srv := githubtest.New(t)
	head := srv.Repo("acme", "shop").Push(1)[0]
	obs := &faultObserver{}
	c, _ := newClient(t, srv, func(o *github.Options) { o.Observer = obs })
	gone := github.Repo{Host: "github.com", Owner: "acme", Name: "renamed"}
	for range 3 {
		if _, err := c.Commit(t.Context(), gone, head); !errors.Is(err, github.ErrNotFound) {
			t.Fatalf("err = %v, want not found", err)
		}
	}
	if _, err := c.Commit(t.Context(), repo, head); err != nil {
		t.Fatalf("another repository: %v", err)
	}
	if err := c.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
	if tr, st := obs.seen(); len(tr) != 0 || len(st) != 0 {
		t.Errorf("transitions %q, configuration answers %v; want none", tr, st)
	}
}

// endless serves a body that never ends (up to 64 MiB), starting with prefix, and reports how
// much it wrote.
func endless(t *testing.T, status int, ctype, prefix string) (*httptest.Server, func() int) {
	t.Helper()
	var mu sync.Mutex
	sent := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		n, _ := fmt.Fprint(w, prefix)
		mu.Lock()
		sent += n
		mu.Unlock()
		chunk := []byte(strings.Repeat("a", 32<<10))
		for r.Context().Err() == nil {
			n, err := w.Write(chunk)
			mu.Lock()
			sent += n
			total := sent
			mu.Unlock()
			if err != nil || total >= 64<<20 {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() int { mu.Lock(); defer mu.Unlock(); return sent }
}

// TestEndlessAnswersAreReadOnlyToTheLimit: an answer that never ends is read up to MaxBodyBytes,
// not buffered until the timeout: a JSON answer is too large (retrying cannot help), a web page is
// a configuration fault.
func TestEndlessAnswersAreReadOnlyToTheLimit(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ctype  string
		prefix string
		check  func(*testing.T, error)
	}{
		{"endless JSON commit", 200, "application/json; charset=utf-8", `{"sha":"`, isErr(github.ErrAnswerTooLarge)},
		{"endless JSON error", 404, "application/json", `{"message":"`, func(t *testing.T, err error) {
			t.Helper()
			if errors.Is(err, github.ErrNotFound) || err == nil {
				t.Errorf("err = %v; an endless answer is not GitHub's not found", err)
			}
		}},
		{"endless web page", 200, "text/html", "<html>", func(t *testing.T, err error) {
			t.Helper()
			var ce *github.ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not GitHub's JSON (text/html)") {
				t.Errorf("err = %v, want a configuration fault naming the content type", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, sent := endless(t, tc.status, tc.ctype, tc.prefix)
			c, err := github.New(github.Options{BaseURL: srv.URL + "/", Token: "t", Timeout: time.Minute, MaxBodyBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Commit(t.Context(), repo, strings.Repeat("ab", 20))
			tc.check(t, err)
			if len(err.Error()) > 600 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
			srv.CloseClientConnections()
			// What the server wrote is what was read plus the sockets' buffers, far below 64 MiB.
			if n := sent(); n >= 32<<20 {
				t.Errorf("the server wrote %d MiB before the client stopped reading; the limit is 1 MiB", n>>20)
			}
		})
	}
}

// TestAnswerThatNeverComesTimesOut: a request whose answer does not come within Timeout fails as
// retryable (an outage), not as a repository's or the configuration's fault.
func TestAnswerThatNeverComesTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c, err := github.New(github.Options{BaseURL: srv.URL + "/", Token: "t", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Commit(t.Context(), repo, strings.Repeat("ab", 20))
	var ce *github.ConfigError
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || errors.As(err, &ce) || errors.Is(err, github.ErrNotFound) ||
		errors.Is(err, github.ErrRejected) || errors.Is(err, github.ErrAnswerTooLarge) {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if c.Ready() != nil {
		t.Errorf("Ready() = %v after a timeout", c.Ready())
	}
}
