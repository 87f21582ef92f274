package main

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/enrich"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// rules is the enricher's behaviour, from the YAML file. The seed project's team routing
// (integration.devlake.project_id and teams[].argocd_components) keeps its meaning.
type rules struct {
	Integration config.Integration `yaml:"integration"`
	Github      githubRules        `yaml:"github"`
	Enricher    enricherRules      `yaml:"enricher"`
}

type githubRules struct {
	// BaseURL is GitHub's API URL; set it for GitHub Enterprise (https://ghe.example.com/api/v3/).
	BaseURL string `yaml:"base_url"`
	// RepoHosts are the web hosts whose repository URLs the enricher looks up on GitHub; a commit
	// of any other host is flagged unknown_repo. Add the GitHub Enterprise host here.
	RepoHosts []string `yaml:"repo_hosts"`
	// Timeout bounds one HTTP request to GitHub.
	Timeout time.Duration `yaml:"timeout"`
	// CacheTTL is how long cached GitHub answers (immutable by SHA) are kept; 0 keeps them forever.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

type enricherRules struct {
	// Products map the product names of incidents to components and teams.
	Products []product `yaml:"products"`
	// HistoryPerComponent bounds the production deployments remembered per component for linking
	// incidents to the deployment that may have caused them.
	HistoryPerComponent int `yaml:"history_per_component"`
	// IncidentLinkLookback is how old the deployment an incident is linked to may be.
	IncidentLinkLookback time.Duration `yaml:"incident_link_lookback"`
	// Rollout says how one change deployed to several clusters is counted.
	Rollout rolloutRules `yaml:"rollout"`
}

// rolloutRules are the counting policy of logical deployments (argocd.md §3.9).
type rolloutRules struct {
	rolloutPolicy `yaml:",inline"`
	// Components override policy and expected_clusters per component; an override's
	// expected_clusters replace the default's environment by environment.
	Components map[string]rolloutPolicy `yaml:"components"`
}

type rolloutPolicy struct {
	// Policy is first, each or all.
	Policy string `yaml:"policy"`
	// ExpectedClusters are, per environment, the clusters policy all waits for.
	ExpectedClusters map[string][]string `yaml:"expected_clusters"`
}

type product struct {
	Name       string   `yaml:"name"`
	Components []string `yaml:"components"`
	// Teams are team names from integration.devlake.teams.
	Teams []string `yaml:"teams"`
}

func defaultRules() rules {
	return rules{
		Github: githubRules{BaseURL: "https://api.github.com/", RepoHosts: []string{"github.com"},
			Timeout: 30 * time.Second, CacheTTL: 90 * 24 * time.Hour},
		Enricher: enricherRules{HistoryPerComponent: 100, IncidentLinkLookback: 30 * 24 * time.Hour,
			Rollout: rolloutRules{rolloutPolicy: rolloutPolicy{Policy: string(events.RolloutFirst)}}},
	}
}

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	validateRouting(&p, r.Integration.Devlake)
	if u, err := url.Parse(r.Github.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf("github.base_url", "%q is not an http(s) URL", r.Github.BaseURL)
	}
	if len(r.Github.RepoHosts) == 0 {
		p.Addf("github.repo_hosts", "at least one host is required")
	}
	for i, h := range r.Github.RepoHosts {
		if h == "" || strings.ContainsAny(h, "/: ") || h != strings.ToLower(h) {
			p.Addf(fmt.Sprintf("github.repo_hosts[%d]", i), "%q is not a lower-case host name", h)
		}
	}
	if r.Github.Timeout <= 0 {
		p.Addf("github.timeout", "must be positive")
	}
	if r.Github.CacheTTL < 0 {
		p.Addf("github.cache_ttl", "must not be negative")
	}
	if r.Enricher.HistoryPerComponent < 1 || r.Enricher.HistoryPerComponent > 10000 {
		p.Addf("enricher.history_per_component", "%d is not from 1 to 10000", r.Enricher.HistoryPerComponent)
	}
	if r.Enricher.IncidentLinkLookback <= 0 {
		p.Addf("enricher.incident_link_lookback", "must be positive")
	}
	validateRollout(&p, r.Enricher.Rollout)
	teams := map[string]bool{}
	for _, t := range r.Integration.Devlake.Teams {
		teams[t.Name] = true
	}
	names := map[string]int{}
	for i, pr := range r.Enricher.Products {
		path := fmt.Sprintf("enricher.products[%d]", i)
		if pr.Name == "" {
			p.Addf(path+".name", "required")
		} else if j, dup := names[pr.Name]; dup {
			p.Addf(path+".name", "%q repeats enricher.products[%d]", pr.Name, j)
		} else {
			names[pr.Name] = i
		}
		if len(pr.Components) == 0 && len(pr.Teams) == 0 {
			p.Addf(path, "names no components and no teams")
		}
		for k, c := range pr.Components {
			if c == "" {
				p.Addf(fmt.Sprintf("%s.components[%d]", path, k), "empty")
			}
		}
		for k, t := range pr.Teams {
			if !teams[t] {
				p.Addf(fmt.Sprintf("%s.teams[%d]", path, k), "%q is not a team in integration.devlake.teams", t)
			}
		}
	}
	return p.Err()
}

