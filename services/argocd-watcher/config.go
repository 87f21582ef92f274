package main

import (
	"fmt"
	"regexp"
	"time"

	"github.com/doraflow/doraflow/internal/config"
)

// rules is the watcher's behaviour, from the YAML file. The seed project's keys (argocd.namespaces,
// argocd.components_to_ignore, argocd.known_clusters) keep their meaning.
type rules struct {
	Argocd argocdRules `yaml:"argocd"`
}

type argocdRules struct {
	// Enabled turns watching on; with it off the service starts, reports that it is disabled and idles.
	Enabled bool `yaml:"enabled"`
	// Instance names this Argo CD control plane. It is part of every event ID and qualifies the
	// in-cluster destination https://kubernetes.default.svc.
	Instance string `yaml:"instance"`
	// Namespaces to watch for Applications; empty watches all namespaces.
	Namespaces []string `yaml:"namespaces"`
	// ComponentsToIgnore are components (exact names) that never produce events.
	ComponentsToIgnore []string `yaml:"components_to_ignore"`
	// KnownClusters are cluster names matched as the suffix of <component>-<cluster> app names.
	KnownClusters []string `yaml:"known_clusters"`
	// DegradedWindow is how long after a deployment a Degraded health counts as its failure.
	DegradedWindow time.Duration `yaml:"degraded_window"`
}

func defaultRules() rules {
	return rules{Argocd: argocdRules{Instance: "argocd", DegradedWindow: 30 * time.Minute}}
}

// dnsLabel is a Kubernetes namespace name (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Validate implements config.Validator.
func (r *rules) Validate() error {
	var p config.Problems
	a := r.Argocd
	if a.Instance == "" {
		p.Addf("argocd.instance", "required: it names this Argo CD in event IDs")
	}
	for i, ns := range a.Namespaces {
		if !dnsLabel.MatchString(ns) {
			p.Addf(fmt.Sprintf("argocd.namespaces[%d]", i), "%q is not a namespace name", ns)
		}
	}
	checkUnique(&p, "argocd.known_clusters", a.KnownClusters)
	checkUnique(&p, "argocd.components_to_ignore", a.ComponentsToIgnore)
	if a.DegradedWindow <= 0 {
		p.Addf("argocd.degraded_window", "must be a positive duration such as 30m, got %s", a.DegradedWindow)
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
