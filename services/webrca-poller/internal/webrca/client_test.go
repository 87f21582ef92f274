package webrca_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/webrcatest"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/webrca"
)

var t0 = time.Date(2026, 3, 10, 15, 20, 0, 412733000, time.UTC)

type env struct {
	sso    *webrcatest.SSO
	api    *webrcatest.API
	tokens *sso.Source
	client *webrca.Client
}

func setup(t *testing.T, o webrca.Options) *env {
	t.Helper()
	s := webrcatest.NewSSO(t)
	s.AddClient("svc-doraflow", "s3cr3t")
	api := webrcatest.NewAPI(t, s)
	tokens, err := sso.New(sso.Config{TokenURL: s.URL(), ClientID: "svc-doraflow",
		ClientSecret: config.NewSecret("s3cr3t"), Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	c, err := webrca.New(api.URL(), tokens, o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{sso: s, api: api, tokens: tokens, client: c}
}

func incidents(n int) []webrcatest.Incident {
	var out []webrcatest.Incident
	for i := range n {
		out = append(out, webrcatest.NewIncident(fmt.Sprintf("00000000-0000-0000-0000-%012d", i),
			fmt.Sprintf("ITN-2026-%05d", i), t0.Add(time.Duration(i)*time.Minute)))
	}
	return out
}

func ids(incs []webrca.Incident) []string {
	var out []string
	for _, inc := range incs {
		out = append(out, inc.ID)
	}
	sort.Strings(out)
	return out
}

func wantIDs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("00000000-0000-0000-0000-%012d", i))
	}
	return out
}

func pages(reqs []webrcatest.Request) []int {
	var out []int
	for _, r := range reqs {
		out = append(out, r.Page)
	}
	return out
}

func TestListPaging(t *testing.T) {
	tests := []struct {
		name      string
		incidents int
		size      int
		wantPages []int
	}{
		{"several pages, the last one short", 25, 10, []int{1, 2, 3}},
		{"an exact multiple stops on total without an empty request", 20, 10, []int{1, 2}},
		{"one short page", 3, 10, []int{1}},
		{"empty listing", 0, 10, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, webrca.Options{PageSize: tt.size})
			e.api.SetIncidents(incidents(tt.incidents)...)
			got, err := e.client.List(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantIDs(tt.incidents), ids(got)); diff != "" {
				t.Errorf("incidents (-want +got)\n%s", diff)
			}
			reqs := e.api.Requests()
			if diff := cmp.Diff(tt.wantPages, pages(reqs)); diff != "" {
				t.Errorf("pages requested (-want +got)\n%s", diff)
			}
			for _, r := range reqs {
				if r.Size != tt.size || r.OrderBy != "created_at asc" || !r.Authorized || r.ProductID != "" {
					t.Errorf("request %+v, want size %d, order_by created_at asc, authorized, no product_id", r, tt.size)
				}
			}
			if n := e.sso.Exchanges(""); n != 1 {
				t.Errorf("token exchanges = %d, want 1 (cached across pages)", n)
			}
		})
	}
}

