package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/detect"
)

// rules is the watcher's behaviour, from the YAML file. The seed project's keys (argocd.namespaces,
// argocd.components_to_ignore, argocd.known_clusters) keep their meaning.
type rules struct {
	Argocd argocdRules `yaml:"argocd"`
}

type argocdRules struct {
	// Enabled turns watching on; with it off the service starts, reports that it is disabled and idles.
	Enabled bool `yaml:"enabled"`
	// Instance names this Argo CD control plane. It is part of every event ID and checkpoint key and
	// qualifies the in-cluster destination https://kubernetes.default.svc. One watcher per instance.
	Instance string `yaml:"instance"`
	// Namespaces to watch for Applications; empty watches all namespaces.
	Namespaces []string `yaml:"namespaces"`
	// LabelSelector restricts the watch to matching Applications, such as "doraflow.io/watch=true".
	LabelSelector string `yaml:"label_selector"`
	// ComponentsToIgnore are components (exact names) that never produce events.
	ComponentsToIgnore []string `yaml:"components_to_ignore"`
	// KnownClusters are cluster names matched as the suffix of <component>-<cluster> app names; when
	// several match, the longest wins.
	KnownClusters []string `yaml:"known_clusters"`
	// Clusters maps a destination name or server URL to a cluster name; it wins over the name suffix.
	Clusters map[string]string `yaml:"clusters"`
	// Environments map a source path segment to an environment, first match wins. Paths matching no
	// rule give environment unknown: nothing defaults to production.
	Environments []environmentRule `yaml:"environments"`
	// ProjectTeams maps an AppProject to a team, for applications without a doraflow.io/team label.
	ProjectTeams map[string]string `yaml:"project_teams"`
	// ComponentRepos maps a component to its application source repository.
	ComponentRepos map[string]string `yaml:"component_repos"`
	// ImageRepos map image repositories (registry host and path prefix) to source repositories.
	ImageRepos []imageRepoRule `yaml:"image_repos"`
	// AppCommit says which image tags are application commits.
	AppCommit appCommitRules `yaml:"app_commit"`
	// DegradedWindow is how long after a deployment a Degraded health counts as its failure.
	DegradedWindow time.Duration `yaml:"degraded_window"`
	// DegradedGrace is how long Degraded/Missing must last before it counts (self-healing blips).
	DegradedGrace time.Duration `yaml:"degraded_grace"`
	// ImageSettleTimeout bounds how long after deployedAt a new history entry waits for its rollout
	// to settle (health Progressing, or live images still the previous deployment's), so that the
	// images it is published with are its revision's; 0 publishes at once.
	ImageSettleTimeout time.Duration `yaml:"image_settle_timeout"`
	// Backfill emits the existing history of applications seen for the first time (also --backfill).
	Backfill bool `yaml:"backfill"`
	// Resync re-evaluates every cached Application this often (health windows); 0 disables it.
	Resync time.Duration `yaml:"resync"`
	// Workers process Applications in parallel.
	Workers int `yaml:"workers"`
}

type environmentRule struct {
	// Segment is a path segment such as prod, matched between slashes anywhere in the source path.
	Segment     string `yaml:"segment"`
	Environment string `yaml:"environment"`
}

type imageRepoRule struct {
	// Prefix is an image repository or a prefix of it on a path boundary, such as quay.io/acme.
	Prefix string `yaml:"prefix"`
	// RepoURL is the source repository, such as https://github.com/acme/app.
	RepoURL string `yaml:"repo_url"`
}

type appCommitRules struct {
	// TagPatterns are regular expressions with a named group "sha"; when set they replace the
	// defaults (a 40-hex tag, a tag ending in -<40 hex>, sha-<7..40 hex>).
	TagPatterns []string `yaml:"tag_patterns"`
	// ShortSHA also accepts any 7–40 hex tag as a commit. Off by default: 20240101 is not a commit.
	ShortSHA bool `yaml:"short_sha"`
}

func defaultRules() rules {
	var envs []environmentRule
	for _, r := range detect.DefaultEnvironmentRules() {
		envs = append(envs, environmentRule{Segment: r.Segment, Environment: string(r.Environment)})
	}
	return rules{Argocd: argocdRules{
		Instance:           "argocd",
		Environments:       envs,
		DegradedWindow:     30 * time.Minute,
		DegradedGrace:      time.Minute,
		ImageSettleTimeout: 10 * time.Minute,
		Resync:             10 * time.Minute,
		Workers:            4,
	}}
}

// dnsLabel is a Kubernetes namespace name (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

