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
	"github.com/nats-io/nats.go/jetstream"
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

// TLS (server CA, mutual TLS) and decentralized authentication (.creds: JWT and nkey) against a
// server configured that way, with the settings read from the environment as the services read them.
// A wrong CA, a missing client certificate and a wrong or unreadable creds file fail at once with an
// error naming the setting to fix; they are never retried, since waiting cannot repair them.
func TestConnectTLSAndCreds(t *testing.T) {
	pki, otherPKI := natstest.NewPKI(t), natstest.NewPKI(t)
	op, otherOp := natstest.NewOperator(t), natstest.NewOperator(t)
	garbage := filepath.Join(t.TempDir(), "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serverCA := map[string]string{"NATS_TLS_CA_FILE": pki.CAFile}
	mutual := map[string]string{"NATS_TLS_CA_FILE": pki.CAFile, "NATS_TLS_CERT_FILE": pki.ClientCertFile, "NATS_TLS_KEY_FILE": pki.ClientKeyFile}
	with := func(env map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for k, v := range env {
			out[k] = v
		}
		return out
	}

	tests := []struct {
		name    string
		server  []func(*server.Options)
		env     map[string]string
		wantErr []string // empty: must connect and use JetStream
	}{
		{"server CA", []func(*server.Options){pki.TLS(false)}, serverCA, nil},
		{"wrong CA", []func(*server.Options){pki.TLS(false)},
			map[string]string{"NATS_TLS_CA_FILE": otherPKI.CAFile},
			[]string{"TLS", "NATS_TLS_CA_FILE", "unknown authority"}},
		{"no CA for a private server certificate", []func(*server.Options){pki.TLS(false)}, nil,
			[]string{"TLS", "NATS_TLS_CA_FILE", "unknown authority"}},
		{"mutual TLS", []func(*server.Options){pki.TLS(true)}, mutual, nil},
		{"mutual TLS without a client certificate", []func(*server.Options){pki.TLS(true)}, serverCA,
			[]string{"TLS", "client certificate", "NATS_TLS_CERT_FILE"}},
		{"mutual TLS with a client certificate of another CA", []func(*server.Options){pki.TLS(true)},
			with(with(serverCA, "NATS_TLS_CERT_FILE", otherPKI.ClientCertFile), "NATS_TLS_KEY_FILE", otherPKI.ClientKeyFile),
			[]string{"TLS", "client certificate", "NATS_TLS_CERT_FILE"}},
		{"creds", []func(*server.Options){op.Option()}, map[string]string{"NATS_CREDS_FILE": op.UserCreds("enricher")}, nil},
		{"creds over mutual TLS", []func(*server.Options){op.Option(), pki.TLS(true)},
			with(mutual, "NATS_CREDS_FILE", op.UserCreds("devlake-sink")), nil},
		{"creds of another operator", []func(*server.Options){op.Option()},
			map[string]string{"NATS_CREDS_FILE": otherOp.UserCreds("enricher")}, []string{"credentials rejected"}},
		{"no creds for an operator-mode server", []func(*server.Options){op.Option()}, nil, []string{"credentials rejected"}},
		{"unreadable creds file", []func(*server.Options){op.Option()},
			map[string]string{"NATS_CREDS_FILE": filepath.Join(t.TempDir(), "none.creds")},
			[]string{"NATS_CREDS_FILE", "none.creds", "no such file"}},
		{"creds file holding no JWT", []func(*server.Options){op.Option()},
			map[string]string{"NATS_CREDS_FILE": garbage}, []string{"NATS_CREDS_FILE", "garbage.creds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t, tt.server...)
			env := config.NewEnv(func(k string) string {
				if k == "NATS_URL" {
					return srv.URL()
				}
				return tt.env[k]
			})
			s := SettingsFromEnv(env, "test")
			if err := env.Err(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			nc, err := Connect(ctx, s, zerolog.Nop())
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Connect = %v", err)
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := js.AccountInfo(ctx); err != nil {
					t.Errorf("JetStream account info = %v", err)
				}
				if _, tlsOn := tt.env["NATS_TLS_CA_FILE"]; tlsOn {
					if _, err := nc.TLSConnectionState(); err != nil {
						t.Errorf("connection is not TLS: %v", err)
					}
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatalf("Connect succeeded, want an error with %q", tt.wantErr)
			}
			t.Logf("Connect = %v", err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Connect = %v\nwant it to say %q", err, want)
				}
			}
			if ctx.Err() != nil {
				t.Error("Connect retried until its deadline instead of failing at once")
			}
		})
	}
}
