package servicetest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AssertStandardEndpoints checks the endpoints every doraflow service serves.
func AssertStandardEndpoints(t *testing.T, s *Service, service string) {
	t.Helper()
	for _, c := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", "ok"},
		{"/", `"service": "` + service + `"`},
		{"/api/v1/health", `"status": "healthy"`},
		{"/metrics", `doraflow_build_info{goversion=`},
		{"/metrics", `service="` + service + `"`},
		{"/metrics", "go_goroutines"},
	} {
		code, body := s.Get(t, c.path)
		if code != 200 || !strings.Contains(body, c.want) {
			t.Errorf("GET %s = %d, want 200 containing %q; body:\n%.600s", c.path, code, c.want, body)
		}
	}
}

// AssertConfigFiles runs the service's --check-config on every testdata/config/*.yaml. Files named
// valid-*.yaml must pass. Files named invalid-*.yaml must fail, and each of their "# want: …" lines
// must appear in the printed problems.
func AssertConfigFiles(t *testing.T, run RunFunc) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/config/*.yaml files (%v)", err)
	}
	var valid, invalid int
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"--check-config", f}, func(string) string { return "" }, &out)
			switch {
			case strings.HasPrefix(name, "valid"):
				valid++
				if err != nil {
					t.Fatalf("--check-config %s = %v, want ok; output:\n%s", f, err, out.String())
				}
				if !strings.Contains(out.String(), "ok") {
					t.Errorf("output %q does not say ok", out.String())
				}
			case strings.HasPrefix(name, "invalid"):
				invalid++
				if err == nil {
					t.Fatalf("--check-config %s passed, want failure", f)
				}
				wants := wantLines(t, f)
				if len(wants) == 0 {
					t.Fatalf("%s has no '# want:' lines", f)
				}
				for _, w := range wants {
					if !strings.Contains(out.String(), w) {
						t.Errorf("problems do not mention %q:\n%s", w, out.String())
					}
				}
			default:
				t.Fatalf("%s: name config test files valid-*.yaml or invalid-*.yaml", name)
			}
		})
	}
	if valid == 0 || invalid == 0 {
		t.Errorf("need at least one valid and one invalid config file; have %d and %d", valid, invalid)
	}
}

func wantLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wants []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if w, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "# want:"); ok {
			wants = append(wants, strings.TrimSpace(w))
		}
	}
	return wants
}

// AssertVersion checks that --version prints the service name and returns nil without connecting.
func AssertVersion(t *testing.T, run RunFunc, service string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("--version = %v", err)
	}
	if !strings.HasPrefix(out.String(), service+" ") {
		t.Errorf("--version printed %q, want it to start with %q", out.String(), service+" ")
	}
}
