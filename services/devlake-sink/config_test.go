package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/doraflow/doraflow/internal/config"
)

func TestConnectionPlansKeepTheSeedMapping(t *testing.T) {
	r := defaultRules()
	r.Integration.Devlake = config.DevLake{Enabled: true, BaseURL: "http://lake:8080", ProjectID: "1",
		Teams: []config.Team{{Name: "a", ProjectID: "2"}, {Name: "b", ProjectID: "7"}, {Name: "c", ProjectID: "2"}}}
	r.Sink.Connections = []connectionRule{{ProjectID: "7", ConnectionID: 12, TokenEnv: "TOKEN_B"}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	got := r.connectionPlans()
	want := []connectionPlan{
		{ProjectID: "7", ConnectionID: 12, TokenEnv: "TOKEN_B"},
		{ProjectID: "1", ConnectionID: 1, TokenEnv: defaultTokenEnv},
		{ProjectID: "2", ConnectionID: 2, TokenEnv: defaultTokenEnv},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plans = %+v\nwant %+v", got, want)
	}
}

func TestReadConnectionsReadsKeysFromEnvOrFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plans := []connectionPlan{{ProjectID: "1", ConnectionID: 1, TokenEnv: "A"}, {ProjectID: "2", ConnectionID: 2, TokenEnv: "B"},
		{ProjectID: "3", ConnectionID: 3, TokenEnv: "A"}}
	env := map[string]string{"A": "from-env", "B_FILE": file}
	conns, err := readConnections(plans, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if conns["1"].Key.Reveal() != "from-env" || conns["3"].Key.Reveal() != "from-env" || conns["2"].Key.Reveal() != "from-file" || conns["2"].ID != 2 {
		t.Errorf("connections = %+v", conns)
	}
	_, err = readConnections(plans, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "A or A_FILE is required (DevLake API key of webhook connection(s) 1, 3)") ||
		!strings.Contains(err.Error(), "B or B_FILE") {
		t.Errorf("err = %v, want both variables named with their connections", err)
	}
}
