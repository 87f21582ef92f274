package github

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// ConfigError means an answer says the client, not one repository, is misconfigured: GitHub
// rejects the token or the app credentials (401), the app installation does not exist, or the base
// URL answers something that is not GitHub's JSON API (a proxy's or the web UI's HTML page, another
// API's JSON). Every request would fail the same way, so the client pauses all of them (see
// Client.ConfigFault) instead of letting each deployment fail on its own.
type ConfigError struct {
	// Status is the HTTP status of the answer.
	Status int
	// Reason is GitHub's message, or what the answer was (never a credential).
	Reason string
	// Hint says what to check.
	Hint string
	// NextProbe is when the client sends its next request.
	NextProbe time.Time
	// Refused: no request was sent, the client is paused by an earlier answer.
	Refused bool
}

func (e *ConfigError) Error() string {
	prefix := "github: configuration fault"
	if e.Refused {
		prefix = "github: paused by a configuration fault until " + e.NextProbe.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s: HTTP %d: %s; %s", prefix, e.Status, e.Reason, e.Hint)
}

// ConfigFault is the client's open circuit: since the first answer of a configuration fault,
// every request is refused until NextProbe, when one is let through.
type ConfigFault struct {
	Cause     *ConfigError
	Since     time.Time
	NextProbe time.Time
}

// Hints of configuration faults.
const (
	hintToken    = "check GITHUB_TOKEN: a valid, unexpired token that may read the repositories (contents and pull requests)"
	hintApp      = "check GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID and GITHUB_APP_PRIVATE_KEY: the app's key, and an installation of that app"
	hintAnon     = "GitHub asks for credentials: set GITHUB_TOKEN or the GITHUB_APP_* variables"
	hintBaseURL  = "check github.base_url: GitHub's API root (https://api.github.com/, or https://<host>/api/v3/ for GitHub Enterprise), not the web UI or a proxy's page"
	notGitHubMsg = "not GitHub's JSON"
)

// ErrAnswerTooLarge means an answer was longer than Options.MaxBodyBytes: the client stopped
// reading it. Retrying gets the same answer.
var ErrAnswerTooLarge = errors.New("github: answer too large")

// defaultMaxBodyBytes bounds one answer. A compare page of 100 commits with their files is well
// under it.
const defaultMaxBodyBytes = 32 << 20

// Default pauses between probes while a configuration fault lasts: doubling from probeEvery to
// maxProbeEvery.
const (
	defaultProbeEvery    = 5 * time.Second
	defaultMaxProbeEvery = 5 * time.Minute
)

// answerTransport reads every answer through a size limit, and turns an answer below 500 that is
// not JSON into a *ConfigError (5xx pages of a proxy are outages, redirects are followed).
type answerTransport struct {
	next http.RoundTripper
	max  int64
}

func (t answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &boundedBody{rc: resp.Body, left: t.max, max: t.max}
	if resp.StatusCode >= 500 || (resp.StatusCode >= 300 && resp.StatusCode < 400) || isJSON(resp.Header.Get("Content-Type")) {
		return resp, nil
	}
	start, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_ = resp.Body.Close()
	return nil, &ConfigError{Status: resp.StatusCode, Reason: describeAnswer(resp.Header.Get("Content-Type"), start), Hint: hintBaseURL}
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// describeAnswer says what an answer that is not GitHub's JSON was: its content type and start.
func describeAnswer(contentType string, start []byte) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt == "" {
		mt = "no content type"
	}
	s := strings.Join(strings.Fields(string(bytes.ToValidUTF8(start, nil))), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	if s == "" {
		return fmt.Sprintf("%s (%s): empty answer", notGitHubMsg, mt)
	}
	return fmt.Sprintf("%s (%s): %q", notGitHubMsg, mt, s)
}

// boundedBody fails with ErrAnswerTooLarge once more than max bytes were read.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
	max  int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrAnswerTooLarge, b.max)
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("%w: more than %d bytes", ErrAnswerTooLarge, b.max)
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// authHint is what to check when GitHub answers 401.
func (c *Client) authHint() string {
	switch c.auth {
	case authApp:
		return hintApp
	case authToken:
		return hintToken
	default:
		return hintAnon
	}
}

// gate refuses a request while a configuration fault pauses the client, and lets one probe
// through once the pause is over.
func (c *Client) gate() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fault
	if f == nil {
		return nil
	}
	if !c.probing && !c.now().Before(f.NextProbe) {
		c.probing = true
		return nil
	}
	refused := *f.Cause
	refused.Refused, refused.NextProbe = true, f.NextProbe
	return &refused
}

// settle updates the circuit with the outcome of a request that was sent: a configuration fault
// opens it (or doubles the pause after a refused probe); an answer that proves the configuration
// right closes it. Network errors and 5xx prove nothing: the next request probes again.
func (c *Client) settle(err error) {
	var ce *ConfigError
	isFault := errors.As(err, &ce)
	c.mu.Lock()
	probe := c.probing
	c.probing = false
	var opened, closed bool
	switch {
	case isFault:
		now := c.now()
		if c.fault == nil {
			c.fault, c.pause, opened = &ConfigFault{Since: now}, c.probeEvery, true
		} else if probe {
			c.pause = min(2*c.pause, c.maxProbeEvery)
		}
		ce.NextProbe = now.Add(c.pause)
		c.fault.Cause, c.fault.NextProbe = ce, ce.NextProbe
	case c.fault != nil && provesConfig(err):
		c.fault, closed = nil, true
	}
	c.mu.Unlock()
	if isFault {
		c.obs.ConfigError(ce.Status)
	}
	switch {
	case opened:
		c.obs.ConfigFault(ce)
	case closed:
		c.obs.ConfigFault(nil)
	}
}

// provesConfig reports whether an answer shows the credentials and base URL work: a success, or
// one of GitHub's own per-request answers.
func provesConfig(err error) bool {
	return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrRejected) ||
		IsRateLimited(err)
}

// ConfigFault returns the open circuit, if a configuration fault pauses the client.
func (c *Client) ConfigFault() (ConfigFault, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fault == nil {
		return ConfigFault{}, false
	}
	return *c.fault, true
}

// Ready returns nil, or while a configuration fault pauses the client, what GitHub answered, since
// when, the next probe and what to check.
func (c *Client) Ready() error {
	f, ok := c.ConfigFault()
	if !ok {
		return nil
	}
	return fmt.Errorf("github: paused by a configuration fault since %s, next probe %s: HTTP %d: %s; %s",
		f.Since.UTC().Format(time.RFC3339), f.NextProbe.UTC().Format(time.RFC3339), f.Cause.Status, f.Cause.Reason, f.Cause.Hint)
}

// release gives up a probe that gate let through but that was not sent.
func (c *Client) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probing = false
}
