package webrca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// IncidentsPath is the listing endpoint, relative to the API host.
const IncidentsPath = "/api/web-rca/v1/incidents"

// TokenSource hands out bearer tokens. Invalidate drops token from its cache after the API refused
// it, so the next Token call exchanges a fresh one.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// Options tune a Client; zero values take the defaults.
type Options struct {
	// PageSize is the size query parameter (default 100).
	PageSize int
	// MaxPages caps the pages of one listing, so a server that ignores page cannot loop the client
	// forever (default 100). Reaching it with pages left is an error.
	MaxPages int
	// OrderBy is the order_by query parameter (default "created_at asc": new incidents land on the
	// last page, so pages already read do not shift while a listing is in progress).
	OrderBy string
	// RequestTimeout bounds each HTTP request, body included (default 30s).
	RequestTimeout time.Duration
	// MaxBodyBytes bounds one response body (default 32 MiB).
	MaxBodyBytes int64
	// HTTPClient defaults to a client with no overall timeout (RequestTimeout applies per request).
	HTTPClient *http.Client
	// UserAgent is sent with every request.
	UserAgent string
}

// Client lists WebRCA incidents.
type Client struct {
	base   *url.URL
	tokens TokenSource
	o      Options
}

// New returns a client of the API at baseURL (such as https://api.openshift.com).
func New(baseURL string, tokens TokenSource, o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("WebRCA base URL %q is not an http(s) URL", baseURL)
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 100
	}
	if o.OrderBy == "" {
		o.OrderBy = "created_at asc"
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 32 << 20
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.UserAgent == "" {
		o.UserAgent = "doraflow-webrca-poller"
	}
	return &Client{base: u, tokens: tokens, o: o}, nil
}

// List returns every incident of the listing, filtered server-side by each of productIDs (one
// listing per product, merged by id) or unfiltered when productIDs is empty. An incident that shows
// up twice, because the listing changed between two page requests or it belongs to several of the
// products, is returned once, as last seen. Any failure returns an *Error and no incidents.
func (c *Client) List(ctx context.Context, productIDs []string) ([]Incident, error) {
	if len(productIDs) == 0 {
		productIDs = []string{""}
	}
	var out []Incident
	index := map[string]int{}
	for _, pid := range productIDs {
		if err := c.list(ctx, pid, func(inc Incident) {
			if i, ok := index[inc.ID]; ok {
				out[i] = inc
				return
			}
			index[inc.ID] = len(out)
			out = append(out, inc)
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *Client) list(ctx context.Context, productID string, add func(Incident)) error {
	for page := 1; ; page++ {
		if page > c.o.MaxPages {
			return &Error{Kind: KindTooManyPages, Op: "GET incidents",
				Err: fmt.Errorf("more than %d pages of %d incidents; raise webrca.max_pages or filter by product", c.o.MaxPages, c.o.PageSize)}
		}
		p, err := c.page(ctx, productID, page)
		if err != nil {
			return err
		}
		for _, inc := range p.Items {
			add(inc)
		}
		// Stop conditions: an empty or short page, or total reached. The requested size is used,
		// because the response's size may count the items on the page instead.
		if len(p.Items) == 0 || len(p.Items) < c.o.PageSize || (p.HasTotal && page*c.o.PageSize >= p.Total) {
			return nil
		}
	}
}

// page fetches and decodes one page, refreshing the token and retrying once on 401.
func (c *Client) page(ctx context.Context, productID string, page int) (Page, error) {
	q := url.Values{}
	q.Set("page", strconv.Itoa(page))
	q.Set("size", strconv.Itoa(c.o.PageSize))
	q.Set("order_by", c.o.OrderBy)
	if productID != "" {
		q.Set("product_id", productID)
	}
	u := *c.base
	u.Path += IncidentsPath
	u.RawQuery = q.Encode()
	op := fmt.Sprintf("GET incidents page %d", page)
	if productID != "" {
		op += " of product " + productID
	}
	for attempt := 0; ; attempt++ {
		token, err := c.tokens.Token(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return Page{}, ctx.Err()
			}
			e := &Error{Kind: KindToken, Op: op, Err: err}
			var ra interface{ RetryDelay() time.Duration }
			if errors.As(err, &ra) {
				e.RetryAfter = ra.RetryDelay() // SSO said when to come back
			}
			return Page{}, e
		}
		body, status, header, err := c.get(ctx, u.String(), token)
		if err != nil {
			if ctx.Err() != nil {
				return Page{}, ctx.Err()
			}
			return Page{}, classifyTransport(op, err)
		}
		if status == http.StatusUnauthorized && attempt == 0 {
			// The token expired early or was revoked: drop it, exchange a new one, retry once.
			c.tokens.Invalidate(token)
			continue
		}
		if status < 200 || status > 299 {
			return Page{}, statusError(op, status, header, body)
		}
		if ct := header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return Page{}, &Error{Kind: KindNotAPI, Op: op, Status: status,
					Err: fmt.Errorf("content type %q is not JSON; body starts %s", truncate(ct, 60), quoteStart(body))}
			}
		}
		p, err := DecodePage(body)
		if err != nil {
			kind := KindSchema
			if errors.Is(err, ErrMalformed) {
				kind = KindDecode
			}
			return Page{}, &Error{Kind: kind, Op: op, Status: status, Err: err}
		}
		return p, nil
	}
}

