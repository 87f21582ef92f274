package main

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/poll"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
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
	// JitterRatio adds up to this fraction of the interval to each wait, so restarts spread out.
	JitterRatio float64 `yaml:"jitter_ratio"`
	// Products are matched case-insensitively against each incident's products; empty keeps all.
	Products []string `yaml:"products"`
	// ProductIDs are status-board product UUIDs: each is listed with the product_id filter and the
	// results merged; Products still filters them client-side. Empty lists every incident.
	ProductIDs []string `yaml:"product_ids"`
	// PageSize is the size of a listing page.
	PageSize int `yaml:"page_size"`
	// MaxPages caps the pages of one listing; reaching it with pages left fails the poll.
	MaxPages int `yaml:"max_pages"`
	// OrderBy is the listing order; oldest first keeps pages stable while new incidents arrive.
	OrderBy string `yaml:"order_by"`
	// RequestTimeout bounds each request to WebRCA and to SSO.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// RetryBackoff is the wait after a failed poll; it doubles per failure up to the interval.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// UnreadyAfter turns /readyz false when polling has failed for this long.
	UnreadyAfter time.Duration `yaml:"unready_after"`
	// Scope is requested with a service account (client_credentials).
	Scope string `yaml:"scope"`
	// OfflineClientID is the client an offline token belongs to (console-dot on FedRAMP).
	OfflineClientID string `yaml:"offline_client_id"`
	// IncidentURL prefixes incident_id to link an incident's page.
	IncidentURL string `yaml:"incident_url"`
}

func defaultRules() rules {
	return rules{Webrca: webrcaRules{
		BaseURL:         "https://api.openshift.com",
		TokenURL:        "https://sso.redhat.com/auth/realms/redhat-external/protocol/openid-connect/token",
		Interval:        30 * time.Minute,
		JitterRatio:     0.1,
		PageSize:        100,
		MaxPages:        100,
		OrderBy:         "created_at asc",
		RequestTimeout:  30 * time.Second,
		RetryBackoff:    10 * time.Second,
		UnreadyAfter:    time.Hour,
		Scope:           sso.DefaultScope,
		OfflineClientID: sso.DefaultOfflineClientID,
		IncidentURL:     poll.DefaultUIBase,
	}}
}

var orderByRE = regexp.MustCompile(`^[a-z_]+( (asc|desc))?$`)

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	w := r.Webrca
	checkURL(&p, "webrca.base_url", w.BaseURL)
	checkURL(&p, "webrca.token_url", w.TokenURL)
	checkURL(&p, "webrca.incident_url", w.IncidentURL)
	if w.Interval < 10*time.Second {
		p.Addf("webrca.interval", "must be at least 10s, got %s", w.Interval)
	}
	if w.JitterRatio < 0 || w.JitterRatio > 1 {
		p.Addf("webrca.jitter_ratio", "must be from 0 to 1, got %g", w.JitterRatio)
	}
	checkList(&p, "webrca.products", w.Products)
	checkList(&p, "webrca.product_ids", w.ProductIDs)
	if w.PageSize < 1 || w.PageSize > 1000 {
		p.Addf("webrca.page_size", "must be from 1 to 1000, got %d", w.PageSize)
	}
	if w.MaxPages < 1 || w.MaxPages > 100000 {
		p.Addf("webrca.max_pages", "must be from 1 to 100000, got %d", w.MaxPages)
	}
	if !orderByRE.MatchString(w.OrderBy) {
		p.Addf("webrca.order_by", "%q is not a field name optionally followed by asc or desc", w.OrderBy)
	}
	if w.RequestTimeout < time.Second || w.RequestTimeout > 10*time.Minute {
		p.Addf("webrca.request_timeout", "must be from 1s to 10m, got %s", w.RequestTimeout)
	}
	if w.RetryBackoff < 100*time.Millisecond || w.RetryBackoff > w.Interval {
		p.Addf("webrca.retry_backoff", "must be from 100ms to webrca.interval (%s), got %s", w.Interval, w.RetryBackoff)
	}
	if w.UnreadyAfter < time.Second {
		p.Addf("webrca.unready_after", "must be at least 1s, got %s", w.UnreadyAfter)
	}
	if strings.TrimSpace(w.Scope) == "" {
		p.Addf("webrca.scope", "empty")
	}
	if strings.TrimSpace(w.OfflineClientID) == "" {
		p.Addf("webrca.offline_client_id", "empty")
	}
	return p.Err()
}

// checkList reports empty entries and entries that repeat another, ignoring case and space.
func checkList(p *config.Problems, path string, list []string) {
	seen := map[string]int{}
	for i, v := range list {
		key := strings.ToLower(strings.TrimSpace(v))
		if key == "" {
			p.Addf(fmt.Sprintf("%s[%d]", path, i), "empty")
			continue
		}
		if j, dup := seen[key]; dup {
			p.Addf(fmt.Sprintf("%s[%d]", path, i), "%q repeats %s[%d] (matching ignores case)", v, path, j)
		}
		seen[key] = i
	}
}

func checkURL(p *config.Problems, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf(path, "%q is not an http(s) URL", raw)
	}
}

// credentials are the SSO credentials, from the environment.
type credentials struct {
	ClientID     string
	ClientSecret config.Secret
	OfflineToken config.Secret
}

// read reads the credentials; which ones are needed depends on webrca.enabled, checked at start.
func (c *credentials) read(env *config.Env) {
	c.ClientID = env.String("WEBRCA_CLIENT_ID", "", "Red Hat SSO service account client id; with WEBRCA_CLIENT_SECRET, preferred over OFFLINE_TOKEN")
	c.ClientSecret = env.Secret("WEBRCA_CLIENT_SECRET", false, "Red Hat SSO service account secret")
	c.OfflineToken = env.Secret("OFFLINE_TOKEN", false, "Red Hat offline token (refresh_token grant; for development)")
	if (c.ClientID != "") != c.ClientSecret.IsSet() {
		env.Problemf("WEBRCA_CLIENT_ID and WEBRCA_CLIENT_SECRET must be set together (a service account needs both)")
	}
}

// missing explains which variables to set when polling is enabled without credentials.
func (c credentials) missing() error {
	if (c.ClientID != "" && c.ClientSecret.IsSet()) || c.OfflineToken.IsSet() {
		return nil
	}
	return fmt.Errorf("webrca.enabled is true but no SSO credentials are set: set WEBRCA_CLIENT_ID and " +
		"WEBRCA_CLIENT_SECRET (or WEBRCA_CLIENT_SECRET_FILE) for a service account, or OFFLINE_TOKEN " +
		"(or OFFLINE_TOKEN_FILE) for an offline token")
}
