package e2e

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/pkg/events"
)

// Docs-versus-code checks for what a user reads first: the READMEs, docs/events.md and
// docs/operations.md (issue 19 item 12). Each test states one class of claim and derives the truth
// from the code, so a README that drifts fails here.

var repoRoot = filepath.Join("..", "..")

func readRepo(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goSources returns the non-test Go files of a directory, concatenated.
func goSources(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(src)
	}
	return b.String()
}

// section returns the Markdown section under the "## title" heading, up to the next "## " heading.
func section(doc, title string) string {
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// TestReadmeMetricsMatchCode: a service exports doraflow_messaging_* only when it handles messages
// through the shared router or publishes through the shared publisher (the metrics are vectors that
// appear with their first handled or published message). Each README's "Metrics" section mentions
// them exactly then, and the root README does not claim them for every service when one has none.
func TestReadmeMetricsMatchCode(t *testing.T) {
	var without []string
	for _, s := range services {
		code := goSources(t, filepath.Join("services", s))
		emits := strings.Contains(code, "d.Router.Add(") || strings.Contains(code, "d.Publisher")
		if !emits {
			without = append(without, s)
		}
		metrics := section(readRepo(t, filepath.Join("services", s, "README.md")), "Metrics")
		if metrics == "" {
			t.Errorf("services/%s/README.md has no \"## Metrics\" section", s)
			continue
		}
		if says := claimsMessaging(metrics); says != emits {
			t.Errorf("services/%s/README.md Metrics: mentions doraflow_messaging_* = %v, but the service handles or publishes through the shared runtime = %v", s, says, emits)
		}
	}
	root := section(readRepo(t, "README.md"), "Metrics")
	for _, line := range strings.Split(root, "\n\n") {
		if !strings.Contains(line, "doraflow_messaging_") {
			continue
		}
		for _, s := range without {
			if !strings.Contains(line, s) {
				t.Errorf("README.md Metrics says services export doraflow_messaging_* without naming %s, which has none:\n%s", s, line)
			}
		}
	}
}

// claimsMessaging reports whether a Metrics section says the service exports doraflow_messaging_*
// (a line saying "No `doraflow_messaging_*`" does not).
func claimsMessaging(metrics string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.Contains(l, "doraflow_messaging_") && !strings.Contains(l, "No `doraflow_messaging_") {
			return true
		}
	}
	return false
}

var checkAdd = regexp.MustCompile(`[cC]hecks\.Add\("([a-z-]+)"`)

// TestReadinessChecksAreDocumented: every readiness check a service registers is named in its
// README (as `name` or `name: …`, what /readyz prints), and docs/operations.md's "Is it healthy?"
// row lists every check of every service, the shared ones (startup, nats, router) included.
func TestReadinessChecksAreDocumented(t *testing.T) {
	shared := checkNames(goSources(t, filepath.Join("internal", "service")))
	if len(shared) == 0 {
		t.Fatal("found no checks.Add in internal/service: the pattern is stale")
	}
	all := slices.Clone(shared)
	for _, s := range services {
		own := checkNames(goSources(t, filepath.Join("services", s)))
		if len(own) == 0 {
			t.Errorf("services/%s registers no readiness check of its own: the pattern is stale", s)
		}
		readme := readRepo(t, filepath.Join("services", s, "README.md"))
		for _, c := range own {
			if !strings.Contains(readme, "`"+c+"`") && !strings.Contains(readme, "`"+c+": ") {
				t.Errorf("services/%s/README.md does not name its readiness check %q", s, c)
			}
		}
		all = append(all, own...)
	}
	row := lineWith(section(readRepo(t, filepath.Join("docs", "operations.md")), "Is it healthy?"), "| each service's `/readyz`")
	if row == "" {
		t.Fatal("docs/operations.md has no \"each service's `/readyz`\" row")
	}
	for _, c := range all {
		if !strings.Contains(row, "`"+c+"`") {
			t.Errorf("docs/operations.md /readyz row does not list the check %q:\n%s", c, row)
		}
	}
}

func checkNames(src string) []string {
	var names []string
	for _, m := range checkAdd.FindAllStringSubmatch(src, -1) {
		names = append(names, m[1])
	}
	return names
}

// userDocs are the documents a user reads: the READMEs and docs/*.md (decision records excluded:
// they quote what was true when they were written).
func userDocs(t *testing.T) []string {
	t.Helper()
	docs := []string{"README.md", filepath.Join("cmd", "doraflow", "README.md")}
	for _, s := range services {
		docs = append(docs, filepath.Join("services", s, "README.md"))
	}
	more, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		rel, _ := filepath.Rel(repoRoot, m)
		docs = append(docs, rel)
	}
	return docs
}

