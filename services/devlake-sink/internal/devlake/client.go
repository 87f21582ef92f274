package devlake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
)

// Kind is what a post writes: the last segment of the webhook path.
type Kind string

// Kinds.
const (
	KindDeployments  Kind = "deployments"
	KindIssues       Kind = "issues"
	KindPullRequests Kind = "pull_requests" // DevLake v1.0.3+

)

// Class is how the sink must react to an answer (devlake-webhook.md §4).
type Class int

// Classes.
const (
	// ClassRetryable: 408, 425, 428, 429, 5xx, a 200 of DevLake's JSON without success:true, resets
	// and timeouts. Posts are upserts, so repeating one is safe.
	ClassRetryable Class = iota
	// ClassPermanent: a 400 whose answer is DevLake's JSON, about the message itself (validation,
	// decoding). The same request would fail again; DevLake's answer says why. A 400 carrying a
	// PostgreSQL unique violation (SQLSTATE 23505) is the exception: it is a transaction that lost a
	// race inside DevLake (concurrent first posts to a fresh connection create its board or scope
	// twice), so it is retryable.
	ClassPermanent
	// ClassConfig: the connection is misconfigured, not the message: 401 and 403 (a missing, wrong,
	// expired or out-of-scope key), 404 (a wrong base_url or path prefix, a deleted webhook
	// connection, pull_requests on DevLake before v1.0.3), any other 4xx, and any answer that is
	// not DevLake's JSON (an ingress or a web page answering instead of DevLake). Every message
	// would fail the same way, so none is dead-lettered: the connection pauses, is reported loudly,
	// and is probed until an operator fixes it.
	ClassConfig
)

func (c Class) String() string {
	switch c {
	case ClassPermanent:
		return "permanent"
	case ClassConfig:
		return "config_error"
	default:
		return "retryable"
	}
}

// Error is a failed post.
type Error struct {
	Class Class
	// Kind is what the post wrote.
	Kind Kind
	// Status is the HTTP status; 0 when no answer arrived.
	Status int
	// Message is DevLake's answer (its message field, or the raw body), at most 1 KiB.
	Message string
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Err is the transport error when no answer arrived.
	Err error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("DevLake unreachable: %v", e.Err)
	}
	if e.Message == "" {
		return fmt.Sprintf("DevLake answered %d", e.Status)
	}
	return fmt.Sprintf("DevLake answered %d: %s", e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err: the class of an *Error it wraps, retryable for anything else.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ClassRetryable
}

// Client posts to one DevLake.
type Client struct {
	base string
	http *http.Client
	ua   string
}

// New returns a client for baseURL: https://<host>/api through config-ui, or http://<lake>:8080 on
// the backend port. Every request is bounded by timeout.
func New(baseURL string, timeout time.Duration, userAgent string) (*Client, error) {
	base := strings.TrimRight(strings.TrimSpace(baseURL), "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("DevLake base URL %q is not an http(s) URL", baseURL)
	}
	return &Client{base: base, http: &http.Client{Timeout: timeout}, ua: userAgent}, nil
}

// URL returns the key-checked webhook URL of a connection: {base}/rest/plugins/webhook/connections/{id}/{kind}.
func (c *Client) URL(conn uint64, kind Kind) string {
	return fmt.Sprintf("%s/rest/plugins/webhook/connections/%d/%s", c.base, conn, kind)
}

// Post sends one body to a connection with its key, once. It returns nil only for 200 with
// success:true; any other outcome is an *Error with its class.
func (c *Client) Post(ctx context.Context, kind Kind, conn uint64, key config.Secret, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL(conn, kind), bytes.NewReader(body))
	if err != nil {
		return &Error{Class: ClassPermanent, Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Authorization", "Bearer "+key.Reveal())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL holds no credentials; the key travels in a header that errors never show.
		return &Error{Class: ClassRetryable, Err: err}
	}
	defer resp.Body.Close()
	// DevLake's answers are a few hundred bytes; an HTML page or an endless stream is cut here.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return &Error{Class: ClassRetryable, Status: resp.StatusCode, Err: fmt.Errorf("read answer: %w", err)}
	}
	err = classify(resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), raw)
	if e := (*Error)(nil); errors.As(err, &e) {
		e.Kind = kind
	}
	return err
}

