package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
)

// canaries are fake secrets given to a run so that a scan can prove none of them reaches a log, a
// message, a header, a metric or the CLI's output. Each is random per run and contains "+" and "/",
// so its URL-encoded forms differ from the raw one.
type canaries struct {
	NATSPassword  string // alice's, in the first URL of NATS_URL
	NATSPassword2 string // bob's, in the second URL: the one RedactURL once missed
	GitHubToken   string
	OfflineToken  string // WebRCA: Red Hat SSO offline token
	DevLakeKey    string
}

func newCanaries(t testing.TB) canaries {
	t.Helper()
	one := func(what string) string {
		b := make([]byte, 12)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		h := hex.EncodeToString(b)
		return "canary-" + what + "-" + h[:12] + "+/" + h[12:]
	}
	return canaries{NATSPassword: one("nats1"), NATSPassword2: one("nats2"), GitHubToken: one("github"),
		OfflineToken: one("offline"), DevLakeKey: one("devlake")}
}

func (c canaries) named() map[string]string {
	return map[string]string{"NATS password (alice)": c.NATSPassword, "NATS password (bob)": c.NATSPassword2,
		"GitHub token": c.GitHubToken, "WebRCA offline token": c.OfflineToken, "DevLake API key": c.DevLakeKey}
}

// natsUsers is a natstest.Start option: the server requires a user and password, alice's or bob's.
func (c canaries) natsUsers() func(*server.Options) {
	return func(o *server.Options) {
		o.Users = []*server.User{{Username: "alice", Password: c.NATSPassword}, {Username: "bob", Password: c.NATSPassword2}}
	}
}

// natsURL is NATS_URL as a cluster's server list: two URLs for the server, each with its own user
// and canary password in the userinfo.
func (c canaries) natsURL(port string) string {
	first := url.URL{Scheme: "nats", User: url.UserPassword("alice", c.NATSPassword), Host: net.JoinHostPort("127.0.0.1", port)}
	second := url.URL{Scheme: "nats", User: url.UserPassword("bob", c.NATSPassword2), Host: net.JoinHostPort("localhost", port)}
	return first.String() + "," + second.String()
}

