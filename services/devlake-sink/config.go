package main

import (
	"fmt"
	"net/url"

	"github.com/doraflow/doraflow/internal/config"
)

// rules is the sink's behaviour, from the YAML file. The seed project's integration.devlake keys
// (enabled, base_url, project_id, teams[]) keep their meaning.
type rules struct {
	Integration integration `yaml:"integration"`
}

type integration struct {
	Devlake devlakeRules `yaml:"devlake"`
}

type devlakeRules struct {
	// Enabled turns posting on; with it off the service starts, reports that it is disabled and idles.
	Enabled bool `yaml:"enabled"`
	// BaseURL is DevLake's API: https://<host>/api through config-ui, or http://<lake>:8080.
	BaseURL string `yaml:"base_url"`
	// ProjectID is the global project.
	ProjectID string `yaml:"project_id"`
	Teams     []team `yaml:"teams"`
}

type team struct {
	Name      string `yaml:"name"`
	ProjectID string `yaml:"project_id"`
	// ArgocdComponents is read by the enricher's routing; the sink accepts it so both share a file.
	ArgocdComponents []string `yaml:"argocd_components"`
}

func defaultRules() rules { return rules{} }

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
	return p.Err()
}
