package messaging

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/natstest"
)

func TestConnectAuthentication(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		server   func(*server.Options)
		settings Settings
		wantErr  string // empty: must connect
	}{
		{"user and password", func(o *server.Options) { o.Username, o.Password = "doraflow", "s3cret" },
			Settings{User: "doraflow", Password: config.NewSecret("s3cret")}, ""},
		{"wrong password fails fast", func(o *server.Options) { o.Username, o.Password = "doraflow", "s3cret" },
			Settings{User: "doraflow", Password: config.NewSecret("wrong")}, "credentials rejected"},
		{"token", func(o *server.Options) { o.Authorization = "t0ken" },
			Settings{Token: config.NewSecret("t0ken")}, ""},
		{"missing token fails fast", func(o *server.Options) { o.Authorization = "t0ken" },
			Settings{}, "credentials rejected"},
		{"nkey seed file", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} },
			Settings{NKeySeedFile: seedFile}, ""},
		{"unreadable seed file", func(o *server.Options) {}, Settings{NKeySeedFile: filepath.Join(t.TempDir(), "none")}, "load NKey seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t, tt.server)
			s := tt.settings
			s.URL, s.Name = srv.URL(), "test"
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			nc, err := Connect(ctx, s, zerolog.Nop())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Connect = %v", err)
				}
				nc.Close()
				return
			}
			if err == nil {
				nc.Close()
				t.Fatalf("Connect succeeded, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Connect = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0ken") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("credentials leaked into the error: %v", err)
			}
			if ctx.Err() != nil {
				t.Error("Connect retried until its deadline instead of failing fast")
			}
		})
	}
}

func TestConnectWaitsForTheServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	_, err := Connect(ctx, Settings{URL: "nats://127.0.0.1:1", Name: "test"}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "connect to NATS at nats://127.0.0.1:1") {
		t.Fatalf("Connect to nothing = %v", err)
	}
}

func TestSettingsFromEnvRejectsContradictions(t *testing.T) {
	env := config.NewEnv(func(k string) string {
		return map[string]string{"NATS_USER": "u", "NATS_TOKEN": "t", "NATS_TLS_CERT_FILE": "c.pem"}[k]
	})
	SettingsFromEnv(env, "svc")
	err := env.Err()
	for _, want := range []string{"set only one of", "NATS_USER and NATS_PASSWORD go together", "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("env problems %v miss %q", err, want)
		}
	}
}

func TestEnsureKVDedupWithTTL(t *testing.T) {
	h := newHarness(t)
	topo := Topology{Replicas: 1}
	kv, err := topo.EnsureKV(t.Context(), h.js, KV{Bucket: "doraflow_test_dedup", TTL: time.Hour, PerKeyTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	// Ensuring again with the same settings is idempotent.
	if _, err := topo.EnsureKV(t.Context(), h.js, KV{Bucket: "doraflow_test_dedup", TTL: time.Hour, PerKeyTTL: true}); err != nil {
		t.Fatalf("second EnsureKV = %v", err)
	}
	if _, err := kv.Create(t.Context(), "dep-1", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(t.Context(), "dep-1", []byte("1")); err == nil {
		t.Fatal("second Create of the same key succeeded; dedup would not work")
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != time.Hour {
		t.Errorf("TTL = %s, want 1h", st.TTL())
	}
}

// A server list is the normal way to reach a cluster; every URL of it may carry credentials, and none
// may reach a log line or an error while connecting is retried.
func TestConnectNeverLogsCredentialsOfAServerList(t *testing.T) {
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	ctx, cancel := context.WithTimeout(t.Context(), 1200*time.Millisecond)
	defer cancel()
	url := "nats://alice:canary-pw1@127.0.0.1:1,nats://bob:canary-pw2@127.0.0.1:2?token=canary-tok"
	_, err := Connect(ctx, Settings{URL: url, Name: "test"}, log)
	if err == nil {
		t.Fatal("Connect to nothing succeeded")
	}
	out := logs.String() + err.Error()
	if !strings.Contains(logs.String(), "connect to NATS") {
		t.Fatalf("no retry was logged:\n%s", logs.String())
	}
	for _, canary := range []string{"canary-pw1", "canary-pw2", "canary-tok"} {
		if strings.Contains(out, canary) {
			t.Errorf("%s leaked:\n%s", canary, out)
		}
	}
}
