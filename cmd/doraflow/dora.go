package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// dora prints the DORA values the metrics exporter serves: every dora_* gauge, one row per label
// set, one column per metric. It reads the exporter's /metrics, so the numbers are exactly the ones
// Prometheus scrapes.
func dora(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("doraflow dora", flag.ContinueOnError)
	fs.SetOutput(out)
	exporter := fs.String("exporter", "http://127.0.0.1:8081", "metrics-exporter ops `URL`")
	window := fs.String("window", "", "only this `window` label value (for example 30d); empty shows every window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	families, err := scrape(ctx, strings.TrimSuffix(*exporter, "/")+"/metrics")
	if err != nil {
		return err
	}
	rows, columns := doraRows(families, *window)
	if len(rows) == 0 {
		fmt.Fprintln(out, "The exporter serves no DORA values yet (no deployments observed?).")
		return nil
	}
	tw := table(out)
	fmt.Fprintln(tw, "LABELS\t"+strings.Join(columns, "\t"))
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cells := make([]string, len(columns))
		for i, c := range columns {
			if v, ok := rows[k][c]; ok {
				cells[i] = v
			} else {
				cells[i] = "-"
			}
		}
		fmt.Fprintln(tw, k+"\t"+strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// doraRows groups the dora_* gauges by label set (without the window filter label).
func doraRows(families map[string]*dto.MetricFamily, window string) (map[string]map[string]string, []string) {
	rows := map[string]map[string]string{}
	var columns []string
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		mf := families[name]
		if !strings.HasPrefix(name, "dora_") || mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		col := strings.TrimPrefix(name, "dora_")
		used := false
		for _, m := range mf.GetMetric() {
			var parts []string
			skip := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "window" && window != "" && l.GetValue() != window {
					skip = true
				}
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			if skip {
				continue
			}
			key := strings.Join(parts, " ")
			if rows[key] == nil {
				rows[key] = map[string]string{}
			}
			rows[key][col] = formatValue(col, m.GetGauge().GetValue())
			used = true
		}
		if used {
			columns = append(columns, col)
		}
	}
	return rows, columns
}

// formatValue renders durations in days, hours or minutes and ratios as percentages.
func formatValue(col string, v float64) string {
	switch {
	case strings.HasSuffix(col, "_seconds"):
		return humanDuration(time.Duration(v * float64(time.Second)))
	case strings.HasSuffix(col, "_ratio"):
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	return fmt.Sprintf("%.4g", v)
}

func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%.1f hours", d.Hours())
	default:
		return fmt.Sprintf("%.0f min", d.Minutes())
	}
}

func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w (is the metrics exporter running?)", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}
