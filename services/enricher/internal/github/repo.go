package github

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Repo is a GitHub repository. Owner and Name are lower-cased: GitHub treats them case-insensitively,
// and one spelling keeps cache keys and baselines from splitting.
type Repo struct {
	// Host is the web host that serves the repository: github.com, or a GitHub Enterprise host.
	Host  string
	Owner string
	Name  string
}

// URL returns the canonical repository URL: https://<host>/<owner>/<repo>, without ".git".
func (r Repo) URL() string { return "https://" + r.Host + "/" + r.Owner + "/" + r.Name }

// String returns owner/name.
func (r Repo) String() string { return r.Owner + "/" + r.Name }

// ErrNotGitHub means a repository URL does not name a repository on one of the configured hosts.
var ErrNotGitHub = errors.New("not a repository on a configured GitHub host")

// GitHub's rules for owner and repository names, loosely: letters, digits, '-', '_' and '.'.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ParseRepoURL reads a repository URL in any of the forms found in Argo CD and image labels —
// https://github.com/o/r(.git), http://…, git@github.com:o/r.git, ssh://git@github.com/o/r,
// github.com/o/r — and returns the repository when its host is one of hosts.
func ParseRepoURL(raw string, hosts []string) (Repo, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return Repo{}, fmt.Errorf("empty repository URL: %w", ErrNotGitHub)
	}
	var host, path string
	switch {
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return Repo{}, fmt.Errorf("repository URL %q: %w", raw, ErrNotGitHub)
		}
		if u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "ssh" && u.Scheme != "git" {
			return Repo{}, fmt.Errorf("repository URL %q: scheme %q: %w", raw, u.Scheme, ErrNotGitHub)
		}
		host, path = u.Hostname(), u.Path
	case strings.HasPrefix(s, "git@"):
		// scp-like syntax: git@github.com:owner/repo.git
		h, p, ok := strings.Cut(strings.TrimPrefix(s, "git@"), ":")
		if !ok {
			return Repo{}, fmt.Errorf("repository URL %q: %w", raw, ErrNotGitHub)
		}
		host, path = h, p
	default:
		h, p, ok := strings.Cut(s, "/")
		if !ok {
			return Repo{}, fmt.Errorf("repository URL %q: %w", raw, ErrNotGitHub)
		}
		host, path = h, p
	}
	host = strings.ToLower(host)
	if !slices.Contains(hosts, host) {
		return Repo{}, fmt.Errorf("repository URL %q: host %q: %w", raw, host, ErrNotGitHub)
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	parts := strings.Split(path, "/")
	if len(parts) != 2 || !namePattern.MatchString(parts[0]) || !namePattern.MatchString(parts[1]) {
		return Repo{}, fmt.Errorf("repository URL %q: want <owner>/<repo> after the host: %w", raw, ErrNotGitHub)
	}
	return Repo{Host: host, Owner: strings.ToLower(parts[0]), Name: strings.ToLower(parts[1])}, nil
}
