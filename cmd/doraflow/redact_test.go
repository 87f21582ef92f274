package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConnectErrorsNeverShowCredentials: a NATS server list with a password per URL, from NATS_URL
// or from the state file, that cannot be reached. The error names where the URL came from, with
// every credential redacted.
func TestConnectErrorsNeverShowCredentials(t *testing.T) {
	const list = "nats://alice:canaryPW1@127.0.0.1:1,nats://bob:canaryPW2@127.0.0.1:2?token=canaryTK3"
	stateDir := t.TempDir()
	state := filepath.Join(stateDir, "state.json")
	b, err := json.Marshal(map[string]any{"command": "local", "pid": os.Getpid(), "nats_url": list,
		"started_at": time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"NATS_URL":   {"NATS_URL": list, "XDG_RUNTIME_DIR": t.TempDir()},
		"state file": {"DORAFLOW_STATE_FILE": state},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := cliEnv(t, env, "status")
			if err == nil {
				t.Fatalf("status against an unreachable server succeeded:\n%s", out)
			}
			all := out + errOut + err.Error()
			for _, secret := range []string{"canaryPW1", "canaryPW2", "canaryTK3", "alice", "bob"} {
				if strings.Contains(all, secret) {
					t.Errorf("%q shown:\n%s", secret, all)
				}
			}
			if !strings.Contains(all, "127.0.0.1:2") {
				t.Errorf("the error does not name the servers:\n%s", all)
			}
		})
	}
}
