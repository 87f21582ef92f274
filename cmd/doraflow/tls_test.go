package main

import (
	"strings"
	"testing"

	"github.com/doraflow/doraflow/internal/natstest"
)

// TestCLIConnectsOverTLSWithCreds runs `doraflow status` against a TLS-only, operator-mode server
// (mutual TLS and a .creds file, as deploy/overlays/tls runs NATS) with the services' NATS_* variables,
// and requires a clear error for each wrong setting.
func TestCLIConnectsOverTLSWithCreds(t *testing.T) {
	pki, otherPKI := natstest.NewPKI(t), natstest.NewPKI(t)
	op, otherOp := natstest.NewOperator(t), natstest.NewOperator(t)
	srv := natstest.Start(t, op.Option(), pki.TLS(true))
	good := map[string]string{
		"NATS_URL":           srv.URL(),
		"XDG_RUNTIME_DIR":    t.TempDir(),
		"NATS_TLS_CA_FILE":   pki.CAFile,
		"NATS_TLS_CERT_FILE": pki.ClientCertFile,
		"NATS_TLS_KEY_FILE":  pki.ClientKeyFile,
		"NATS_CREDS_FILE":    op.UserCreds("doraflow-cli"),
	}
	tests := []struct {
		name    string
		change  map[string]string
		wantErr string // empty: status prints the streams
	}{
		{"mutual TLS and creds", nil, ""},
		{"wrong CA", map[string]string{"NATS_TLS_CA_FILE": otherPKI.CAFile}, "the server's certificate is not trusted (NATS_TLS_CA_FILE="},
		{"no client certificate", map[string]string{"NATS_TLS_CERT_FILE": "", "NATS_TLS_KEY_FILE": ""}, "set NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE"},
		{"creds of another operator", map[string]string{"NATS_CREDS_FILE": otherOp.UserCreds("doraflow-cli")}, "credentials rejected"},
		{"no creds", map[string]string{"NATS_CREDS_FILE": ""}, "credentials rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			for k, v := range tt.change {
				env[k] = v
			}
			out, _, err := cliEnv(t, env, "status")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("doraflow status = %v", err)
				}
				if !strings.Contains(out, "STREAM") {
					t.Errorf("doraflow status printed no stream table:\n%s", out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("doraflow status = %v, want an error saying %q", err, tt.wantErr)
			}
			t.Logf("doraflow status = %v", err)
		})
	}
}
