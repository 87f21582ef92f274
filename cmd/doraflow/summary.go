package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/pkg/events"
)

// settle waits until every stage accounts for every deployment and incident: enriched on NATS,
// stored in DevLake's global project and counted by the exporter (one per logical deployment), and
// every durable consumer has nothing left to deliver or acknowledge (so late signals, like a
// revert the enricher infers, are in too).
func settle(ctx context.Context, js jetstream.JetStream, seen *seen, lake *devlaketest.DevLake, global uint64, exporter string, deployments, incidents int) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		var waiting []string
		if n := seen.count(events.SubjectDeploymentEnriched); n < deployments {
			waiting = append(waiting, fmt.Sprintf("enriched deployments %d/%d", n, deployments))
		}
		if n := seen.count(events.SubjectIncidentEnriched); n < incidents {
			waiting = append(waiting, fmt.Sprintf("enriched incidents %d/%d", n, incidents))
		}
		logical := seen.logicalDeployments()
		if n := len(lake.Deployments(global)); n < logical {
			waiting = append(waiting, fmt.Sprintf("DevLake deployments %d/%d", n, logical))
		}
		if n := len(lake.Incidents(global)); n < incidents {
			waiting = append(waiting, fmt.Sprintf("DevLake incidents %d/%d", n, incidents))
		}
		families, err := scrape(ctx, exporter+"/metrics")
		if err != nil {
			return err
		}
		if n := int(sum(families["dora_deployments_total"])); n < logical {
			waiting = append(waiting, fmt.Sprintf("exporter deployments %d/%d", n, logical))
		}
		if n := int(sum(families["dora_incidents_total"])); n < incidents {
			waiting = append(waiting, fmt.Sprintf("exporter incidents %d/%d", n, incidents))
		}
		busy, err := busyConsumers(ctx, js)
		if err != nil {
			return err
		}
		waiting = append(waiting, busy...)
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pipeline did not settle within 90s: %s", strings.Join(waiting, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// busyConsumers names the durable consumers of the doraflow streams with messages not yet
// delivered or not yet acknowledged.
func busyConsumers(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var busy []string
	for _, name := range []string{events.StreamRaw, events.StreamEnriched} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			if ci.Config.Durable != "" && (ci.NumPending > 0 || ci.NumAckPending > 0) {
				busy = append(busy, fmt.Sprintf("consumer %s pending %d/%d", ci.Name, ci.NumPending, ci.NumAckPending))
			}
		}
		if err := lister.Err(); err != nil {
			return nil, fmt.Errorf("consumers of %s: %w", name, err)
		}
	}
	sort.Strings(busy)
	return busy, nil
}

// sum adds the values of every series of a counter or gauge family.
func sum(mf *dto.MetricFamily) float64 {
	var total float64
	if mf == nil {
		return 0
	}
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total
}

// label returns the value of a series' label.
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// printSummary prints what DevLake stored and the exporter's DORA table per team.
func printSummary(ctx context.Context, out io.Writer, exporter string, lake *devlaketest.DevLake, conns map[string]devlaketest.Connection) error {
	names := make([]string, 0, len(conns))
	for n := range conns {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(out, "\nDevLake (fake), rows stored per project connection, and the median lead time DevLake's DORA")
	fmt.Fprintln(out, "dashboard computes from them (project_pr_metrics: pull request created → merged → deployed):")
	tw := table(out)
	fmt.Fprintln(tw, "PROJECT\tDEPLOYMENTS\tDEPLOYMENT COMMITS\tPULL REQUESTS\tINCIDENTS\tLEAD TIME (p50, DevLake)")
	for _, n := range names {
		c := conns[n].ID
		lead := "-"
		if m, ok := devlaketest.MedianLeadTimeMinutes(lake.PRMetrics(c)); ok {
			lead = humanDuration(time.Duration(m) * time.Minute)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", n, len(lake.Deployments(c)), len(lake.DeploymentCommits(c)),
			len(lake.PullRequests(c)), len(lake.Incidents(c)), lead)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	families, err := scrape(ctx, exporter+"/metrics")
	if err != nil {
		return err
	}
	return doraTable(out, families)
}

// doraTable prints the production DORA values per team and window, as the exporter serves them.
func doraTable(out io.Writer, families map[string]*dto.MetricFamily) error {
	type key struct{ team, window string }
	rows := map[key]map[string]string{}
	columns := []struct{ metric, title string }{
		{"dora_window_deployments_per_day", "DEPLOYS/DAY"},
		{"dora_window_change_lead_time_median_seconds", "LEAD TIME (p50)"},
		{"dora_window_change_fail_ratio", "CHANGE FAIL RATE"},
		{"dora_window_failed_deployment_recovery_median_seconds", "RECOVERY (p50)"},
		{"dora_window_rework_ratio", "REWORK RATE"},
	}
	for _, c := range columns {
		for _, m := range families[c.metric].GetMetric() {
			if env := label(m, "environment"); env != "" && env != "production" {
				continue
			}
			if comp := label(m, "component"); comp != "" {
				continue // per-team rows only
			}
			k := key{label(m, "team"), label(m, "window")}
			if rows[k] == nil {
				rows[k] = map[string]string{}
			}
			rows[k][c.metric] = formatValue(c.metric, m.GetGauge().GetValue())
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "\nThe exporter serves no per-team DORA values.")
		return nil
	}
	keys := make([]key, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].team != keys[j].team {
			return keys[i].team < keys[j].team
		}
		return keys[i].window < keys[j].window
	})
	fmt.Fprintln(out, "\nDORA metrics, production, per team (metrics-exporter):")
	tw := table(out)
	header := []string{"TEAM", "WINDOW"}
	for _, c := range columns {
		header = append(header, c.title)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, k := range keys {
		team := k.team
		if team == "" {
			team = "(all)"
		}
		cells := []string{team, k.window}
		for _, c := range columns {
			v, ok := rows[k][c.metric]
			if !ok {
				v = "-"
			}
			cells = append(cells, v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
