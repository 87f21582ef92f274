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
# HELP doraflow_devlake_sink_config_errors_total Answers that pause a connection as misconfigured, by connection and HTTP status: 401 and 403 (the API key), 404 (a wrong base_url or path prefix, a deleted connection), other 4xx but 400, and answers that are not DevLake's JSON (an ingress or web page answering instead).
# TYPE doraflow_devlake_sink_config_errors_total counter
doraflow_devlake_sink_config_errors_total{connection="4",status="401"} 0
doraflow_devlake_sink_config_errors_total{connection="4",status="403"} 1
doraflow_devlake_sink_config_errors_total{connection="4",status="404"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "doraflow_devlake_sink_circuit_state",
		"doraflow_devlake_sink_config_errors_total"); err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), `"level":"error"`) || !strings.Contains(logs.String(), "rejected the API key") {
		t.Errorf("a circuit opened by a 403 must be logged as an error: %s", logs.String())
	}
}

func TestConfigFaultGaugeAndLogNameTheMisroutedConnection(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	m := newMetrics(reg, zerolog.New(&logs))
	notFound := &devlake.Error{Class: devlake.ClassConfig, Status: 404, Message: devlake.NotDevLake + ` (text/html): "<html>"`}
	conns := map[string]sink.Connection{"1": {ProjectID: "1", ID: 1}, "2": {ProjectID: "2", ID: 2}, "3": {ProjectID: "3", ID: 2}}
	reg.MustRegister(newFaultCollector(conns, func() []sink.ConfigFault { return []sink.ConfigFault{{Connection: 2, Cause: notFound}} }))
	m.Posted(2, devlake.KindDeployments, devlake.ClassConfig.String(), notFound)
	m.CircuitChanged(2, sink.StateClosed, sink.StateOpen, notFound)

	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	want := `
# HELP doraflow_devlake_sink_config_fault 1 while the connection is paused by a configuration fault (see /readyz and config_errors_total), else 0.
# TYPE doraflow_devlake_sink_config_fault gauge
doraflow_devlake_sink_config_fault{connection="1"} 0
doraflow_devlake_sink_config_fault{connection="2"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "doraflow_devlake_sink_config_fault"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.configErrors.WithLabelValues("2", "404")); got != 1 {
		t.Errorf("config_errors_total{status=404} = %v", got)
	}
	if l := logs.String(); !strings.Contains(l, `"level":"error"`) || !strings.Contains(l, "misconfigured") || strings.Contains(l, "API key") {
		t.Errorf("a circuit opened by a 404 must be logged as an error about the connection: %s", l)
	}
}
