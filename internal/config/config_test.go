package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sample is a configuration shaped like a service's: one own section with nested keys.
type sample struct {
	Argocd struct {
		Namespaces []string      `yaml:"namespaces"`
		Interval   time.Duration `yaml:"interval"`
		Teams      []struct {
			Name string `yaml:"name"`
		} `yaml:"teams"`
	} `yaml:"argocd"`
}

func (s *sample) Validate() error {
	var p Problems
	if s.Argocd.Interval <= 0 {
		p.Addf("argocd.interval", "must be positive, got %s", s.Argocd.Interval)
	}
	for i, t := range s.Argocd.Teams {
		if t.Name == "" {
			p.Addf(fmt.Sprintf("argocd.teams[%d].name", i), "required")
		}
	}
	return p.Err()
}

func defaults() sample {
	var s sample
	s.Argocd.Interval = time.Minute
	return s
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		want     []string // problems, in order; empty means valid
		wantNS   []string
		interval time.Duration
	}{
		{name: "empty file keeps defaults", yaml: "", interval: time.Minute},
		{name: "own section", yaml: "argocd:\n  namespaces: [a, b]\n  interval: 30s\n", wantNS: []string{"a", "b"}, interval: 30 * time.Second},
		{name: "other services' sections are ignored",
			yaml:     "argocd:\n  interval: 2m\nwebrca:\n  interval: 1h\n  anything: goes\nintegration:\n  devlake:\n    base_url: x\n",
			interval: 2 * time.Minute},
		{name: "unknown top-level key", yaml: "argcd:\n  interval: 2m\n", want: []string{"line 1: field argcd not found in type config.sample"}},
		{name: "every unknown nested key is listed",
			yaml: "argocd:\n  namespace: [a]\n  intervall: 1m\n",
			want: []string{"line 2: field namespace not found in type struct", "line 3: field intervall not found in type struct"}},
		{name: "bad duration", yaml: "argocd:\n  interval: soon\n", want: []string{"line 2: cannot unmarshal !!str `soon` into time.Duration"}},
		{name: "validation lists every problem with its path",
			yaml: "argocd:\n  interval: -1s\n  teams:\n    - name: a\n    - name: ''\n    - {}\n",
			want: []string{"argocd.interval: must be positive, got -1s", "argocd.teams[1].name: required", "argocd.teams[2].name: required"}},
		{name: "not a mapping", yaml: "- a\n- b\n", want: []string{"line 1: the document must be a mapping of sections"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaults()
			err := Decode(strings.NewReader(tt.yaml), &got)
			problems := Each(err)
			if len(tt.want) > 0 && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			// yaml.v3 phrases type names its own way; compare on prefixes.
			if len(problems) != len(tt.want) {
				t.Fatalf("problems = %q, want %q", problems, tt.want)
			}
			for i := range tt.want {
				if !strings.HasPrefix(problems[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want prefix %q", i, problems[i], tt.want[i])
				}
			}
			if len(tt.want) == 0 {
				if diff := cmp.Diff(tt.wantNS, got.Argocd.Namespaces); diff != "" {
					t.Errorf("namespaces (-want +got):\n%s", diff)
				}
				if got.Argocd.Interval != tt.interval {
					t.Errorf("interval = %s, want %s", got.Argocd.Interval, tt.interval)
				}
			}
		})
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("argocd:\n  interval: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := defaults()
	err := LoadFile(path, &s)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "argocd.interval") {
		t.Fatalf("LoadFile = %v, want the path and the problem", err)
	}
	if err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"), &s); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("missing file: %v, want a read error that is not ErrInvalid", err)
	}
}

