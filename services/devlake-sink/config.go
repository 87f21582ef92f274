package main

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

// rules is the sink's behaviour, from the YAML file. The seed project's integration.devlake keys
// (enabled, base_url, project_id, teams[]) keep their meaning; what only the sink reads lives in
// the devlake_sink section, which the other services skip.
type rules struct {
	Integration config.Integration `yaml:"integration"`
	Sink        sinkRules          `yaml:"devlake_sink"`
}

// sinkRules are the sink's own settings.
type sinkRules struct {
	// Connections map DevLake projects (routing targets) to webhook connections and the
	// environment variable holding each connection's API key. A project of integration.devlake that
	// is not listed uses its project_id as the connection id and DEVLAKE_WEBHOOK_TOKEN, as the seed did.
	Connections []connectionRule `yaml:"connections"`
	// Timeout bounds one HTTP request to DevLake.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts bounds the posts of one body within one delivery (retryable failures only).
	Attempts int `yaml:"attempts"`
	// Backoff is the first delay between attempts; it doubles, with jitter, up to MaxBackoff.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// AckWait is how long one delivery (every target, every attempt) may take.
	AckWait time.Duration `yaml:"ack_wait"`
	// Concurrency is how many events one replica posts at once. Events are independent (the
	// ledger settles races between them, as it does between replicas), so a slow DevLake answer
	// holds up one slot, not the stream.
	Concurrency int          `yaml:"concurrency"`
	Breaker     breakerRules `yaml:"breaker"`
	// GitOpsCommitFallback posts a deployment without application commits with its GitOps
	// revision as the commit (the seed's behaviour); off, such deployments are skipped and counted.
	GitOpsCommitFallback bool `yaml:"gitops_commit_fallback"`
	// PullRequests posts the merged pull requests of posted deployments to
	// connections/{id}/pull_requests, which DevLake's lead time reads. It needs DevLake v1.0.3+:
	// turn it off for v1.0.1 and v1.0.2, which answer 404 there (a configuration fault).
	PullRequests bool `yaml:"pull_requests"`
	// PullRequestCreatedFromFirstCommit posts a pull request's first commit time as its createdDate
	// when earlier, so DevLake's cycle time starts at the first commit as doraflow's lead time does.
	PullRequestCreatedFromFirstCommit bool `yaml:"pull_request_created_from_first_commit"`
}

type connectionRule struct {
	ProjectID    string `yaml:"project_id"`
	ConnectionID uint64 `yaml:"connection_id"`
	// TokenEnv names the environment variable with the connection's API key (or <TokenEnv>_FILE).
	TokenEnv string `yaml:"token_env"`
}

type breakerRules struct {
	// Failures is how many retryable failures in a row pause a connection.
	Failures int `yaml:"failures"`
	// OpenFor is the first pause; it doubles with each failed probe up to MaxOpenFor.
	OpenFor    time.Duration `yaml:"open_for"`
	MaxOpenFor time.Duration `yaml:"max_open_for"`
	// ConfigErrorOpenFor is the pause after a configuration fault (401/403, 404, an answer that is
	// not DevLake's: something an operator must fix), between probes.
	ConfigErrorOpenFor time.Duration `yaml:"config_error_open_for"`
}

// defaultTokenEnv is the seed's single DevLake token.
const defaultTokenEnv = "DEVLAKE_WEBHOOK_TOKEN"

func defaultRules() rules {
	return rules{Sink: sinkRules{
		Timeout: 10 * time.Second, Attempts: 3, Backoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second,
		AckWait: 2 * time.Minute, Concurrency: 8, GitOpsCommitFallback: true,
		PullRequests: true, PullRequestCreatedFromFirstCommit: true,
		Breaker: breakerRules{Failures: 5, OpenFor: 10 * time.Second, MaxOpenFor: 5 * time.Minute,
			ConfigErrorOpenFor: 5 * time.Minute},
	}}
}

