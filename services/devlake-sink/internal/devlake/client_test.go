package devlake

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/config"
)

func TestPostClassifiesAnswers(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		header     string
		ctype      string // Content-Type; application/json when empty
		wantErr    bool
		class      Class
		msg        string
		retryAfter time.Duration
	}{
		{"success", 200, `{"code":0,"success":true,"message":"success","causes":null,"data":null}`, "", "", false, 0, "", 0},
		{"200 with success false", 200, `{"success":false,"message":"odd"}`, "", "", true, ClassRetryable, "odd", 0},
		{"200 that is not DevLake's JSON (config-ui's index.html for an unknown path)", 200, `<!doctype html><html><head><title>DevLake</title>`, "", "text/html", true, ClassConfig, "not DevLake's JSON", 0},
		{"200 with JSON of another API", 200, `{"items":[]}`, "", "", true, ClassConfig, "not DevLake's JSON", 0},
		{"400 deployments", 400, `{"success":false,"message":"input json error: Key: 'WebhookDeploymentReq.FinishedDate'"}`, "", "", true, ClassPermanent, "FinishedDate", 0},
		{"400 issues (bare string)", 400, `"Key: 'WebhookIssueRequest.Status' failed on the 'oneof' tag"`, "", "", true, ClassPermanent, "'oneof' tag", 0},
		{"404 unknown connection (deleted webhook connection)", 404, `{"success":false,"message":"record not found"}`, "", "", true, ClassConfig, "record not found", 0},
		{"404 HTML from an ingress (wrong base_url or path prefix)", 404, "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>" + strings.Repeat("x", 4000), "", "text/html", true, ClassConfig, `not DevLake's JSON (text/html): "<html> <head><title>404 Not Found</title></head> <body>xxx`, 0},
		{"400 HTML from a proxy", 400, `<html><head><title>400 Request Header Or Cookie Too Large</title></head></html>`, "", "text/html", true, ClassConfig, "400 Request Header", 0},
		{"400 JSON of another API", 400, `{"error":"bad request"}`, "", "", true, ClassConfig, "not DevLake's JSON", 0},
		{"413 from an ingress", 413, `<html>413 Request Entity Too Large</html>`, "", "text/html", true, ClassConfig, "413 Request Entity", 0},
		{"401", 401, `{"message":"token is not present or malformed"}`, "", "", true, ClassConfig, "malformed", 0},
		{"403", 403, `{"message":"api key is invalid"}`, "", "", true, ClassConfig, "invalid", 0},
		{"428 migration pending", 428, `{}`, "", "", true, ClassRetryable, "", 0},
		{"429 with Retry-After", 429, `slow down`, "7", "", true, ClassRetryable, "slow down", 7 * time.Second},
		{"500 malformed JSON", 500, `{"message":"invalid character 'x'"}`, "", "", true, ClassRetryable, "invalid character", 0},
		{"503", 503, ``, "", "", true, ClassRetryable, "", 0},
		{"400 unique violation creating the board (concurrent first posts)", 400,
			`{"success":false,"message":"ERROR: duplicate key value violates unique constraint \"boards_pkey\" (SQLSTATE 23505)"}`, "", "", true, ClassRetryable, "23505", 0},
		{"400 issues: 23505 in a bare string", 400, `"ERROR: duplicate key value violates unique constraint \"boards_pkey\" (SQLSTATE 23505)"`, "", "", true, ClassRetryable, "boards_pkey", 0},
		{"400 that only mentions a duplicate", 400, `{"success":false,"message":"input json error: duplicate issueKey"}`, "", "", true, ClassPermanent, "duplicate", 0},
		{"405 other 4xx", 405, ``, "", "", true, ClassConfig, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.Header().Set("Content-Type", cmp.Or(tt.ctype, "application/json; charset=utf-8"))
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, err := New(srv.URL, time.Second, "test")
			if err != nil {
				t.Fatal(err)
			}
			err = c.Post(context.Background(), KindDeployments, 3, config.NewSecret("k"), []byte(`{}`))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			var de *Error
			if !errors.As(err, &de) || de.Class != tt.class || de.Status != tt.status || !strings.Contains(de.Message, tt.msg) || de.RetryAfter != tt.retryAfter {
				t.Errorf("err = %#v, want class %s containing %q", err, tt.class, tt.msg)
			}
			if len(de.Message) > 1100 {
				t.Errorf("message is %d bytes, want it cut", len(de.Message))
			}
		})
	}
}

func TestPostSendsTheKeyCheckedRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
		_, _ = io.WriteString(w, `{"success":true}`)
	}))
	defer srv.Close()
	for _, base := range []string{srv.URL, srv.URL + "/api/"} {
		c, err := New(base, time.Second, "doraflow-devlake-sink/test")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Post(context.Background(), KindIssues, 12, config.NewSecret("s3cret"), []byte(`{"issueKey":"X"}`)); err != nil {
			t.Fatal(err)
		}
		wantPath := strings.TrimPrefix(strings.TrimSuffix(base, "/"), srv.URL) + "/rest/plugins/webhook/connections/12/issues"
		if got.Method != http.MethodPost || got.URL.Path != wantPath || got.Header.Get("Authorization") != "Bearer s3cret" ||
			got.Header.Get("Content-Type") != "application/json" || string(body) != `{"issueKey":"X"}` {
			t.Errorf("request %s %s %v %s", got.Method, got.URL.Path, got.Header, body)
		}
	}
}

func TestTimeoutsAndResetsAreRetryableAndNeverShowTheKey(t *testing.T) {
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stall:
		}
	}))
	defer srv.Close()
	defer close(stall)
	c, _ := New(srv.URL, 50*time.Millisecond, "")
	err := c.Post(context.Background(), KindDeployments, 1, config.NewSecret("s3cret"), nil)
	if ClassOf(err) != ClassRetryable || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("timeout: %v", err)
	}
	c2, _ := New("http://127.0.0.1:1", time.Second, "")
	if err := c2.Post(context.Background(), KindDeployments, 1, config.NewSecret("s3cret"), nil); ClassOf(err) != ClassRetryable {
		t.Errorf("connection refused: %v", err)
	}
	if _, err := New("devlake:8080", time.Second, ""); err == nil {
		t.Error("a base URL without scheme must be refused")
	}
}

func TestTimeMarshalsAsUTCSecondsWithZ(t *testing.T) {
	local := time.Date(2026, 3, 10, 16, 2, 11, 123456789, time.FixedZone("EET", 2*3600))
	v := struct {
		A Time `json:"a"`
		B Time `json:"b,omitzero"`
	}{A: At(local)}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"a":"2026-03-10T14:02:11Z"}` {
		t.Errorf("= %s, %v", b, err)
	}
}

func TestIsCommitSHA(t *testing.T) {
	for s, want := range map[string]bool{
		"3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d": true,
		"3F9A1C0D5E7B2A4C6E8F0A1B3C5D7E9F1A2B4C6D": true,
		"3f9a1c0": false,
		"zf9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d":  false,
		"3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d0": false,
	} {
		if IsCommitSHA(s) != want {
			t.Errorf("IsCommitSHA(%q) != %v", s, want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestPostReadsAnEndlessAnswerOnlyToItsLimit: an answer that never ends (a misrouted streaming
// endpoint) is read up to maxAnswer and classified, not buffered until the timeout.
func TestPostReadsAnEndlessAnswerOnlyToItsLimit(t *testing.T) {
	var sent int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		chunk := []byte(strings.Repeat("y", 4096))
		for r.Context().Err() == nil && sent < 64<<20 {
			n, err := w.Write(chunk)
			sent += n
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, _ := New(srv.URL, 30*time.Second, "")
	err := c.Post(context.Background(), KindDeployments, 1, config.NewSecret("k"), nil)
	var de *Error
	if !errors.As(err, &de) || de.Class != ClassConfig || !strings.Contains(de.Message, "not DevLake's JSON (text/plain)") {
		t.Fatalf("err = %v, want a configuration fault naming the content type", err)
	}
	if len(de.Message) > 300 {
		t.Errorf("message is %d bytes", len(de.Message))
	}
}