// maxAnswer bounds the part of an answer that is read.
const maxAnswer = 64 << 10

type answer struct {
	Success *bool  `json:"success"`
	Message string `json:"message"`
}

func classify(status int, retryAfter, contentType string, raw []byte) error {
	own := devlakeJSON(raw)
	msg := message(raw)
	if !own {
		msg = notDevLake(contentType, raw)
	}
	if status == http.StatusOK {
		var a answer
		switch {
		case !own:
			return &Error{Class: ClassConfig, Status: status, Message: msg}
		case json.Unmarshal(raw, &a) == nil && a.Success != nil && *a.Success:
			return nil
		}
		return &Error{Class: ClassRetryable, Status: status, Message: "200 without success:true: " + msg}
	}
	e := &Error{Status: status, Message: msg}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Class = ClassConfig
		if json.Valid(raw) {
			e.Message = message(raw) // the auth middleware's {"message": …} explains the key problem
		}
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusPreconditionRequired,
		status == http.StatusTooManyRequests, status >= 500, status == http.StatusBadRequest && own && uniqueViolation(msg):
		e.Class = ClassRetryable
		e.RetryAfter = parseRetryAfter(retryAfter, time.Now())
	case status == http.StatusBadRequest && own:
		e.Class = ClassPermanent
	default:
		e.Class = ClassConfig
	}
	return e
}

// devlakeJSON reports whether raw is an answer of DevLake's API: an object with its success field
// (shared.ApiBody), or a bare JSON string (the webhook issues endpoint's 400s). Anything else came
// from something that is not DevLake: an ingress, a proxy, a web page, another API.
func devlakeJSON(raw []byte) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		var ok bool
		return json.Unmarshal(fields["success"], &ok) == nil
	}
	var s string
	return json.Unmarshal(raw, &s) == nil
}

// notDevLake describes an answer that is not DevLake's JSON: its content type and the start of
// its body on one line.
func notDevLake(contentType string, raw []byte) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return NotDevLake + ": empty answer"
	}
	mt := "no content type"
	if contentType != "" {
		mt, _, _ = strings.Cut(contentType, ";")
		mt = strings.TrimSpace(mt)
	}
	start := strings.Join(strings.Fields(string(raw[:min(len(raw), 400)])), " ")
	if len(start) > 160 {
		start = start[:160] + "…"
	}
	return fmt.Sprintf("%s (%s): %q", NotDevLake, mt, start)
}

// NotDevLake starts the Message of an answer that is not DevLake's JSON.
const NotDevLake = "not DevLake's JSON"

// uniqueViolation reports whether DevLake's message is a PostgreSQL unique violation: SQLSTATE 23505,
// or its text "duplicate key value violates unique constraint" (MySQL's equivalent, error 1062
// "Duplicate entry", is matched too). DevLake answers it with 400 when two transactions insert the
// same row at once; the one that lost succeeds when repeated.
func uniqueViolation(msg string) bool {
	return strings.Contains(msg, "SQLSTATE 23505") ||
		strings.Contains(msg, "duplicate key value violates unique constraint") ||
		strings.Contains(msg, "Error 1062") && strings.Contains(msg, "Duplicate entry")
}

// message extracts DevLake's explanation: the message field of a JSON answer, a bare JSON string
// (the issues endpoint's 400s), or the raw text, cut to 1 KiB.
func message(raw []byte) string {
	var a answer
	var s string
	switch {
	case json.Unmarshal(raw, &a) == nil && a.Message != "":
		s = a.Message
	case json.Unmarshal(raw, &s) == nil:
	default:
		s = string(raw)
	}
	s = strings.TrimSpace(s)
	if len(s) > 1024 {
		s = s[:1024] + "…"
	}
	return s
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