func TestEnv(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-f1le\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"PLAIN": "value", "DUR": "90s", "BAD_DUR": "soon", "NUM": "3", "BIG": "99", "FLAG": "yes", "BAD_FLAG": "maybe",
		"DIRECT_TOKEN": "direct-s3cret", "FILE_TOKEN_FILE": tokenFile, "BOTH": "a", "BOTH_FILE": tokenFile,
		"MISSING_FILE_FILE": filepath.Join(dir, "nope"),
	}
	e := NewEnv(func(k string) string { return vars[k] })
	if got := e.String("PLAIN", "d", ""); got != "value" {
		t.Errorf("String = %q", got)
	}
	if got := e.String("UNSET", "d", ""); got != "d" {
		t.Errorf("String default = %q", got)
	}
	if got := e.Duration("DUR", time.Second, ""); got != 90*time.Second {
		t.Errorf("Duration = %s", got)
	}
	e.Duration("BAD_DUR", time.Second, "")
	if got := e.Int("NUM", 1, 1, 5, ""); got != 3 {
		t.Errorf("Int = %d", got)
	}
	e.Int("BIG", 1, 1, 5, "")
	if !e.Bool("FLAG", false, "") {
		t.Error("Bool(yes) = false")
	}
	e.Bool("BAD_FLAG", false, "")
	if got := e.Secret("DIRECT_TOKEN", true, "").Reveal(); got != "direct-s3cret" {
		t.Errorf("Secret direct = %q", got)
	}
	if got := e.Secret("FILE_TOKEN", true, "").Reveal(); got != "from-f1le" {
		t.Errorf("Secret from file = %q (trailing newline must be trimmed)", got)
	}
	e.Secret("BOTH", false, "")
	e.Secret("MISSING_FILE", false, "")
	e.Secret("ABSENT_TOKEN", true, "the token")
	e.Required("ABSENT", "needed")

	err := e.Err()
	if err == nil {
		t.Fatal("Err() = nil, want every problem")
	}
	for _, want := range []string{
		`BAD_DUR="soon" is not a non-negative duration`,
		`BIG="99" is not an integer from 1 to 5`,
		`BAD_FLAG="maybe" is not a boolean`,
		"BOTH and BOTH_FILE are both set",
		"MISSING_FILE_FILE: read",
		"ABSENT_TOKEN or ABSENT_TOKEN_FILE is required (the token)",
		"ABSENT is required (needed)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() misses %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "from-f1le") || strings.Contains(err.Error(), "direct-s3cret") {
		t.Errorf("a secret value leaked into the error: %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2")
	type holder struct {
		Token Secret `json:"token"`
	}
	outputs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s),
		fmt.Sprintf("%v %+v", holder{s}, holder{s}),
	}
	b, _ := s.MarshalJSON()
	tb, _ := s.MarshalText()
	outputs = append(outputs, string(b), string(tb))
	for _, o := range outputs {
		if strings.Contains(o, "hunter2") {
			t.Errorf("secret revealed in %q", o)
		}
		if !strings.Contains(o, "[redacted]") {
			t.Errorf("%q does not say the value is redacted", o)
		}
	}
	if s.Reveal() != "hunter2" || !s.IsSet() || NewSecret("").IsSet() {
		t.Error("Reveal/IsSet do not work")
	}
}

func TestParseFlags(t *testing.T) {
	var out strings.Builder
	f, err := ParseFlags("svc", []string{"--config", "c.yaml", "--version"}, &out, nil, nil)
	if err != nil || f.ConfigPath != "c.yaml" || !f.Version {
		t.Fatalf("ParseFlags = %+v, %v", f, err)
	}
	out.Reset()
	_, err = ParseFlags("svc", []string{"--help"}, &out, []EnvVar{{Name: "NATS_URL", Default: "nats://x", Usage: "server"}}, nil)
	if !errors.Is(err, ErrHelp) || !strings.Contains(out.String(), "NATS_URL (default nats://x)") || !strings.Contains(out.String(), "-check-config") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
	if _, err := ParseFlags("svc", []string{"stray"}, &out, nil, nil); err == nil {
		t.Error("stray argument accepted")
	}
}