var (
	mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	mdFile = regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
)

// TestDocsCiteOnlyFilesInTheRepo: every relative link and every file named NAME.md in the user
// docs exists in the repository (a README cited STYLE.md, which is not in it).
func TestDocsCiteOnlyFilesInTheRepo(t *testing.T) {
	byBase := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".tools" || d.Name() == "bin" || d.Name() == ".run") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			byBase[d.Name()] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range userDocs(t) {
		text := readRepo(t, doc)
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.Dir(doc), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, target)
			}
		}
		for _, name := range mdFile.FindAllString(text, -1) {
			if strings.Contains(name, "/") {
				if exists(filepath.Join(repoRoot, filepath.Dir(doc), name)) || exists(filepath.Join(repoRoot, name)) {
					continue
				}
			} else if byBase[name] {
				continue
			}
			t.Errorf("%s cites %s, which is not in the repository", doc, name)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var localCurl = regexp.MustCompile(`(?:localhost|127\.0\.0\.1):(\d+)`)

// TestReadmeCurlsTheServicesOwnPort: a README's curl of a local ops endpoint uses the port
// `doraflow local` (make run) gives that service: --ops-port (8081) plus its place in the start
// order of cmd/doraflow/services.go. The webrca-poller README curled 8081, the exporter.
func TestReadmeCurlsTheServicesOwnPort(t *testing.T) {
	if !strings.Contains(readRepo(t, filepath.Join("cmd", "doraflow", "local.go")), `"ops-port", 8081,`) {
		t.Fatal("cmd/doraflow/local.go: --ops-port no longer defaults to 8081; update this test")
	}
	order := localStartOrder(t)
	for _, s := range services {
		i := slices.Index(order, s)
		if i < 0 {
			t.Fatalf("cmd/doraflow/services.go does not start %s", s)
		}
		want := strconv.Itoa(8081 + i)
		doc := filepath.Join("services", s, "README.md")
		for n, line := range strings.Split(readRepo(t, doc), "\n") {
			if !strings.Contains(line, "curl") || strings.Contains(line, "port-forward") {
				continue
			}
			for _, m := range localCurl.FindAllStringSubmatch(line, -1) {
				if m[1] != want {
					t.Errorf("%s:%d curls port %s; under make run %s listens on %s:\n%s", doc, n+1, m[1], s, want, line)
				}
			}
		}
	}
}

// localStartOrder reads the services slice of cmd/doraflow/services.go.
func localStartOrder(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, "cmd", "doraflow", "services.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "services" || len(vs.Values) != 1 {
			return true
		}
		if lit, ok := vs.Values[0].(*ast.CompositeLit); ok {
			for _, e := range lit.Elts {
				if b, ok := e.(*ast.BasicLit); ok {
					s, _ := strconv.Unquote(b.Value)
					order = append(order, s)
				}
			}
		}
		return false
	})
	if len(order) != len(services) {
		t.Fatalf("cmd/doraflow/services.go: services = %v", order)
	}
	return order
}

// natsCLI builds (or reuses) the pinned NATS CLI the docs tell users to run.
func natsCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "tools.sh"), "nats").Output()
	if err != nil {
		t.Fatalf("hack/tools.sh nats: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return filepath.Join(lines[len(lines)-1], "nats")
}

// docCommands returns the NATS CLI commands of a document, with the line each is on: inline code
// spans and shell lines of code blocks that start with `nats ` or `.tools/bin/nats `.
func docCommands(doc string) (cmds, lines []string) {
	span := regexp.MustCompile("`((?:\\.tools/bin/)?nats [^`]+)`")
	inBlock := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			cmd, _, _ := strings.Cut(line, "#")
			if cmd = strings.TrimSpace(cmd); strings.HasPrefix(cmd, "nats ") || strings.HasPrefix(cmd, ".tools/bin/nats ") {
				cmds, lines = append(cmds, cmd), append(lines, line)
			}
			continue
		}
		for _, m := range span.FindAllStringSubmatch(line, -1) {
			cmds, lines = append(cmds, m[1]), append(lines, line)
		}
	}
	return cmds, lines
}

