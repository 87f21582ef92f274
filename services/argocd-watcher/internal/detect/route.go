package detect

import (
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

// Labels and annotations an Application (or the ApplicationSet template that made it) may carry to
// name its component, cluster, environment, team and source repository explicitly. A label wins over
// an annotation of the same key; both win over configuration rules.
const (
	LabelComponent   = "doraflow.io/component"
	LabelCluster     = "doraflow.io/cluster"
	LabelEnvironment = "doraflow.io/environment"
	LabelTeam        = "doraflow.io/team"
	LabelSourceRepo  = "doraflow.io/source-repo"
)

// InClusterServer is the destination server meaning "the cluster Argo CD runs in".
const InClusterServer = "https://kubernetes.default.svc"

// UnknownCluster is the cluster of an application no rule places.
const UnknownCluster = "unknown"

// EnvironmentRule maps a path segment of an application source (such as "prod") to an environment.
type EnvironmentRule struct {
	Segment     string
	Environment events.Environment
}

// DefaultEnvironmentRules are the seed's path segments, first match wins. Anything else is unknown:
// an environment is never defaulted to production.
func DefaultEnvironmentRules() []EnvironmentRule {
	return []EnvironmentRule{
		{"production", events.EnvironmentProduction}, {"prod", events.EnvironmentProduction},
		{"staging", events.EnvironmentStaging}, {"stage", events.EnvironmentStaging},
		{"development", events.EnvironmentDevelopment}, {"dev", events.EnvironmentDevelopment},
	}
}

// ImageRepo maps images whose repository (registry host and path) starts with Prefix, on a path
// boundary, to a source repository.
type ImageRepo struct {
	Prefix  string
	RepoURL string
}

// DefaultTagPatterns are the image tags taken as application commits: a full 40-hex SHA (the
// Konflux convention), a tag ending in -<40 hex>, and sha-<hex> (7 to 40 digits). Each has a named
// group "sha".
func DefaultTagPatterns() []*regexp.Regexp {
	return []*regexp.Regexp{
		regexp.MustCompile(`^(?P<sha>[0-9a-f]{40})$`),
		regexp.MustCompile(`^.+-(?P<sha>[0-9a-f]{40})$`),
		regexp.MustCompile(`^sha-(?P<sha>[0-9a-f]{7,40})$`),
	}
}

// ShortSHATagPattern accepts any 7–40 hex tag as a commit; enabled only by configuration, because
// all-hex tags such as 20240101 or cafebabe are not always commits.
var ShortSHATagPattern = regexp.MustCompile(`^(?P<sha>[0-9a-f]{7,40})$`)

// route is where an application's deployments belong.
type route struct {
	Component string
	Cluster   string
	Team      string
	// SourceRepo is the annotation's or the component's configured repository.
	SourceRepo string
	unresolved []string
}

func (c *Config) route(app argocd.Application) route {
	r := route{}
	comp, cluster := splitName(app.Name, c.KnownClusters)
	if v := meta(app, LabelComponent); v != "" {
		comp = v
	} else if comp == "" {
		comp = app.Name
	}
	r.Component = comp
	switch {
	case meta(app, LabelCluster) != "":
		r.Cluster = meta(app, LabelCluster)
	case app.Destination.Name != "" && c.Clusters[app.Destination.Name] != "":
		r.Cluster = c.Clusters[app.Destination.Name]
	case app.Destination.Server != "" && c.Clusters[app.Destination.Server] != "":
		r.Cluster = c.Clusters[app.Destination.Server]
	case cluster != "":
		r.Cluster = cluster
	case app.Destination.Server == InClusterServer || app.Destination.Name == "in-cluster":
		// Argo CD's own cluster: qualified by the instance, since every instance has one.
		r.Cluster = c.Instance
	case app.Destination.Name != "":
		r.Cluster = app.Destination.Name
	default:
		r.Cluster = UnknownCluster
		r.unresolved = append(r.unresolved, "cluster")
	}
	r.Team = meta(app, LabelTeam)
	if r.Team == "" {
		r.Team = c.ProjectTeams[app.Project]
	}
	r.SourceRepo = meta(app, LabelSourceRepo)
	if r.SourceRepo == "" {
		r.SourceRepo = c.ComponentRepos[r.Component]
	}
	return r
}

// splitName applies the seed's <component>-<cluster> convention: the cluster is the known cluster
// the name ends with after a dash; when several match (prd-1 and east-prd-1), the longest wins.
func splitName(name string, known []string) (component, cluster string) {
	for _, k := range known {
		if len(k) > len(cluster) && strings.HasSuffix(name, "-"+k) && len(name) > len(k)+1 {
			cluster = k
		}
	}
	if cluster == "" {
		return "", ""
	}
	return strings.TrimSuffix(name, "-"+cluster), cluster
}

func meta(app argocd.Application, key string) string {
	if v := strings.TrimSpace(app.Labels[key]); v != "" {
		return v
	}
	return strings.TrimSpace(app.Annotations[key])
}

// environment returns the environment of a deployment and the name it was derived from: the
// doraflow.io/environment label, else the first path rule matching the source that carries the
// component (the configured repository, else the first source with a path that is not a ref-only
// values source).
func (c *Config) environment(app argocd.Application, sources []argocd.Source, r route) (events.Environment, string) {
	if v := meta(app, LabelEnvironment); v != "" {
		return NormalizeEnvironment(v), v
	}
	if len(sources) == 0 {
		sources = app.Sources
	}
	p := componentPath(sources, r.SourceRepo)
	if p == "" {
		return events.EnvironmentUnknown, ""
	}
	padded := "/" + strings.Trim(p, "/") + "/"
	for _, rule := range c.Environments {
		if strings.Contains(padded, "/"+rule.Segment+"/") {
			return rule.Environment, rule.Segment
		}
	}
	return events.EnvironmentUnknown, p
}

func componentPath(sources []argocd.Source, repo string) string {
	if repo != "" {
		for _, s := range sources {
			if s.Path != "" && sameRepo(s.RepoURL, repo) {
				return s.Path
			}
		}
	}
	for _, s := range sources {
		if s.Path != "" && s.Ref == "" {
			return s.Path
		}
	}
	return ""
}

// NormalizeEnvironment maps an environment name to one of DevLake's (production, staging, testing,
// development) or unknown. Common short forms are accepted; nothing defaults to production.
func NormalizeEnvironment(v string) events.Environment {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "production", "prod", "prd":
		return events.EnvironmentProduction
	case "staging", "stage", "stg":
		return events.EnvironmentStaging
	case "testing", "test", "qa":
		return events.EnvironmentTesting
	case "development", "dev":
		return events.EnvironmentDevelopment
	}
	return events.EnvironmentUnknown
}

