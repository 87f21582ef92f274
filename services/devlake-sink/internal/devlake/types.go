// Package devlake is a client for Apache DevLake's webhook plugin (v1.0.1+, checked against v1.0.3):
// the request bodies it accepts, one POST with the connection's Bearer key, and the classification
// of its answers into ok, permanent, configuration and retryable outcomes.
package devlake

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Time is a date as DevLake's webhook must receive it: UTC RFC 3339 with Z and second precision
// (2026-03-10T14:02:11Z). Default time.Time marshalling would send nanoseconds with the local
// offset, which DevLake rejects. The zero Time marshals as null and is omitted with omitzero.
type Time struct{ t time.Time }

// At returns t as a DevLake date.
func At(t time.Time) Time { return Time{t: t} }

// IsZero reports whether the time is unset.
func (t Time) IsZero() bool { return t.t.IsZero() }

// Time returns the time, truncated to the second as it is sent.
func (t Time) Time() time.Time { return t.t.UTC().Truncate(time.Second) }

// String returns the wire form.
func (t Time) String() string { return t.t.UTC().Format(time.RFC3339) }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.String() + `"`), nil
}

// DevLake's environments.
const (
	EnvProduction  = "PRODUCTION"
	EnvStaging     = "STAGING"
	EnvTesting     = "TESTING"
	EnvDevelopment = "DEVELOPMENT"
)

// DevLake's results, statuses and issue type.
const (
	ResultSuccess     = "SUCCESS"
	ResultFailure     = "FAILURE"
	StatusDone        = "DONE"
	StatusInProgress  = "IN_PROGRESS"
	IssueTypeIncident = "INCIDENT"
	PRStatusMerged    = "MERGED"
)

// Deployment is the body of POST connections/{id}/deployments. Every post is the complete object:
// DevLake resets omitted fields.
type Deployment struct {
	ID                  string             `json:"id"`
	DisplayTitle        string             `json:"displayTitle,omitempty"`
	Name                string             `json:"name,omitempty"`
	Result              string             `json:"result"`
	Environment         string             `json:"environment"`
	OriginalEnvironment string             `json:"originalEnvironment,omitempty"`
	CreatedDate         Time               `json:"createdDate,omitzero"`
	StartedDate         Time               `json:"startedDate"`
	FinishedDate        Time               `json:"finishedDate"`
	DeploymentCommits   []DeploymentCommit `json:"deploymentCommits"`
}

// DeploymentCommit is one entry of deploymentCommits. DORA reads Result from here, never from the
// deployment, so it is always set.
type DeploymentCommit struct {
	RepoURL      string `json:"repoUrl"`
	RefName      string `json:"refName,omitempty"`
	CommitSha    string `json:"commitSha"`
	CommitMsg    string `json:"commitMsg,omitempty"`
	DisplayTitle string `json:"displayTitle,omitempty"`
	Result       string `json:"result"`
	Status       string `json:"status"`
	CreatedDate  Time   `json:"createdDate,omitzero"`
	StartedDate  Time   `json:"startedDate"`
	FinishedDate Time   `json:"finishedDate"`
}

// Issue is the body of POST connections/{id}/issues. Incidents have Type INCIDENT; a resolution is a
// re-post of the full issue with Status DONE and ResolutionDate (never the /close endpoint).
type Issue struct {
	IssueKey       string `json:"issueKey"`
	Type           string `json:"type"`
	Title          string `json:"title"`
	Description    string `json:"description,omitempty"`
	Status         string `json:"status"`
	OriginalStatus string `json:"originalStatus"`
	Severity       string `json:"severity,omitempty"`
	Component      string `json:"component,omitempty"`
	URL            string `json:"url,omitempty"`
	CreatedDate    Time   `json:"createdDate"`
	UpdatedDate    Time   `json:"updatedDate,omitzero"`
	ResolutionDate Time   `json:"resolutionDate,omitzero"`
}

// PullRequest is the body of POST connections/{id}/pull_requests (v1.0.3+). DevLake stores it as
// pull_requests row webhook:<connection>:<PullRequestKey>, so the key alone identifies it on a
// connection. BaseRepoID must be webhook:<connection>: the project's repos mapping holds that id,
// and DORA reads only pull requests of the project's repos.
type PullRequest struct {
	ID             string `json:"id"`
	BaseRepoID     string `json:"baseRepoId"`
	Status         string `json:"status"`
	OriginalStatus string `json:"originalStatus,omitempty"`
	DisplayTitle   string `json:"displayTitle"`
	URL            string `json:"url,omitempty"`
	PullRequestKey int    `json:"pullRequestKey"`
	CreatedDate    Time   `json:"createdDate"`
	MergedDate     Time   `json:"mergedDate,omitzero"`
	MergeCommitSha string `json:"mergeCommitSha,omitempty"`
}

// ErrNotRepoURL means a repository URL has no recognisable host and owner/repository path.
var ErrNotRepoURL = errors.New("not a repository URL")

// CanonicalRepoURL returns the one spelling of a repository URL that doraflow sends:
// https://<host>/<owner>/<repo> in lower case, without ".git" or a trailing slash. It reads
// https://, http://, ssh://, git://, git@host:owner/repo and host/owner/repo forms. DevLake's commit
// row id hashes the URL, and lead time chains deployments by it, so every spelling must agree.
func CanonicalRepoURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	var host, path string
	switch {
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("%q: %w", raw, ErrNotRepoURL)
		}
		switch u.Scheme {
		case "https", "http", "ssh", "git":
		default:
			return "", fmt.Errorf("%q: scheme %q: %w", raw, u.Scheme, ErrNotRepoURL)
		}
		host, path = u.Hostname(), u.Path
	case strings.HasPrefix(s, "git@"):
		h, p, ok := strings.Cut(strings.TrimPrefix(s, "git@"), ":")
		if !ok {
			return "", fmt.Errorf("%q: %w", raw, ErrNotRepoURL)
		}
		host, path = h, p
	default:
		h, p, ok := strings.Cut(s, "/")
		if !ok || !strings.Contains(h, ".") {
			return "", fmt.Errorf("%q: %w", raw, ErrNotRepoURL)
		}
		host, path = h, p
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	parts := strings.Split(path, "/")
	if host == "" || len(parts) < 2 {
		return "", fmt.Errorf("%q: want <host>/<owner>/<repo>: %w", raw, ErrNotRepoURL)
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " ?#") {
			return "", fmt.Errorf("%q: %w", raw, ErrNotRepoURL)
		}
	}
	return strings.ToLower("https://" + host + "/" + strings.Join(parts, "/")), nil
}

// IsCommitSHA reports whether s is a full 40-hex-digit commit SHA.
func IsCommitSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}
