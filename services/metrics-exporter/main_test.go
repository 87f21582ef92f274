package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora"
	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora/doratest"
)

func TestRunServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-windows.yaml")
	servicetest.AssertStandardEndpoints(t, s, "metrics-exporter")
	s.Stop(t)
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "metrics-exporter") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }

// goldenScenario is the dora package's golden exposition of the scenario (dora2023, default windows).
const goldenScenario = "internal/dora/testdata/scenario-dora2023.prom"

// TestRestartMidScenario publishes half of the golden scenario, starts the exporter, restarts it,
// publishes the rest, and requires the exposition to equal the golden file: the restart replays
// history without resetting or double counting anything. A second replica started at the end reads
// the same numbers.
func TestRestartMidScenario(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect()
	env := map[string]string{"NATS_URL": srv.URL(), "LOG_LEVEL": "info"}
	args := []string{"--config", "testdata/config/valid-scenario.yaml"}
	s := servicetest.Start(t, run, env, args...) // empty streams: ready at once
	pub, err := messaging.NewPublisher(nc, "test", s.Logs.Logger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := doratest.Scenario()
	half := len(evs) / 2
	publish := func(evs []events.Event) {
		for _, e := range evs {
			if err := pub.Publish(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(evs[:half])
	want := readExposition(t, goldenScenario)
	// Events published to a running exporter arrive on three subjects in no fixed order, and the
	// counters' detection and rework labels are fixed in arrival order: the comparisons sum those
	// families over the fixed label (dora.StickyLabels); everything else is compared as is.
	want.values = fold(want.values)
	var before map[string]float64
	wait.For(t, 10*time.Second, func() error {
		// The first half: deployments L1 S1 D1 C1 U1 D2 D3 D4; signals D2 ×2, Ghost; incident
		// states INC3, INC1 opened, INC1 resolved.
		before = fold(scrape(t, s, want))
		deps := before[`doraflow_metrics_exporter_state_objects{kind="deployment"}`]
		other := before[`doraflow_metrics_exporter_state_objects{kind="signal_or_incident_state"}`]
		if deps != 8 || other != 6 {
			return fmt.Errorf("state holds %v deployments and %v signals or incident states, want 8 and 6", deps, other)
		}
		return nil
	})
	s.Stop(t)

	s = servicetest.Start(t, run, env, args...) // ready only after the replay caught up
	if diff := cmp.Diff(before, fold(scrape(t, s, want))); diff != "" {
		t.Fatalf("restart changed the numbers (-before +after):\n%s", diff)
	}
	publish(evs[half:])
	var after map[string]float64
	wait.For(t, 10*time.Second, func() error {
		after = fold(scrape(t, s, want))
		if diff := cmp.Diff(want.values, after); diff != "" {
			return fmt.Errorf("exposition differs from %s (-want +got):\n%s", goldenScenario, diff)
		}
		return nil
	})
	for k, v := range before {
		if want.counter(k) && after[k] < v {
			t.Errorf("counter %s went down from %v to %v", k, v, after[k])
		}
	}
	replica := servicetest.Start(t, run, env, args...)
	if diff := cmp.Diff(want.values, fold(scrape(t, replica, want))); diff != "" {
		t.Errorf("second replica differs (-want +got):\n%s", diff)
	}
	if code, body := replica.Get(t, "/metrics"); code != 200 || !strings.Contains(body,
		`doraflow_metrics_exporter_events_total{result="duplicate",subject="doraflow.enricher.deployment.enriched"} 0`) {
		// JetStream dropped the scenario's repeated events by Nats-Msg-Id, so a replay sees none.
		t.Errorf("replica /metrics lacks the duplicate count:\n%.3000s", body)
	}
	replica.Stop(t)
	s.Stop(t)
}

// fold sums the families of dora.StickyLabels over their sticky label.
func fold(values map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range values {
		name, _, _ := strings.Cut(k, "{")
		for _, suffix := range []string{"_bucket", "_sum", "_count", ""} {
			base, ok := strings.CutSuffix(name, suffix)
			if l, sticky := dora.StickyLabels[base]; ok && sticky {
				k = regexp.MustCompile(`,?`+l+`="[^"]*"`).ReplaceAllString(k, "")
				break
			}
		}
		out[k] += v
	}
	return out
}

// exposition is a parsed text exposition: sample values by series, and the families' types.
type exposition struct {
	values map[string]float64
	types  map[string]string
}

// counter reports whether a series is a counter or part of a histogram (both must never go down).
func (e exposition) counter(series string) bool {
	name, _, _ := strings.Cut(series, "{")
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && e.types[base] == "histogram" {
			return true
		}
	}
	return e.types[name] == "counter"
}

func readExposition(t *testing.T, path string) exposition {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseExposition(t, string(b), nil)
}

// parseExposition reads the sample lines of text exposition; with only set, only the families in it.
func parseExposition(t *testing.T, text string, only *exposition) exposition {
	t.Helper()
	e := exposition{values: map[string]float64{}, types: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			e.types[f[0]] = f[1]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		name, _, _ := strings.Cut(series, "{")
		if only != nil && !slices.ContainsFunc([]string{"", "_bucket", "_sum", "_count"}, func(s string) bool {
			base, ok := strings.CutSuffix(name, s)
			_, known := only.types[base]
			return ok && known
		}) {
			continue
		}
		e.values[series] = v
	}
	return e
}

// scrape reads /metrics (text format) and keeps the golden file's families.
func scrape(t *testing.T, s *servicetest.Service, want exposition) map[string]float64 {
	t.Helper()
	code, body := s.Get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics answered %d", code)
	}
	return parseExposition(t, body, &want).values
}

// TestInvalidEventsAreCountedNotFatal replays a stream holding an undecodable and an invalid event
// before a good one: both are counted and logged, the good one applied, and the exporter gets ready.
func TestInvalidEventsAreCountedNotFatal(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect()
	// The streams exist once a service has run; create them as the exporter would.
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-scenario.yaml")
	s.Stop(t)
	bad := doratest.D1.Event()
	bad.Component = "" // fails validation
	body, err := json.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{[]byte("{not json"), body} {
		if _, err := js.Publish(t.Context(), events.SubjectDeploymentEnriched, b); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := messaging.NewPublisher(nc, "test", s.Logs.Logger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), doratest.D2.Event()); err != nil {
		t.Fatal(err)
	}
	s = servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-scenario.yaml")
	_, metricsText := s.Get(t, "/metrics")
	for _, want := range []string{
		`doraflow_metrics_exporter_events_total{result="invalid",subject="doraflow.enricher.deployment.enriched"} 2`,
		`doraflow_metrics_exporter_events_total{result="applied",subject="doraflow.enricher.deployment.enriched"} 1`,
		`dora_deployments_total{component="checkout-api",environment="production",kind="deploy",result="success",team="payments"} 1`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if logs := s.Logs.String(); !strings.Contains(logs, "component: required") || !strings.Contains(logs, "decode") {
		t.Errorf("the skipped events are not logged with their reasons:\n%s", logs)
	}
	s.Stop(t)
}