var rolloutEnvironments = []string{string(events.EnvironmentProduction), string(events.EnvironmentStaging),
	string(events.EnvironmentTesting), string(events.EnvironmentDevelopment)}

// validateRollout checks the policies: each is first, each or all, and all names the clusters it
// waits for in at least one environment (its own or the default's).
func validateRollout(p *config.Problems, r rolloutRules) {
	check := func(path string, rp rolloutPolicy, inherited map[string][]string) {
		switch events.RolloutPolicy(rp.Policy) {
		case "", events.RolloutFirst, events.RolloutEach:
		case events.RolloutAll:
			expected := maps.Clone(inherited)
			if expected == nil {
				expected = map[string][]string{}
			}
			maps.Copy(expected, rp.ExpectedClusters)
			if !slices.ContainsFunc(slices.Collect(maps.Values(expected)), func(cs []string) bool { return len(cs) > 0 }) {
				p.Addf(path, "policy all needs expected_clusters for at least one environment")
			}
		default:
			p.Addf(path+".policy", "%q is not first, each or all", rp.Policy)
		}
		for _, env := range slices.Sorted(maps.Keys(rp.ExpectedClusters)) {
			epath := path + ".expected_clusters." + env
			if !slices.Contains(rolloutEnvironments, env) {
				p.Addf(epath, "not an environment (%s)", strings.Join(rolloutEnvironments, ", "))
			}
			for i, c := range rp.ExpectedClusters[env] {
				if j := slices.Index(rp.ExpectedClusters[env], c); c == "" {
					p.Addf(fmt.Sprintf("%s[%d]", epath, i), "empty")
				} else if j < i {
					p.Addf(fmt.Sprintf("%s[%d]", epath, i), "%q repeats %s[%d]", c, epath, j)
				}
			}
		}
	}
	check("enricher.rollout", r.rolloutPolicy, nil)
	for _, name := range slices.Sorted(maps.Keys(r.Components)) {
		path := "enricher.rollout.components." + name
		if name == "" {
			p.Addf(path, "empty component name")
		}
		o := r.Components[name]
		if o.Policy == "" {
			o.Policy = r.Policy
		}
		check(path, o, r.ExpectedClusters)
	}
}

// validateRouting checks the teams the enricher routes to; the keys only devlake-sink reads are
// devlake-sink's to check.
func validateRouting(p *config.Problems, d config.DevLake) {
	names := map[string]int{}
	for i, t := range d.Teams {
		path := fmt.Sprintf("integration.devlake.teams[%d]", i)
		if t.Name == "" {
			p.Addf(path+".name", "required")
		} else if j, dup := names[t.Name]; dup {
			p.Addf(path+".name", "%q repeats integration.devlake.teams[%d]", t.Name, j)
		} else {
			names[t.Name] = i
		}
		if t.ProjectID == "" {
			p.Addf(path+".project_id", "required")
		}
		for k, c := range t.ArgocdComponents {
			if c == "" {
				p.Addf(fmt.Sprintf("%s.argocd_components[%d]", path, k), "empty")
			}
		}
	}
}

