package e2e

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/internal/logging"
)

// TestLeakScanFindsPlantedCanaries proves the chaos run's scanner: a canary planted in a log line, a
// message header, a message body or a metric, raw, URL-encoded or base64-encoded at any alignment, is
// found and reported with its place; text without one (a redacted server list among it) is not.
func TestLeakScanFindsPlantedCanaries(t *testing.T) {
	c := newCanaries(t)
	s := newLeakScan(c)

	list := c.natsURL("4222")
	s.text("redacted log line", `{"level":"warn","url":"`+logging.RedactURL(list)+`","message":"connect to NATS"}`)
	s.text("clean metric", `doraflow_up{service="enricher"} 1`)
	s.message("clean message", "doraflow.deployment.observed", nats.Header{"Ce-Type": {"io.doraflow.deployment.observed"}}, []byte(`{"id":"a/b/c"}`))
	if err := s.err(); err != nil {
		t.Fatalf("clean input reported: %v", err)
	}

	s.text("planted log line", `{"level":"warn","url":"`+list+`","message":"connect to NATS"}`)
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + c.GitHubToken))
	s.message("planted header", "doraflow.dlq.enricher", nats.Header{"Authorization": {"Basic " + basic}}, nil)
	s.message("planted body", "doraflow.deployment.enriched", nil, []byte(`{"error":"POST: api key `+c.DevLakeKey+` rejected"}`))
	s.text("planted metric", `doraflow_sso_info{token_url="https://sso/token?refresh_token=`+url.QueryEscape(c.OfflineToken)+`"} 1`)
	for k, prefix := range []string{"", "a", "ab"} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			s.text("planted base64 alignment "+string(rune('0'+k)), enc.EncodeToString([]byte(prefix+c.NATSPassword+"tail")))
		}
	}
	err := s.err()
	if err == nil {
		t.Fatal("planted canaries not found")
	}
	for _, want := range []string{
		"planted log line: NATS password (alice) (URL path-encoded or URL userinfo-encoded)", "planted log line: NATS password (bob) (URL path-encoded or URL userinfo-encoded)",
		"planted header header Authorization: GitHub token (base64",
		"planted body body: DevLake API key (raw)",
		"planted metric: WebRCA offline token (URL query-encoded)",
		"planted base64 alignment 0: NATS password (alice) (base64", "planted base64 alignment 1: NATS password (alice) (base64",
		"planted base64 alignment 2: NATS password (alice) (base64",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report misses %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "redacted log line") || strings.Contains(err.Error(), "clean") {
		t.Errorf("report names clean input:\n%v", err)
	}
	if s.messages != 3 || s.headers != 2 {
		t.Errorf("counted %d messages and %d headers, want 3 and 2", s.messages, s.headers)
	}
}
