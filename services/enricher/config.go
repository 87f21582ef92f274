package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
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
		Enricher: enricherRules{HistoryPerComponent: 100},
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
		HistoryPerComponent: r.Enricher.HistoryPerComponent}
	for _, t := range r.Integration.Devlake.Teams {
		c.Teams = append(c.Teams, enrich.Team{Name: t.Name, ProjectID: t.ProjectID, Components: t.ArgocdComponents})
	}
	for _, p := range r.Enricher.Products {
		c.Products = append(c.Products, enrich.Product{Name: p.Name, Components: p.Components, Teams: p.Teams})
	}
	return c
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
