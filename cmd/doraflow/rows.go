package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/doraflow/doraflow/internal/devlaketest"
	"github.com/doraflow/doraflow/internal/githubtest"
)

// printRows writes every row DevLake stored, per project, and every dora_* series the exporter
// serves, in a form that is the same every week for a seed: times as the day and time from the
// first simulated Monday, commits by repository and title instead of SHA (the fake's SHAs hash
// their dates), and no IDs (they hold Kubernetes UIDs). Tests compare it with a golden file.
func printRows(ctx context.Context, out io.Writer, exporter string, lake *devlaketest.DevLake,
	conns map[string]devlaketest.Connection, gh *githubtest.Server, monday time.Time) error {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		d := t.Sub(monday)
		return fmt.Sprintf("d%02d+%s", int(d/(24*time.Hour)), t.UTC().Format(time.TimeOnly))
	}
	commit := func(repoURL, sha string) string {
		owner, name, ok := strings.Cut(strings.TrimPrefix(repoURL, "https://github.com/"), "/")
		if !ok {
			return "(unknown repository)"
		}
		if c := gh.Repo(owner, name).Commit(sha); c.Title != "" {
			return name + ": " + c.Title
		}
		return name + ": (not a GitHub commit: the GitOps revision)"
	}
	names := make([]string, 0, len(conns))
	for n := range conns {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := conns[n].ID
		commits := map[string][]string{}
		for _, r := range lake.DeploymentCommits(c) {
			commits[r.CicdDeploymentID] = append(commits[r.CicdDeploymentID], commit(r.RepoURL, r.CommitSha))
		}
		var lines []string
		for _, d := range lake.Deployments(c) {
			cs := commits[d.ID]
			sort.Strings(cs)
			lines = append(lines, fmt.Sprintf("%s\t%s\t%.0fs\t%s\t%s/%s\t%s\t%s", at(d.FinishedDate), at(d.StartedDate),
				d.DurationSec, d.Result, d.Environment, d.OriginalEnvironment, d.DisplayTitle, strings.Join(cs, "; ")))
		}
		if err := printSorted(out, fmt.Sprintf("[%s] cicd_deployments and their commits", n),
			"FINISHED\tSTARTED\tDURATION\tRESULT\tENVIRONMENT\tTITLE\tCOMMITS", lines); err != nil {
			return err
		}
		if err := printPullRequests(out, n, lake, c, at, commit); err != nil {
			return err
		}
		var issues []string
		for _, i := range lake.Issues(c) {
			issues = append(issues, fmt.Sprintf("%s\t%s\t%s/%s\t%s\t%s\t%dmin\t%s\t%s", i.IssueKey, i.Type, i.Status,
				i.OriginalStatus, at(i.CreatedDate), at(i.ResolutionDate), i.LeadTimeMinutes, i.Severity, i.Title))
		}
		if err := printSorted(out, fmt.Sprintf("[%s] issues", n),
			"KEY\tTYPE\tSTATUS\tCREATED\tRESOLVED\tLEAD TIME\tSEVERITY\tTITLE", issues); err != nil {
			return err
		}
	}
	families, err := scrape(ctx, exporter+"/metrics")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nmetrics-exporter, every dora_* series but the last deployment's timestamp:")
	keys := make([]string, 0, len(families))
	for k := range families {
		if strings.HasPrefix(k, "dora_") && !strings.Contains(k, "timestamp") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := expfmt.MetricFamilyToText(out, families[k]); err != nil {
			return err
		}
	}
	return nil
}

// printPullRequests prints the pull_requests rows of connection c with the project_pr_metrics row
// DevLake's DORA plugin computes for each (minutes; "-" where DevLake leaves it NULL) and the
// deployment it links the pull request to.
func printPullRequests(out io.Writer, project string, lake *devlaketest.DevLake, c uint64,
	at func(time.Time) string, commit func(repoURL, sha string) string) error {
	titles := map[string]string{}
	for _, d := range lake.Deployments(c) {
		titles[d.ID] = d.DisplayTitle
	}
	metrics := map[string]devlaketest.PRMetric{}
	for _, m := range lake.PRMetrics(c) {
		metrics[m.ID] = m
	}
	minutes := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%dmin", *p)
	}
	var lines []string
	for _, pr := range lake.PullRequests(c) {
		repoURL, number, _ := strings.Cut(pr.URL, "/pull/")
		m := metrics[pr.ID]
		deployed := titles[m.DeploymentID]
		if deployed == "" {
			deployed = "(no production deployment)"
		}
		lines = append(lines, fmt.Sprintf("%s #%s	%s	%s	%s	%s	%s	%s	%s	%s", strings.TrimPrefix(repoURL, "https://github.com/acme/"),
			number, pr.Status, at(pr.CreatedDate), at(pr.MergedDate), commit(repoURL, pr.MergeCommitSha),
			minutes(m.PrDuring), minutes(m.PrDeployTime), minutes(m.PrCycleTime), deployed))
	}
	return printSorted(out, fmt.Sprintf("[%s] pull_requests and DevLake's project_pr_metrics", project),
		"PULL REQUEST\tSTATUS\tCREATED\tMERGED\tMERGE COMMIT\tCREATED→MERGED\tMERGED→DEPLOYED\tCYCLE TIME\tDEPLOYMENT", lines)
}

// printSorted prints a titled table of tab-separated lines, sorted.
func printSorted(out io.Writer, title, header string, lines []string) error {
	sort.Strings(lines)
	fmt.Fprintf(out, "\n%s (%d)\n", title, len(lines))
	tw := table(out)
	fmt.Fprintln(tw, header)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	return tw.Flush()
}
