package config

// Integration is the integration section, which more than one service reads: the seed project's
// integration.devlake keys keep their meaning in every service.
type Integration struct {
	Devlake DevLake `yaml:"devlake"`
}

// DevLake is the integration.devlake section: where events go in DevLake. The enricher routes
// events to its projects; devlake-sink posts them. Each service validates the keys it uses, and
// accepts the others, so both can share one file.
type DevLake struct {
	// Enabled turns posting on; with it off devlake-sink starts, reports that it is disabled and
	// idles. The enricher routes events either way.
	Enabled bool `yaml:"enabled"`
	// BaseURL is DevLake's API, where devlake-sink posts: https://<host>/api through config-ui, or
	// http://<lake>:8080.
	BaseURL string `yaml:"base_url"`
	// ProjectID is the global DevLake project that receives every event.
	ProjectID string `yaml:"project_id"`
	Teams     []Team `yaml:"teams"`
}

// Team is one entry of integration.devlake.teams: a team, its DevLake project and the components
// it owns.
type Team struct {
	Name      string `yaml:"name"`
	ProjectID string `yaml:"project_id"`
	// ArgocdComponents are the components whose events this team's project receives (the
	// enricher's routing).
	ArgocdComponents []string `yaml:"argocd_components"`
}