// enrichConfig is the routing and product mapping the core needs.
func (r rules) enrichConfig() enrich.Config {
	c := enrich.Config{GlobalProjectID: r.Integration.Devlake.ProjectID, RepoHosts: r.Github.RepoHosts,
		HistoryPerComponent: r.Enricher.HistoryPerComponent, IncidentLinkLookback: r.Enricher.IncidentLinkLookback,
		Rollout: enrich.RolloutConfig{Policy: events.RolloutPolicy(r.Enricher.Rollout.Policy),
			Expected: expectedClusters(r.Enricher.Rollout.ExpectedClusters)}}
	for name, o := range r.Enricher.Rollout.Components {
		if c.Rollout.Components == nil {
			c.Rollout.Components = map[string]enrich.RolloutOverride{}
		}
		c.Rollout.Components[name] = enrich.RolloutOverride{Policy: events.RolloutPolicy(o.Policy),
			Expected: expectedClusters(o.ExpectedClusters)}
	}
	for _, t := range r.Integration.Devlake.Teams {
		c.Teams = append(c.Teams, enrich.Team{Name: t.Name, ProjectID: t.ProjectID, Components: t.ArgocdComponents})
	}
	for _, p := range r.Enricher.Products {
		c.Products = append(c.Products, enrich.Product{Name: p.Name, Components: p.Components, Teams: p.Teams})
	}
	return c
}

func expectedClusters(m map[string][]string) map[events.Environment][]string {
	if m == nil {
		return nil
	}
	out := make(map[events.Environment][]string, len(m))
	for env, cs := range m {
		out[events.Environment(env)] = cs
	}
	return out
}

// credentials are the GitHub credentials from the environment: a token, or a GitHub App.
type credentials struct {
	token          config.Secret
	appID          int64
	installationID int64
	appKey         config.Secret
}

func (c *credentials) read(env *config.Env) {
	c.token = env.Secret("GITHUB_TOKEN", false, "GitHub personal access token; or use the GITHUB_APP_* variables")
	appID := env.String("GITHUB_APP_ID", "", "GitHub App ID, to authenticate as an app installation")
	inst := env.String("GITHUB_APP_INSTALLATION_ID", "", "GitHub App installation ID")
	c.appKey = env.Secret("GITHUB_APP_PRIVATE_KEY", false, "GitHub App private key (PEM)")
	app := appID != "" || inst != "" || c.appKey.IsSet()
	if !app {
		return
	}
	if c.token.IsSet() {
		env.Problemf("GITHUB_TOKEN and GITHUB_APP_* are both set; set one")
	}
	var err error
	if c.appID, err = strconv.ParseInt(appID, 10, 64); err != nil || c.appID <= 0 {
		env.Problemf("GITHUB_APP_ID=%q is not a positive integer (required with the other GITHUB_APP_* variables)", appID)
	}
	if c.installationID, err = strconv.ParseInt(inst, 10, 64); err != nil || c.installationID <= 0 {
		env.Problemf("GITHUB_APP_INSTALLATION_ID=%q is not a positive integer (required with the other GITHUB_APP_* variables)", inst)
	}
	if !c.appKey.IsSet() {
		env.Problemf("GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE is required with GITHUB_APP_ID")
	} else if _, err := github.ParsePrivateKey([]byte(c.appKey.Reveal())); err != nil {
		env.Problemf("GITHUB_APP_PRIVATE_KEY: %v", err)
	}
}

// mode says how the client authenticates, for the startup log.
func (c credentials) mode() string {
	switch {
	case c.appID > 0:
		return "app"
	case c.token.IsSet():
		return "token"
	default:
		return "anonymous"
	}
}