func TestListProductIDsMergesByID(t *testing.T) {
	e := setup(t, webrca.Options{PageSize: 2})
	incs := incidents(5)
	e.api.SetIncidents(incs...)
	e.api.SetProductIDs(fmt.Sprintf("00000000-0000-0000-0000-%012d", 0), "p-konflux")
	e.api.SetProductIDs(fmt.Sprintf("00000000-0000-0000-0000-%012d", 1), "p-konflux", "p-quay") // in both listings
	e.api.SetProductIDs(fmt.Sprintf("00000000-0000-0000-0000-%012d", 2), "p-quay")
	e.api.SetProductIDs(fmt.Sprintf("00000000-0000-0000-0000-%012d", 3), "p-other")
	got, err := e.client.List(t.Context(), []string{"p-konflux", "p-quay"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantIDs(3), ids(got)); diff != "" {
		t.Errorf("incidents (-want +got)\n%s", diff)
	}
	var products []string
	for _, r := range e.api.Requests() {
		products = append(products, r.ProductID)
	}
	if diff := cmp.Diff([]string{"p-konflux", "p-quay"}, products); diff != "" {
		t.Errorf("product_id of each request (-want +got)\n%s", diff)
	}
}

// TestListPageChangesBetweenRequests inserts a new incident at the head of a newest-first listing
// after page 1 was served: page 2 then repeats page 1's last incident. The listing holds each
// incident once.
func TestListPageChangesBetweenRequests(t *testing.T) {
	e := setup(t, webrca.Options{PageSize: 3, OrderBy: "created_at desc"})
	all := incidents(7)
	e.api.SetIncidents(all[:6]...)
	var served atomic.Int32
	e.api.Intercept(func(_ http.ResponseWriter, _ *http.Request, req webrcatest.Request) bool {
		if req.Page == 2 && served.Add(1) == 1 {
			e.api.SetIncidents(all...) // the 7th is the newest
		}
		return false
	})
	got, err := e.client.List(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantIDs(6), ids(got)); diff != "" {
		t.Errorf("incidents (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]int{1, 2, 3}, pages(e.api.Requests())); diff != "" {
		t.Errorf("pages (-want +got)\n%s", diff)
	}
}

func TestListPageCap(t *testing.T) {
	e := setup(t, webrca.Options{PageSize: 2, MaxPages: 4})
	e.api.SetIncidents(incidents(2)...)
	// A server that ignores page and claims a huge total would loop the client forever.
	e.api.Intercept(func(w http.ResponseWriter, _ *http.Request, _ webrcatest.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"IncidentList","page":1,"size":2,"total":1000000,"items":[
			{"id":"a","incident_id":"ITN-1","created_at":"2026-01-01T00:00:00Z"},
			{"id":"b","incident_id":"ITN-2","created_at":"2026-01-01T00:00:00Z"}]}`)
		return true
	})
	got, err := e.client.List(t.Context(), nil)
	_ = assertError(t, got, err, webrca.KindTooManyPages, false)
	if n := len(e.api.Requests()); n != 4 {
		t.Errorf("requests = %d, want 4 (max_pages)", n)
	}
}

func TestListRefreshesOnceOn401(t *testing.T) {
	e := setup(t, webrca.Options{PageSize: 10})
	e.api.SetIncidents(incidents(3)...)
	if _, err := e.client.List(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	e.sso.ExpireAccessTokens() // revoked server-side while still cached client-side
	e.api.ResetRequests()
	got, err := e.client.List(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Errorf("got %d incidents, want 3", len(got))
	}
	if n := e.sso.Exchanges(""); n != 2 {
		t.Errorf("token exchanges = %d, want 2 (one refresh after the 401)", n)
	}
	var auth []bool
	for _, r := range e.api.Requests() {
		auth = append(auth, r.Authorized)
	}
	if diff := cmp.Diff([]bool{false, true}, auth); diff != "" {
		t.Errorf("authorized requests (-want +got)\n%s", diff)
	}
}

func TestListGivesUpAfterSecond401(t *testing.T) {
	e := setup(t, webrca.Options{PageSize: 10})
	e.api.SetIncidents(incidents(3)...)
	var n atomic.Int32
	e.api.Intercept(func(w http.ResponseWriter, _ *http.Request, _ webrcatest.Request) bool {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"kind":"Error","id":"401","code":"WEBRCA-401","reason":"Account authentication could not be verified"}`)
		return true
	})
	got, err := e.client.List(t.Context(), nil)
	_ = assertError(t, got, err, webrca.KindUnauthorized, false)
	if n.Load() != 2 || e.sso.Exchanges("") != 2 {
		t.Errorf("requests = %d, exchanges = %d; want 2 and 2 (one retry with one fresh token)", n.Load(), e.sso.Exchanges(""))
	}
	if !strings.Contains(err.Error(), "Account authentication could not be verified") {
		t.Errorf("error %q does not carry the API's reason", err)
	}
}

// TestListBadResponses serves page 2 badly: whatever page 1 held, List returns an error and no
// incidents.
func TestListBadResponses(t *testing.T) {
	tests := []struct {
		name      string
		respond   func(w http.ResponseWriter, r *http.Request)
		kind      webrca.Kind
		retryable bool
	}{
		{"HTML page with 200", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<html><body>Sign in</body></html>")
		}, webrca.KindNotAPI, false},
		{"HTML 502 from a proxy", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html><title>502 Bad Gateway</title></html>")
		}, webrca.KindServer, true},
		{"truncated JSON", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"kind":"IncidentList","page":2,"size":2,"total":5,"items":[{"id":"x","incident_id":"ITN`)
		}, webrca.KindDecode, true},
		{"connection cut mid-body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1000")
			fmt.Fprint(w, `{"kind":"IncidentList","items":[`)
		}, webrca.KindNetwork, true},
		{"500 with an OCM error", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"kind":"Error","id":"500","code":"WEBRCA-500","reason":"database unavailable"}`)
		}, webrca.KindServer, true},
		{"503 with an empty body", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}, webrca.KindServer, true},
		{"429", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		}, webrca.KindRateLimited, true},
		{"400", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"kind":"Error","id":"400","reason":"invalid order_by"}`)
		}, webrca.KindClient, false},
		{"timeout", func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // hangs until the client gives up
		}, webrca.KindTimeout, true},
		{"schema drift: status became an object", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"kind":"IncidentList","page":2,"size":1,"total":5,"items":[
				{"id":"x","incident_id":"ITN-1","created_at":"2026-01-01T00:00:00Z","status":{"name":"open"}}]}`)
		}, webrca.KindSchema, false},
		{"schema drift: id renamed", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"kind":"IncidentList","page":2,"size":1,"total":5,"items":[
				{"uuid":"x","incident_id":"ITN-1","created_at":"2026-01-01T00:00:00Z"}]}`)
		}, webrca.KindSchema, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, webrca.Options{PageSize: 2, RequestTimeout: 2 * time.Second})
			e.api.SetIncidents(incidents(5)...)
			e.api.Intercept(func(w http.ResponseWriter, r *http.Request, req webrcatest.Request) bool {
				if req.Page != 2 {
					return false
				}
				tt.respond(w, r)
				return true
			})
			got, err := e.client.List(t.Context(), nil)
			werr := assertError(t, got, err, tt.kind, tt.retryable)
			if tt.kind == webrca.KindRateLimited && werr.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %s, want 7s", werr.RetryAfter)
			}
			if n := e.sso.Exchanges(""); n != 1 {
				t.Errorf("token exchanges = %d, want 1: only a 401 refreshes", n)
			}
		})
	}
}