func (c *Client) get(ctx context.Context, u, token string) ([]byte, int, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", c.o.UserAgent)
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxBodyBytes+1))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > c.o.MaxBodyBytes {
		return nil, 0, nil, fmt.Errorf("%w: body exceeds %d bytes", errBodyTooLarge, c.o.MaxBodyBytes)
	}
	return body, resp.StatusCode, resp.Header, nil
}

var errBodyTooLarge = errors.New("response too large")

// Kind classifies a failure of the API, for metrics and for deciding whether to retry soon.
type Kind string

// Kinds of failure.
const (
	KindTimeout      Kind = "timeout"        // a request took longer than the request timeout
	KindNetwork      Kind = "network"        // connection refused, reset, DNS, TLS
	KindServer       Kind = "server_error"   // 5xx
	KindRateLimited  Kind = "rate_limited"   // 429
	KindUnauthorized Kind = "unauthorized"   // 401 after a fresh token, or 403
	KindClient       Kind = "client_error"   // other 4xx: a request doraflow should not make
	KindNotAPI       Kind = "not_api"        // a 2xx that is not JSON: a web page at the base URL
	KindDecode       Kind = "decode"         // truncated or malformed JSON, too large
	KindSchema       Kind = "schema"         // valid JSON of an unexpected shape
	KindTooManyPages Kind = "too_many_pages" // webrca.max_pages reached with pages left
	KindToken        Kind = "token"          // no token from SSO
)

// Error is a failed listing.
type Error struct {
	Kind   Kind
	Op     string
	Status int // HTTP status, when there was a response
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: HTTP %d: %v", e.Op, e.Status, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether trying again soon may help: timeouts, network trouble, 5xx, 429 and
// broken bodies are transient; a rejected request, an unexpected schema or too many pages are not.
// A token error is retryable when its cause says so.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindTimeout, KindNetwork, KindServer, KindRateLimited, KindDecode:
		return true
	case KindToken:
		var r interface{ Retryable() bool }
		return errors.As(e.Err, &r) && r.Retryable()
	}
	return false
}

// ConfigFault reports whether the failure says the poller is misconfigured rather than the API
// unwell: 401 after a fresh token and 403 (the credentials or the account's access), 404 and the
// other 4xx (a wrong base URL or path), and a 2xx that is not JSON (a web page at the base URL).
// Every poll fails the same way until the configuration changes; it is reported as such and
// retried with backoff, so a fix is picked up without a restart.
func (e *Error) ConfigFault() bool {
	switch e.Kind {
	case KindUnauthorized, KindClient, KindNotAPI:
		return true
	}
	return false
}

func classifyTransport(op string, err error) *Error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return &Error{Kind: KindTimeout, Op: op, Err: err}
	case errors.Is(err, errBodyTooLarge):
		return &Error{Kind: KindDecode, Op: op, Err: err}
	}
	return &Error{Kind: KindNetwork, Op: op, Err: err}
}

func statusError(op string, status int, header http.Header, body []byte) *Error {
	e := &Error{Op: op, Status: status, Err: errors.New(reason(body))}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
	case status >= 500 || status == http.StatusRequestTimeout:
		e.Kind = KindServer
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = KindUnauthorized
	default:
		e.Kind = KindClient
	}
	if s := header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			e.RetryAfter = time.Duration(min(n, 3600)) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			e.RetryAfter = min(max(time.Until(t), 0), time.Hour)
		}
	}
	return e
}

// reason extracts the "reason" of an OCM error body, or describes the body's start.
func reason(body []byte) string {
	var oe struct {
		Reason string `json:"reason"`
		Code   string `json:"code"`
	}
	if json.Unmarshal(body, &oe) == nil && (oe.Reason != "" || oe.Code != "") {
		return strings.TrimSpace(truncate(oe.Code+" "+oe.Reason, 200))
	}
	if len(body) == 0 {
		return "empty body"
	}
	return "body starts " + quoteStart(body)
}
