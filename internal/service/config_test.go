package service

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/config"
)

type checkedRules struct {
	Demo struct {
		Interval time.Duration `yaml:"interval"`
		Workers  int           `yaml:"workers"`
	} `yaml:"demo"`
}

func (r *checkedRules) Validate() error {
	var p config.Problems
	if r.Demo.Workers < 1 || r.Demo.Workers > 10 {
		p.Addf("demo.workers", "%d is out of range 1..10", r.Demo.Workers)
	}
	return p.Err()
}

// A file with a type error, an unknown key and an out-of-range value, and a bad environment
// variable: one error names all four, and it is a configuration error (exit 2).
func TestEveryConfigurationProblemAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("demo:\n  interval: often\n  workers: 99\n  colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LOG_LEVEL": "info", "NATS_URL": "nats://127.0.0.1:1", "JETSTREAM_REPLICAS": "seven"}
	err := Run(t.Context(), Spec[checkedRules]{Name: "svc", Version: "v", DefaultConfig: func() checkedRules {
		var r checkedRules
		r.Demo.Workers = 2
		return r
	}}, []string{"--config", path}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Run = %v, want a configuration error", err)
	}
	for _, want := range []string{"interval", "often", "colour", "demo.workers: 99 is out of range", "JETSTREAM_REPLICAS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