func TestListTokenFailure(t *testing.T) {
	e := setup(t, webrca.Options{})
	e.sso.AddClient("svc-doraflow", "rotated-elsewhere") // the configured secret no longer works
	got, err := e.client.List(t.Context(), nil)
	werr := assertError(t, got, err, webrca.KindToken, false)
	if !errors.Is(werr, sso.ErrRejected) {
		t.Errorf("error %v does not wrap sso.ErrRejected", werr)
	}
	if n := len(e.api.Requests()); n != 0 {
		t.Errorf("API requests = %d, want 0 without a token", n)
	}
}

func TestListCancelled(t *testing.T) {
	e := setup(t, webrca.Options{})
	e.api.SetIncidents(incidents(1)...)
	ctx, cancel := context.WithCancel(t.Context())
	e.api.Intercept(func(_ http.ResponseWriter, r *http.Request, _ webrcatest.Request) bool {
		cancel()
		<-r.Context().Done()
		return true
	})
	_, err := e.client.List(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("List after cancel = %v, want context.Canceled (shutdown is not an API failure)", err)
	}
}

func assertError(t *testing.T, got []webrca.Incident, err error, kind webrca.Kind, retryable bool) *webrca.Error {
	t.Helper()
	var werr *webrca.Error
	if !errors.As(err, &werr) {
		t.Fatalf("List error = %v (%T), want *webrca.Error", err, err)
	}
	if werr.Kind != kind || werr.Retryable() != retryable {
		t.Errorf("error %q: kind %s retryable %v, want %s %v", err, werr.Kind, werr.Retryable(), kind, retryable)
	}
	if got != nil {
		t.Errorf("List returned %d incidents with an error, want none", len(got))
	}
	return werr
}

// TestConfigFaults: answers that say the poller is pointed at the wrong place or holds the wrong
// credentials are configuration faults; the API being unwell or changed is not.
func TestConfigFaults(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		kind   webrca.Kind
		config bool
		reason string
	}{
		{"404 HTML: a wrong base URL", 404, "text/html", "<html><head><title>404 Not Found</title></head></html>", webrca.KindClient, true, `body starts "<html><head><title>404 Not Found`},
		{"404 OCM error: a wrong path", 404, "application/json", `{"kind":"Error","id":"404","code":"CLUSTERS-MGMT-404","reason":"Not found"}`, webrca.KindClient, true, "Not found"},
		{"403: the account may not read WebRCA", 403, "application/json", `{"kind":"Error","code":"WEBRCA-403","reason":"Forbidden"}`, webrca.KindUnauthorized, true, "Forbidden"},
		{"401 after a fresh token", 401, "application/json", `{"kind":"Error","code":"WEBRCA-401","reason":"Account authentication could not be verified"}`, webrca.KindUnauthorized, true, "could not be verified"},
		{"200 web page: the base URL is the UI", 200, "text/html", "<!doctype html><title>Web RCA</title>", webrca.KindNotAPI, true, `content type "text/html" is not JSON`},
		{"503", 503, "text/html", "<html>maintenance</html>", webrca.KindServer, false, "maintenance"},
		{"truncated JSON", 200, "application/json", `{"kind":"IncidentList","items":[`, webrca.KindDecode, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, webrca.Options{PageSize: 2})
			e.api.Intercept(func(w http.ResponseWriter, _ *http.Request, _ webrcatest.Request) bool {
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
				return true
			})
			_, err := e.client.List(t.Context(), nil)
			var werr *webrca.Error
			if !errors.As(err, &werr) {
				t.Fatalf("List error = %v, want *webrca.Error", err)
			}
			if werr.Kind != tt.kind || werr.ConfigFault() != tt.config || werr.Status != tt.status || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q: kind %s, config fault %v, status %d; want %s %v %d containing %q",
					err, werr.Kind, werr.ConfigFault(), werr.Status, tt.kind, tt.config, tt.status, tt.reason)
			}
		})
	}
}

// TestListTokenFailureCarriesRetryAfter: SSO's Retry-After reaches the listing's error, so the
// poll schedule waits for it.
func TestListTokenFailureCarriesRetryAfter(t *testing.T) {
	e := setup(t, webrca.Options{})
	e.sso.FailNext(webrcatest.Failure{Status: 429, RetryAfter: "90"})
	got, err := e.client.List(t.Context(), nil)
	werr := assertError(t, got, err, webrca.KindToken, true)
	if werr.RetryAfter != 90*time.Second || werr.ConfigFault() {
		t.Errorf("RetryAfter = %s, config fault %v; want 1m30s, false", werr.RetryAfter, werr.ConfigFault())
	}
}