var environmentNames = []string{
	string(events.EnvironmentProduction), string(events.EnvironmentStaging),
	string(events.EnvironmentTesting), string(events.EnvironmentDevelopment),
}

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	a := r.Argocd
	switch {
	case a.Instance == "":
		p.Addf("argocd.instance", "required: it names this Argo CD in event IDs")
	case !dnsLabel.MatchString(a.Instance):
		p.Addf("argocd.instance", "%q must be a lower-case DNS label (a-z, 0-9, -): it is part of event IDs and checkpoint keys", a.Instance)
	}
	for i, ns := range a.Namespaces {
		if !dnsLabel.MatchString(ns) {
			p.Addf(fmt.Sprintf("argocd.namespaces[%d]", i), "%q is not a namespace name", ns)
		}
	}
	checkUnique(&p, "argocd.namespaces", a.Namespaces)
	checkUnique(&p, "argocd.known_clusters", a.KnownClusters)
	checkUnique(&p, "argocd.components_to_ignore", a.ComponentsToIgnore)
	for k, v := range a.Clusters {
		if k == "" || v == "" {
			p.Addf("argocd.clusters", "%q: %q: destination and cluster must not be empty", k, v)
		}
	}
	for i, e := range a.Environments {
		path := fmt.Sprintf("argocd.environments[%d]", i)
		if e.Segment == "" || strings.Contains(e.Segment, "/") {
			p.Addf(path+".segment", "%q must be one path segment, without slashes", e.Segment)
		}
		if !slices.Contains(environmentNames, e.Environment) {
			p.Addf(path+".environment", "%q is not one of %s", e.Environment, strings.Join(environmentNames, ", "))
		}
	}
	for i, ir := range a.ImageRepos {
		path := fmt.Sprintf("argocd.image_repos[%d]", i)
		if ir.Prefix == "" || strings.ContainsAny(ir.Prefix, "@ \t") {
			p.Addf(path+".prefix", "%q must be an image repository prefix such as quay.io/acme", ir.Prefix)
		}
		if ir.RepoURL == "" {
			p.Addf(path+".repo_url", "required")
		}
	}
	for k, v := range a.ComponentRepos {
		if v == "" {
			p.Addf("argocd.component_repos."+k, "empty repository")
		}
	}
	for i, pat := range a.AppCommit.TagPatterns {
		path := fmt.Sprintf("argocd.app_commit.tag_patterns[%d]", i)
		re, err := regexp.Compile(pat)
		switch {
		case err != nil:
			p.Addf(path, "%v", err)
		case re.SubexpIndex("sha") < 0:
			p.Addf(path, "%q has no named group (?P<sha>...)", pat)
		case !strings.HasPrefix(pat, "^") || !strings.HasSuffix(pat, "$"):
			p.Addf(path, "%q must be anchored with ^ and $, so 20240101-build is not read as a commit", pat)
		}
	}
	if a.DegradedWindow <= 0 {
		p.Addf("argocd.degraded_window", "must be a positive duration such as 30m, got %s", a.DegradedWindow)
	}
	if a.DegradedGrace < 0 || (a.DegradedWindow > 0 && a.DegradedGrace >= a.DegradedWindow) {
		p.Addf("argocd.degraded_grace", "must be zero or positive and shorter than degraded_window (%s), got %s", a.DegradedWindow, a.DegradedGrace)
	}
	if a.ImageSettleTimeout != 0 && (a.ImageSettleTimeout < 10*time.Second || a.ImageSettleTimeout > time.Hour) {
		p.Addf("argocd.image_settle_timeout", "must be 0 (publish at once) or from 10s to 1h, got %s", a.ImageSettleTimeout)
	}
	if a.Resync != 0 && a.Resync < time.Minute {
		p.Addf("argocd.resync", "must be 0 (off) or at least 1m, got %s", a.Resync)
	}
	if a.Workers < 1 || a.Workers > 64 {
		p.Addf("argocd.workers", "must be from 1 to 64, got %d", a.Workers)
	}
	return p.Err()
}

func checkUnique(p *config.Problems, path string, values []string) {
	seen := map[string]int{}
	for i, v := range values {
		switch j, dup := seen[v]; {
		case v == "":
			p.Addf(fmt.Sprintf("%s[%d]", path, i), "empty")
		case dup:
			p.Addf(fmt.Sprintf("%s[%d]", path, i), "%q repeats %s[%d]", v, path, j)
		default:
			seen[v] = i
		}
	}
}

// detectConfig builds detection's configuration. It is called after Validate, so patterns compile.
func (a argocdRules) detectConfig(watchingSince time.Time, backfill bool) *detect.Config {
	c := &detect.Config{
		Instance:           a.Instance,
		KnownClusters:      a.KnownClusters,
		Clusters:           a.Clusters,
		ComponentsToIgnore: a.ComponentsToIgnore,
		ProjectTeams:       a.ProjectTeams,
		ComponentRepos:     a.ComponentRepos,
		DegradedWindow:     a.DegradedWindow,
		DegradedGrace:      a.DegradedGrace,
		ImageSettleTimeout: a.ImageSettleTimeout,
		Backfill:           a.Backfill || backfill,
		WatchingSince:      watchingSince,
	}
	for _, e := range a.Environments {
		c.Environments = append(c.Environments, detect.EnvironmentRule{Segment: e.Segment, Environment: events.Environment(e.Environment)})
	}
	for _, ir := range a.ImageRepos {
		c.ImageRepos = append(c.ImageRepos, detect.ImageRepo{Prefix: ir.Prefix, RepoURL: ir.RepoURL})
	}
	if len(a.AppCommit.TagPatterns) == 0 {
		c.TagPatterns = detect.DefaultTagPatterns()
	}
	for _, pat := range a.AppCommit.TagPatterns {
		c.TagPatterns = append(c.TagPatterns, regexp.MustCompile(pat))
	}
	if a.AppCommit.ShortSHA {
		c.TagPatterns = append(c.TagPatterns, detect.ShortSHATagPattern)
	}
	return c
}
