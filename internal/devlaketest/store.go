package devlaketest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"sort"
	"time"
)

// Deployment is a cicd_deployments row. Its ID is the posted id as is: it is not namespaced by
// connection, so the same id posted on two connections is one row, owned by the last writer.
type Deployment struct {
	ID string
	// CicdScopeID is webhook:<connection id> of the last write.
	CicdScopeID         string
	Name                string
	DisplayTitle        string
	Result              string
	Status              string
	Environment         string
	OriginalEnvironment string
	CreatedDate         time.Time
	StartedDate         time.Time
	FinishedDate        time.Time
	DurationSec         float64
	// RepoURL and CommitSha come from the first commit of the last write.
	RepoURL   string
	CommitSha string
	// CreatedAt is kept across upserts; UpdatedAt is bumped by each write.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DeploymentCommit is a cicd_deployment_commits row, with the id
// webhook:<conn>:<deployment id>:<first 16 hex of md5(repoUrl)>:<commitSha>.
type DeploymentCommit struct {
	ID                  string
	CicdDeploymentID    string
	CicdScopeID         string
	RepoURL             string
	RepoID              string
	CommitSha           string
	CommitMsg           string
	RefName             string
	Name                string
	DisplayTitle        string
	Result              string
	Status              string
	Environment         string
	OriginalEnvironment string
	CreatedDate         time.Time
	StartedDate         time.Time
	FinishedDate        time.Time
	DurationSec         float64
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Issue is an issues row, with the id webhook:<conn>:<issueKey>.
type Issue struct {
	ID                      string
	BoardID                 string
	IssueKey                string
	Title                   string
	Description             string
	Type                    string
	Status                  string
	OriginalStatus          string
	URL                     string
	Severity                string
	Priority                string
	Component               string
	CreatorID               string
	CreatorName             string
	AssigneeID              string
	AssigneeName            string
	ParentIssueKey          string
	EpicKey                 string
	StoryPoint              *float64
	OriginalEstimateMinutes int64
	TimeSpentMinutes        int64
	TimeRemainingMinutes    int64
	LeadTimeMinutes         uint64
	CreatedDate             time.Time
	UpdatedDate             time.Time // zero: NULL
	ResolutionDate          time.Time // zero: NULL
	CreatedAt               time.Time
	UpdatedAt               time.Time
}

// Incident is an incidents row, written for issues posted with type INCIDENT (same id).
type Incident struct {
	ID              string
	IncidentKey     string
	ScopeID         string
	Table           string
	Title           string
	Description     string
	Status          string
	OriginalStatus  string
	URL             string
	Severity        string
	Component       string
	AssigneeID      string
	AssigneeName    string
	LeadTimeMinutes uint64
	CreatedDate     time.Time
	UpdatedDate     time.Time
	ResolutionDate  time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Kind is what a webhook request writes.
type Kind string

// Kinds of writes.
const (
	KindDeployment Kind = "deployments"
	KindIssue      Kind = "issues"
)

type writeKey struct {
	conn uint64
	kind Kind
	id   string
}

// store holds DevLake's tables. The caller holds the fake's lock.
type store struct {
	deployments  map[string]Deployment
	commits      map[string]DeploymentCommit
	issues       map[string]Issue
	incidents    map[string]Incident
	boards       map[string]bool
	pullRequests map[string]PullRequest
	writes       map[writeKey]int
}

func newStore() *store {
	return &store{deployments: map[string]Deployment{}, commits: map[string]DeploymentCommit{},
		issues: map[string]Issue{}, incidents: map[string]Incident{}, boards: map[string]bool{},
		pullRequests: map[string]PullRequest{},
		writes:       map[writeKey]int{}}
}

func scopeID(conn uint64) string { return fmt.Sprintf("webhook:%d", conn) }

// CommitRowID returns DevLake's cicd_deployment_commits id for a commit of a deployment.
func CommitRowID(conn uint64, deploymentID, repoURL, sha string) string {
	sum := md5.Sum([]byte(repoURL))
	return fmt.Sprintf("webhook:%d:%s:%s:%s", conn, deploymentID, hex.EncodeToString(sum[:])[:16], sha)
}

// IssueRowID returns DevLake's issues (and incidents) id for an issue key on a connection.
func IssueRowID(conn uint64, issueKey string) string {
	return fmt.Sprintf("webhook:%d:%s", conn, issueKey)
}

// upsertDeployment writes one validated deployment request in one "transaction": every commit row,
// then the deployment row. Every column takes the posted value, omitted ones their default.
func (s *store) upsertDeployment(conn uint64, d deploymentReq, now time.Time) {
	scope := scopeID(conn)
	duration := func(a, b time.Time) float64 { return float64(b.Sub(a).Milliseconds() / 1000) }
	for _, c := range d.commits {
		id := CommitRowID(conn, d.id, c.repoURL, c.commitSha)
		row := DeploymentCommit{
			ID: id, CicdDeploymentID: d.id, CicdScopeID: scope, RepoURL: c.repoURL, RepoID: c.repoID,
			CommitSha: c.commitSha, CommitMsg: c.commitMsg, RefName: c.refName, Name: c.name,
			DisplayTitle: c.displayTitle, Result: c.result, Status: c.status, Environment: d.environment,
			OriginalEnvironment: d.originalEnvironment, CreatedDate: c.createdDate, StartedDate: c.startedDate,
			FinishedDate: c.finishedDate, DurationSec: duration(c.startedDate, c.finishedDate),
			CreatedAt: now, UpdatedAt: now,
		}
		if old, ok := s.commits[id]; ok {
			row.CreatedAt = old.CreatedAt
		}
		s.commits[id] = row
	}
	first := d.commits[0]
	row := Deployment{
		ID: d.id, CicdScopeID: scope, Name: d.name, DisplayTitle: d.displayTitle, Result: d.result,
		Status: "DONE", Environment: d.environment, OriginalEnvironment: d.originalEnvironment,
		CreatedDate: d.createdDate, StartedDate: d.startedDate, FinishedDate: d.finishedDate,
		DurationSec: duration(d.startedDate, d.finishedDate), RepoURL: first.repoURL, CommitSha: first.commitSha,
		CreatedAt: now, UpdatedAt: now,
	}
	if old, ok := s.deployments[d.id]; ok {
		row.CreatedAt = old.CreatedAt
	}
	s.deployments[d.id] = row
	s.writes[writeKey{conn, KindDeployment, d.id}]++
}

func (s *store) upsertIssue(conn uint64, r issueReq, now time.Time) {
	id := IssueRowID(conn, r.issueKey)
	board := scopeID(conn)
	s.boards[board] = true
	ns := func(v string) string {
		if v == "" {
			return ""
		}
		return fmt.Sprintf("webhook:%d:%s", conn, v)
	}
	row := Issue{
		ID: id, BoardID: board, IssueKey: r.issueKey, Title: r.title, Description: r.description, Type: r.typ,
		Status: r.status, OriginalStatus: r.originalStatus, URL: r.url, Severity: r.severity,
		Priority: r.priority, Component: r.component, CreatorID: ns(r.creatorID), CreatorName: r.creatorName,
		AssigneeID: ns(r.assigneeID), AssigneeName: r.assigneeName, ParentIssueKey: r.parentIssueKey,
		EpicKey: r.epicKey, StoryPoint: r.storyPoint, OriginalEstimateMinutes: r.originalEstimateMinutes,
		TimeSpentMinutes: r.timeSpentMinutes, TimeRemainingMinutes: r.timeRemainingMinutes,
		LeadTimeMinutes: r.leadTimeMinutes, CreatedDate: r.createdDate, UpdatedDate: r.updatedDate,
		ResolutionDate: r.resolutionDate, CreatedAt: now, UpdatedAt: now,
	}
	if row.LeadTimeMinutes == 0 && !r.createdDate.IsZero() && !r.resolutionDate.IsZero() && r.resolutionDate.After(r.createdDate) {
		row.LeadTimeMinutes = uint64(r.resolutionDate.Sub(r.createdDate) / time.Minute)
	}
	if old, ok := s.issues[id]; ok {
		row.CreatedAt = old.CreatedAt
	}
	s.issues[id] = row
	if r.typ == "INCIDENT" {
		inc := Incident{
			ID: id, IncidentKey: r.issueKey, ScopeID: board, Table: "boards", Title: row.Title,
			Description: row.Description, Status: row.Status, OriginalStatus: row.OriginalStatus, URL: row.URL,
			Severity: row.Severity, Component: row.Component, AssigneeID: row.AssigneeID,
			AssigneeName: row.AssigneeName, LeadTimeMinutes: row.LeadTimeMinutes, CreatedDate: row.CreatedDate,
			UpdatedDate: row.UpdatedDate, ResolutionDate: row.ResolutionDate, CreatedAt: now, UpdatedAt: now,
		}
		if old, ok := s.incidents[id]; ok {
			inc.CreatedAt = old.CreatedAt
		}
		s.incidents[id] = inc
	}
	s.writes[writeKey{conn, KindIssue, r.issueKey}]++
}

// closeIssue is the /close endpoint as v1.0.3 implements it: DONE, originalStatus blanked, and no
// resolution date or lead time.
func (s *store) closeIssue(conn uint64, issueKey string, now time.Time) bool {
	id := IssueRowID(conn, issueKey)
	row, ok := s.issues[id]
	if !ok {
		return false
	}
	row.Status, row.OriginalStatus, row.UpdatedAt = "DONE", "", now
	s.issues[id] = row
	if inc, ok := s.incidents[id]; ok {
		inc.Status, inc.OriginalStatus, inc.UpdatedAt = "DONE", "", now
		s.incidents[id] = inc
	}
	return true
}

func sortedValues[T any](m map[string]T, keep func(T) bool) []T {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if keep(v) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}