// NormalizeRepo canonicalises a Git repository URL for comparison: lower case host and path, no
// scheme, no user, no .git suffix, no trailing slash; git@host:org/repo becomes host/org/repo.
func NormalizeRepo(u string) string {
	s := strings.ToLower(strings.TrimSpace(u))
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	slash := strings.Index(s, "/")
	if at := strings.Index(s, "@"); at >= 0 && (slash < 0 || at < slash) {
		s = s[at+1:]
		slash = strings.Index(s, "/")
	}
	if i := strings.Index(s, ":"); i >= 0 && (slash < 0 || i < slash) {
		rest := s[i+1:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j > 0 && (j == len(rest) || rest[j] == '/') {
			s = s[:i] + rest[j:] // host:port/path
		} else {
			s = s[:i] + "/" + rest // scp-like host:org/repo
		}
	}
	return strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
}

// CanonicalRepo returns https://<NormalizeRepo(u)>, or "" for "".
func CanonicalRepo(u string) string {
	if strings.TrimSpace(u) == "" {
		return ""
	}
	return "https://" + NormalizeRepo(u)
}

func sameRepo(a, b string) bool { return NormalizeRepo(a) == NormalizeRepo(b) }

// appCommits finds application commits in the tags of the images a deployment runs (one version
// per image repository, from resolveImages). The repository of each comes from the
// longest matching image→repo rule, else the application's source repository (annotation or
// component config); without one the commit is still reported, with an empty RepoURL.
func (c *Config) appCommits(images []events.Image, r route) []events.CommitRef {
	var out []events.CommitRef
	seen := map[[2]string]bool{}
	for _, img := range images {
		sha := c.tagSHA(img.Tag)
		if sha == "" {
			continue
		}
		repo := c.imageRepo(img.Repository)
		if repo == "" {
			repo = r.SourceRepo
		}
		repo = CanonicalRepo(repo)
		k := [2]string{repo, sha}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, events.CommitRef{SHA: sha, RepoURL: repo, Via: "image_tag", Image: img.Ref})
	}
	// Ordered by repository, then image: one commit per image repository (resolveImages), so the
	// order of two commits of one repository never picks between versions of one image.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].RepoURL != out[j].RepoURL {
			return out[i].RepoURL < out[j].RepoURL
		}
		return out[i].Image < out[j].Image
	})
	return out
}

func (c *Config) tagSHA(tag string) string {
	if tag == "" {
		return ""
	}
	for _, re := range c.TagPatterns {
		m := re.FindStringSubmatch(tag)
		if m == nil {
			continue
		}
		if i := re.SubexpIndex("sha"); i > 0 && m[i] != "" {
			return strings.ToLower(m[i])
		}
	}
	return ""
}

func (c *Config) imageRepo(repository string) string {
	best, repo := -1, ""
	for _, rule := range c.ImageRepos {
		p := strings.TrimSuffix(rule.Prefix, "/")
		if (repository == p || strings.HasPrefix(repository, p+"/")) && len(p) > best {
			best, repo = len(p), rule.RepoURL
		}
	}
	return repo
}

func (c *Config) ignored(component string) bool {
	return slices.Contains(c.ComponentsToIgnore, component)
}