// TestNATSRecipesInDocsRun runs the NATS CLI commands of docs/events.md and docs/operations.md with
// the pinned CLI against a server like `doraflow local`'s (JetStream, no system account), without a
// terminal, as a script would:
//   - the dead-letter replay recipe (`nats pub … < body.json`) must publish the body (it published 0
//     bytes without --force-stdin);
//   - every read-only command must succeed, or its line must say it needs the system account
//     (`nats server report jetstream` does) or a terminal.
func TestNATSRecipesInDocsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pinned NATS CLI")
	}
	cli := natsCLI(t)
	srv := natstest.Start(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for stream, subjects := range events.StreamSubjects {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: subjects}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	body := `{"id":"dep-1","application":"checkout"}`
	if err := os.WriteFile(filepath.Join(dir, "body.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(cmd string) (string, error) {
		c := exec.CommandContext(ctx, "bash", "-c", cmd)
		c.Dir = dir
		c.Env = append(os.Environ(), "NATS_URL="+srv.URL(), "PATH="+filepath.Dir(cli)+":"+os.Getenv("PATH"))
		c.Stdin = nil // not a terminal
		out, err := c.CombinedOutput()
		return string(out), err
	}
	replayed := false
	for _, doc := range []string{filepath.Join("docs", "events.md"), filepath.Join("docs", "operations.md")} {
		cmds, lines := docCommands(readRepo(t, doc))
		for i, cmd := range cmds {
			cmd = strings.TrimPrefix(cmd, ".tools/bin/")
			switch {
			case strings.HasPrefix(cmd, "nats pub "):
				cmd = strings.NewReplacer("<subject>", events.SubjectDeploymentObserved, "<id>", "dep-1").Replace(cmd)
				if out, err := run(cmd); err != nil {
					t.Errorf("%s: %s: %v\n%s", doc, cmd, err, out)
					continue
				}
				stream, err := js.Stream(ctx, events.StreamRaw)
				if err != nil {
					t.Fatal(err)
				}
				msg, err := stream.GetLastMsgForSubject(ctx, events.SubjectDeploymentObserved)
				if err != nil {
					t.Fatal(err)
				}
				if string(msg.Data) != body || msg.Header.Get("Nats-Msg-Id") != "dep-1-replay-1" {
					t.Errorf("%s: the replay recipe published %d bytes %q with Nats-Msg-Id %q, want the body of body.json:\n%s",
						doc, len(msg.Data), msg.Data, msg.Header.Get("Nats-Msg-Id"), cmd)
				}
				replayed = true
			case strings.HasPrefix(cmd, "nats sub "), strings.Contains(cmd, "<"):
				// sub runs until interrupted; placeholders name a message that is not there
			default:
				out, err := run(cmd)
				if err != nil && !strings.Contains(lines[i], "system account") && !strings.Contains(lines[i], "terminal") {
					t.Errorf("%s: `%s` fails on a server like doraflow local's, and its line does not say what it needs: %v\n%s",
						doc, cmd, err, out)
				}
			}
		}
	}
	if !replayed {
		t.Error("docs/events.md has no `nats pub … < body.json` replay recipe")
	}
}

// TestMakeTestFailsInCIWithoutPrometheus: when hack/prometheus.sh cannot provide Prometheus, `make
// test` says why (its stderr is no longer hidden); under CI it fails, locally it goes on and says
// the Prometheus tests will skip. The README says where Prometheus comes from.
func TestMakeTestFailsInCIWithoutPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "prometheus.sh")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'prometheus.sh: apt-get not found: install Prometheus yourself' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") && !strings.HasPrefix(kv, "PROMETHEUS_BIN_DIR=") && !strings.HasPrefix(kv, "MAKEFLAGS=") {
			env = append(env, kv)
		}
	}
	// GOTEST=true runs no test; KUBEBUILDER_ASSETS set skips building kube-apiserver.
	makeTest := func(extra ...string) (string, error) {
		c := exec.CommandContext(t.Context(), "make", "-s", "-C", root, "test", "GOTEST=true", "MODULES="+filepath.Join(root, "pkg", "events"),
			"PROMETHEUS_SH="+fake)
		c.Env = append(append(slices.Clone(env), "KUBEBUILDER_ASSETS="+dir), extra...)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	out, err := makeTest("CI=true")
	if err == nil || !strings.Contains(out, "apt-get not found") {
		t.Errorf("make test under CI without Prometheus: err %v, want a failure naming the reason:\n%s", err, out)
	}
	out, err = makeTest()
	if err != nil || !strings.Contains(out, "apt-get not found") || !strings.Contains(out, "skip") {
		t.Errorf("make test locally without Prometheus: err %v, want success, the reason and that the Prometheus tests skip:\n%s", err, out)
	}
	row := lineWith(readRepo(t, "README.md"), "| `make test` |")
	if !strings.Contains(row, "hack/prometheus.sh") || !strings.Contains(row, "Debian") {
		t.Errorf("README.md's make test row does not say Prometheus comes from the OS packages (Debian's prometheus, hack/prometheus.sh):\n%s", row)
	}
}
