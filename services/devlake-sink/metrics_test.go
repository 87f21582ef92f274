package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

func TestMetricsLintAndLogCircuitChangesOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	m := newMetrics(reg, zerolog.New(&logs))
	m.connection(sink.Connection{ProjectID: "2", ID: 4, Key: config.NewSecret("k")})
	forbidden := &devlake.Error{Class: devlake.ClassConfig, Status: 403, Message: "api key is invalid"}
	m.Posted(4, devlake.KindDeployments, "ok", nil)
	m.Posted(4, devlake.KindIssues, devlake.ClassConfig.String(), errors.Join(errors.New("connection 4"), forbidden))
	m.LedgerSkip(devlake.KindIssues, sink.LedgerStale)
	m.Skipped(devlake.KindDeployments, sink.SkipNoCommits)
	m.CircuitChanged(4, sink.StateClosed, sink.StateOpen, forbidden)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	want := `
# HELP doraflow_devlake_sink_circuit_state Circuit state per connection: 0 closed (posting), 1 half-open (probing), 2 open (paused).
# TYPE doraflow_devlake_sink_circuit_state gauge
doraflow_devlake_sink_circuit_state{connection="4"} 2
# HELP doraflow_devlake_sink_config_errors_total 401 and 403 answers by connection and status: a missing, wrong, expired or out-of-scope API key.
# TYPE doraflow_devlake_sink_config_errors_total counter
doraflow_devlake_sink_config_errors_total{connection="4",status="403"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "doraflow_devlake_sink_circuit_state",
		"doraflow_devlake_sink_config_errors_total"); err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), `"level":"error"`) || !strings.Contains(logs.String(), "rejected the API key") {
		t.Errorf("a circuit opened by a 403 must be logged as an error: %s", logs.String())
	}
}