var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	d := r.Integration.Devlake
	if d.Enabled {
		if u, err := url.Parse(d.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.Addf("integration.devlake.base_url", "%q is not an http(s) URL (required when enabled)", d.BaseURL)
		}
		if d.ProjectID == "" {
			p.Addf("integration.devlake.project_id", "required when enabled: the global project")
		}
	}
	for i, t := range d.Teams {
		if t.Name == "" {
			p.Addf(fmt.Sprintf("integration.devlake.teams[%d].name", i), "required")
		}
		if t.ProjectID == "" {
			p.Addf(fmt.Sprintf("integration.devlake.teams[%d].project_id", i), "required")
		}
	}
	s := r.Sink
	seen := map[string]int{}
	for i, c := range s.Connections {
		path := fmt.Sprintf("devlake_sink.connections[%d]", i)
		if c.ProjectID == "" {
			p.Addf(path+".project_id", "required")
		} else if j, dup := seen[c.ProjectID]; dup {
			p.Addf(path+".project_id", "%q repeats devlake_sink.connections[%d]", c.ProjectID, j)
		} else {
			seen[c.ProjectID] = i
		}
		if c.ConnectionID == 0 {
			p.Addf(path+".connection_id", "required: the webhook connection id (a positive number)")
		}
		if c.TokenEnv != "" && !envName.MatchString(c.TokenEnv) {
			p.Addf(path+".token_env", "%q is not an environment variable name (A-Z, 0-9, _)", c.TokenEnv)
		}
	}
	if d.Enabled {
		implied := func(path, project string) {
			if _, ok := seen[project]; ok || project == "" {
				return
			}
			if n, err := strconv.ParseUint(project, 10, 64); err != nil || n == 0 {
				p.Addf(path, "%q has no entry in devlake_sink.connections and is not a webhook connection id", project)
			}
		}
		implied("integration.devlake.project_id", d.ProjectID)
		for i, t := range d.Teams {
			implied(fmt.Sprintf("integration.devlake.teams[%d].project_id", i), t.ProjectID)
		}
	}
	positive := func(path string, v time.Duration) {
		if v <= 0 {
			p.Addf(path, "must be a positive duration, such as 10s")
		}
	}
	positive("devlake_sink.timeout", s.Timeout)
	positive("devlake_sink.backoff", s.Backoff)
	positive("devlake_sink.max_backoff", s.MaxBackoff)
	positive("devlake_sink.breaker.open_for", s.Breaker.OpenFor)
	positive("devlake_sink.breaker.max_open_for", s.Breaker.MaxOpenFor)
	positive("devlake_sink.breaker.config_error_open_for", s.Breaker.ConfigErrorOpenFor)
	if s.AckWait < 2*s.Timeout {
		p.Addf("devlake_sink.ack_wait", "%s must be at least twice devlake_sink.timeout (%s)", s.AckWait, s.Timeout)
	}
	if s.Concurrency < 1 || s.Concurrency > 256 {
		p.Addf("devlake_sink.concurrency", "%d is not from 1 to 256", s.Concurrency)
	}
	if s.Attempts < 1 || s.Attempts > 10 {
		p.Addf("devlake_sink.attempts", "%d is not from 1 to 10", s.Attempts)
	}
	if s.Breaker.Failures < 1 {
		p.Addf("devlake_sink.breaker.failures", "%d must be at least 1", s.Breaker.Failures)
	}
	if s.Breaker.MaxOpenFor < s.Breaker.OpenFor {
		p.Addf("devlake_sink.breaker.max_open_for", "%s is shorter than open_for (%s)", s.Breaker.MaxOpenFor, s.Breaker.OpenFor)
	}
	return p.Err()
}

// connectionPlan is a connection before its key is read: the project, the connection id and the
// environment variable holding the key.
type connectionPlan struct {
	ProjectID    string
	ConnectionID uint64
	TokenEnv     string
}

// connectionPlans lists every project the sink can post to: the explicit connections, then the
// projects of integration.devlake without one (connection id = project id, DEVLAKE_WEBHOOK_TOKEN).
func (r *rules) connectionPlans() []connectionPlan {
	var out []connectionPlan
	seen := map[string]bool{}
	for _, c := range r.Sink.Connections {
		env := c.TokenEnv
		if env == "" {
			env = defaultTokenEnv
		}
		out = append(out, connectionPlan{ProjectID: c.ProjectID, ConnectionID: c.ConnectionID, TokenEnv: env})
		seen[c.ProjectID] = true
	}
	projects := []string{r.Integration.Devlake.ProjectID}
	for _, t := range r.Integration.Devlake.Teams {
		projects = append(projects, t.ProjectID)
	}
	for _, p := range projects {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		if id, err := strconv.ParseUint(p, 10, 64); err == nil && id > 0 {
			out = append(out, connectionPlan{ProjectID: p, ConnectionID: id, TokenEnv: defaultTokenEnv})
		}
	}
	return out
}

// readConnections reads each connection's key from the environment (NAME or NAME_FILE) and reports
// every missing one together.
func readConnections(plans []connectionPlan, getenv func(string) string) (map[string]sink.Connection, error) {
	env := config.NewEnv(getenv)
	byEnv := map[string][]string{}
	for _, p := range plans {
		byEnv[p.TokenEnv] = append(byEnv[p.TokenEnv], strconv.FormatUint(p.ConnectionID, 10))
	}
	names := make([]string, 0, len(byEnv))
	for n := range byEnv {
		names = append(names, n)
	}
	sort.Strings(names)
	keys := map[string]config.Secret{}
	for _, n := range names {
		keys[n] = env.Secret(n, true, "DevLake API key of webhook connection(s) "+strings.Join(byEnv[n], ", "))
	}
	if err := env.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]sink.Connection, len(plans))
	for _, p := range plans {
		out[p.ProjectID] = sink.Connection{ProjectID: p.ProjectID, ID: p.ConnectionID, Key: keys[p.TokenEnv]}
	}
	return out, nil
}
