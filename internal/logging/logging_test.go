package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/doraflow/doraflow/internal/config"
)

func TestLoggerWritesFixedFields(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "enricher", "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str(FieldHandler, "h").Msg("started")
	log.Debug().Msg("hidden at info")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1 (debug is below info):\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	for k, want := range map[string]string{"level": "info", "message": "started", "service": "enricher", "version": "v1.2.3", "handler": "h"} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %s", k, rec[k], want)
		}
	}
	if ts, _ := rec["time"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != len("2026-01-02T15:04:05.000Z") {
		t.Errorf("time = %q, want UTC RFC 3339 with milliseconds", rec["time"])
	}
}

func TestLoggerRejectsUnknownLevel(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, "verbose", "s", "v"); err == nil || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Fatalf("New(verbose) = %v", err)
	}
}

func TestSecretsNeverReachTheLog(t *testing.T) {
	var buf bytes.Buffer
	log, _ := New(&buf, "trace", "s", "v")
	tok := config.NewSecret("ghp_supersecret")
	cfg := struct {
		URL   string
		Token config.Secret
	}{"https://api.github.com", tok}
	log.Info().Interface("config", cfg).Stringer("token", tok).Msg("configured")
	log.Info().Str("url", RedactURL("nats://user:ghp_supersecret@nats:4222?token=ghp_supersecret&x=1")).Msg("connecting")
	Watermill(log).With(watermill.LogFields{"token": tok}).Info("wm", watermill.LogFields{"secret": tok})
	if strings.Contains(buf.String(), "supersecret") {
		t.Fatalf("secret logged:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "[redacted]") || !strings.Contains(buf.String(), "x=1") {
		t.Errorf("redaction markers or harmless values missing:\n%s", buf.String())
	}
}

func TestWatermillLevelsMoveDownOneStep(t *testing.T) {
	var buf bytes.Buffer
	log, _ := New(&buf, "info", "s", "v")
	wm := Watermill(log)
	wm.Info("per-message chatter", nil)
	wm.Error("Handler returned error", errors.New("x"), nil) // logged by doraflow's middleware instead
	wm.Error("Cannot send ack", errors.New("broken"), nil)
	out := buf.String()
	if strings.Contains(out, "chatter") || strings.Contains(out, "Handler returned error") {
		t.Errorf("demoted messages visible at info:\n%s", out)
	}
	if !strings.Contains(out, `"level":"error"`) || !strings.Contains(out, "Cannot send ack") {
		t.Errorf("real watermill errors must stay errors:\n%s", out)
	}
}