// connect is natstest's Connect for a server that requires a password.
func (c canaries) connect(t testing.TB, srv *natstest.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(srv.URL(), nats.UserInfo("alice", c.NATSPassword), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// leakScan looks for every form of every canary in what it is shown, and remembers where it found
// one. The forms: raw, URL-encoded (query and path escaping), and base64 (standard and URL alphabets,
// at the three alignments a secret can take inside a longer encoded string, as in Basic auth).
type leakScan struct {
	forms    map[string]string // form → "what (which form)"
	hits     []string
	hitCount int
	// What was scanned.
	logLines, messages, headers, pages, cliRuns int
	streams                                     map[string]int // stream → messages read
}

const maxHitsShown = 30

func newLeakScan(c canaries) *leakScan {
	s := &leakScan{forms: map[string]string{}, streams: map[string]int{}}
	for what, v := range c.named() {
		s.add(v, what, "raw")
		s.add(url.QueryEscape(v), what, "URL query-encoded")
		s.add(url.PathEscape(v), what, "URL path-encoded")
		s.add(url.UserPassword("u", v).String()[2:], what, "URL userinfo-encoded")
		for _, enc := range []struct {
			name string
			e    *base64.Encoding
		}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
			for _, f := range base64Forms(enc.e, v) {
				s.add(f, what, enc.name)
			}
		}
	}
	return s
}

// add records form as what's encoding kind; forms that several encodings share name them all.
func (s *leakScan) add(form, what, kind string) {
	prefix := what + " ("
	if have, ok := s.forms[form]; ok {
		s.forms[form] = strings.TrimSuffix(have, ")") + " or " + kind + ")"
		return
	}
	s.forms[form] = prefix + kind + ")"
}

// base64Forms returns the characters of enc's encoding that depend on secret alone, wherever it sits
// in the encoded input: for each of the three offsets modulo 3, the encoding of the secret after
// that many bytes, without the characters shared with its neighbours.
func base64Forms(enc *base64.Encoding, secret string) []string {
	var forms []string
	n := len(secret)
	for k := range 3 {
		full := enc.EncodeToString(append(make([]byte, k), secret...))
		from, to := (8*k+5)/6, 8*(k+n)/6
		forms = append(forms, full[from:to])
	}
	return forms
}

// text scans s, found at place.
func (s *leakScan) text(place, text string) {
	for form, what := range s.forms {
		if i := strings.Index(text, form); i >= 0 {
			s.hitCount++
			if len(s.hits) < maxHitsShown {
				s.hits = append(s.hits, fmt.Sprintf("%s: %s in %q", place, what, excerpt(text, i, len(form))))
			}
		}
	}
}

func excerpt(s string, i, n int) string {
	from, to := max(0, i-120), min(len(s), i+n+120)
	return s[from:to]
}

// logs scans every line a process wrote.
func (s *leakScan) logs(p *proc) {
	for i, line := range strings.Split(p.out.String(), "\n") {
		if line == "" {
			continue
		}
		s.logLines++
		s.text(fmt.Sprintf("%s (pid %d) log line %d", p.name, p.cmd.Process.Pid, i+1), line)
	}
}

// message scans a message's subject, every header (names and values) and body.
func (s *leakScan) message(place, subject string, h nats.Header, data []byte) {
	s.messages++
	s.text(place+" subject", subject)
	for k, vs := range h {
		s.headers++
		s.text(place+" header name", k)
		for _, v := range vs {
			s.text(place+" header "+k, v)
		}
	}
	s.text(place+" body", string(data))
}

// opsPages are the pages every service's ops server serves.
var opsPages = []string{"/", "/healthz", "/readyz", "/metrics", "/api/v1/health"}

// opsPages scans every page of a running process's ops server, whatever its status code.
func (s *leakScan) opsPages(ctx context.Context, p *proc) error {
	for _, page := range opsPages {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, body, err := servicetest.HTTPGet(cctx, p.ops+page)
		cancel()
		if err != nil {
			return fmt.Errorf("%s GET %s: %w", p.name, page, err)
		}
		s.pages++
		s.text(fmt.Sprintf("%s (pid %d) GET %s", p.name, p.cmd.Process.Pid, page), body)
	}
	return nil
}

// allStreams reads every message of every stream on the server, the KV buckets' and object stores'
// streams (KV_*, OBJ_*) included, up to each stream's last sequence when the scan starts.
func (s *leakScan) allStreams(ctx context.Context, js jetstream.JetStream) error {
	lister := js.StreamNames(ctx)
	var names []string
	for n := range lister.Name() {
		names = append(names, n)
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.stream(ctx, js, name); err != nil {
			return err
		}
	}
	return nil
}

func (s *leakScan) stream(ctx context.Context, js jetstream.JetStream, name string) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	s.streams[name] = 0
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("stream %s after seq %d: %w", name, seq, err)
		}
		n := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("stream %s: %w", name, err)
			}
			seq = meta.Sequence.Stream
			s.streams[name]++
			s.message(fmt.Sprintf("stream %s seq %d", name, seq), m.Subject(), m.Headers(), m.Data())
			n++
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("stream %s after seq %d: %w", name, seq, err)
		}
		if n == 0 {
			return fmt.Errorf("stream %s: nothing after seq %d, want up to %d", name, seq, info.State.LastSeq)
		}
	}
	return nil
}

// cli runs the doraflow CLI with env and scans its combined output, which it returns.
func (s *leakScan) cli(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	s.cliRuns++
	s.text("doraflow "+strings.Join(args, " ")+" output", string(out))
	return string(out), err
}

// summary says what was scanned.
func (s *leakScan) summary() string {
	var streams []string
	for _, name := range slices.Sorted(maps.Keys(s.streams)) {
		streams = append(streams, fmt.Sprintf("%s=%d", name, s.streams[name]))
	}
	return fmt.Sprintf("%d canary forms; %d log lines, %d messages (%d headers) in %d streams [%s], %d ops pages, %d CLI runs",
		len(s.forms), s.logLines, s.messages, s.headers, len(s.streams), strings.Join(streams, " "), s.pages, s.cliRuns)
}

// err lists where canaries were found, nil when nowhere.
func (s *leakScan) err() error {
	if s.hitCount == 0 {
		return nil
	}
	more := ""
	if s.hitCount > len(s.hits) {
		more = fmt.Sprintf("\n… and %d more", s.hitCount-len(s.hits))
	}
	return fmt.Errorf("%d canary secrets leaked:\n%s%s", s.hitCount, strings.Join(s.hits, "\n"), more)
}

// doraflowCLI returns the doraflow CLI: bin/doraflow as `make build` (run by make test-chaos) leaves
// it, else one built now.
func doraflowCLI(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("..", "..", "bin", "doraflow")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "doraflow")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join("..", "..", "cmd", "doraflow")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build doraflow: %v\n%s", err, b)
	}
	return out
}
