package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
)

// rules is the poller's behaviour, from the YAML file. The seed project's webrca.interval keeps its
// meaning.
type rules struct {
	Webrca webrcaRules `yaml:"webrca"`
}

type webrcaRules struct {
	// Enabled turns polling on; with it off the service starts, reports that it is disabled and idles.
	Enabled bool `yaml:"enabled"`
	// BaseURL is the OpenShift API host serving /api/web-rca/v1.
	BaseURL string `yaml:"base_url"`
	// TokenURL is the Red Hat SSO token endpoint.
	TokenURL string `yaml:"token_url"`
	// Interval between polls (the seed's default was 30m).
	Interval time.Duration `yaml:"interval"`
	// Products are matched case-insensitively against each incident's products; empty keeps all.
	Products []string `yaml:"products"`
}

func defaultRules() rules {
	return rules{Webrca: webrcaRules{
		BaseURL:  "https://api.openshift.com",
		TokenURL: "https://sso.redhat.com/auth/realms/redhat-external/protocol/openid-connect/token",
		Interval: 30 * time.Minute,
	}}
}

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	w := r.Webrca
	checkURL(&p, "webrca.base_url", w.BaseURL)
	checkURL(&p, "webrca.token_url", w.TokenURL)
	if w.Interval < 10*time.Second {
		p.Addf("webrca.interval", "must be at least 10s, got %s", w.Interval)
	}
	seen := map[string]int{}
	for i, prod := range w.Products {
		key := strings.ToLower(strings.TrimSpace(prod))
		if key == "" {
			p.Addf(fmt.Sprintf("webrca.products[%d]", i), "empty")
			continue
		}
		if j, dup := seen[key]; dup {
			p.Addf(fmt.Sprintf("webrca.products[%d]", i), "%q repeats webrca.products[%d] (matching ignores case)", prod, j)
		}
		seen[key] = i
	}
	return p.Err()
}

func checkURL(p *config.Problems, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf(path, "%q is not an http(s) URL", raw)
	}
}
