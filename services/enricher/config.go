package main

import (
	"fmt"
	"net/url"

	"github.com/doraflow/doraflow/internal/config"
)

// rules is the enricher's behaviour, from the YAML file. The seed project's team routing
// (integration.devlake.project_id and teams[].argocd_components) keeps its meaning.
type rules struct {
	Integration integration `yaml:"integration"`
	Github      githubRules `yaml:"github"`
}

type integration struct {
	Devlake devlakeRouting `yaml:"devlake"`
}

// devlakeRouting is the seed's integration.devlake section. The enricher reads the routing; the
// other keys belong to devlake-sink and are accepted so both can share one file.
type devlakeRouting struct {
	Enabled bool   `yaml:"enabled"`
	BaseURL string `yaml:"base_url"`
	// ProjectID is the global DevLake project that receives every event.
	ProjectID string `yaml:"project_id"`
	Teams     []team `yaml:"teams"`
}

type team struct {
	Name      string `yaml:"name"`
	ProjectID string `yaml:"project_id"`
	// ArgocdComponents are the components whose events this team's project receives.
	ArgocdComponents []string `yaml:"argocd_components"`
}

type githubRules struct {
	// BaseURL is GitHub's API URL; set it for GitHub Enterprise (https://ghe.example.com/api/v3/).
	BaseURL string `yaml:"base_url"`
}

func defaultRules() rules {
	return rules{Github: githubRules{BaseURL: "https://api.github.com/"}}
}

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	validateRouting(&p, r.Integration.Devlake)
	if u, err := url.Parse(r.Github.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf("github.base_url", "%q is not an http(s) URL", r.Github.BaseURL)
	}
	return p.Err()
}

func validateRouting(p *config.Problems, d devlakeRouting) {
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
