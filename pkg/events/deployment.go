package events

import (
	"path"
	"time"
)

// Result is the outcome of a deployment attempt.
type Result string

// Results.
const (
	ResultSuccess Result = "success"
	ResultFailure Result = "failure"
)

// Kind says what a deployment did relative to the one before it.
type Kind string

// Kinds.
const (
	// KindDeploy is a deployment of a new state (revision, sources, overrides or images).
	KindDeploy Kind = "deploy"
	// KindRedeploy is a new history entry whose state equals the previous entry's: a re-sync of an
	// unchanged application. It is a real event but not a change: no lead time, excluded from DF.
	KindRedeploy Kind = "redeploy"
	// KindRollback returns to the state of an earlier, non-adjacent entry, or is a revert.
	KindRollback Kind = "rollback"
)

// Environment is one of DevLake's four environments in lower case, or unknown.
type Environment string

// Environments.
const (
	EnvironmentProduction  Environment = "production"
	EnvironmentStaging     Environment = "staging"
	EnvironmentTesting     Environment = "testing"
	EnvironmentDevelopment Environment = "development"
	// EnvironmentUnknown means no rule matched. Such deployments are excluded from DORA numbers and
	// counted as a data-quality miss; doraflow never defaults an environment to production.
	EnvironmentUnknown Environment = "unknown"
)

var environments = []string{
	string(EnvironmentProduction), string(EnvironmentStaging), string(EnvironmentTesting),
	string(EnvironmentDevelopment), string(EnvironmentUnknown),
}

// DeploymentObserved reports one deployment attempt as a source saw it, before enrichment: a new
// Argo CD history entry (result success), or a sync operation that ended Failed or Error (result
// failure, no history entry).
type DeploymentObserved struct {
	// ID is deterministic: DeploymentID for history entries, FailedOperationID for failed operations.
	ID string `json:"id"`
	// Source is the system that observed the deployment: "argocd".
	Source string `json:"source"`
	// Instance names the Argo CD instance (one per control plane), qualifying in-cluster destinations.
	Instance    string      `json:"instance"`
	Cluster     string      `json:"cluster"`
	Namespace   string      `json:"namespace"`
	Application string      `json:"application"`
	Component   string      `json:"component"`
	Environment Environment `json:"environment"`
	// OriginalEnvironment is the environment as the source named it (a path segment or label value).
	OriginalEnvironment string `json:"original_environment,omitempty"`
	// Team is set when the application names its team (the doraflow.io/team label).
	Team   string `json:"team,omitempty"`
	Kind   Kind   `json:"kind"`
	Result Result `json:"result"`
	// Revision is the GitOps revision of a single-source application: a config-repo commit, a chart
	// version or an OCI digest. It is not the application commit.
	Revision string `json:"revision,omitempty"`
	// Revisions are the revisions of a multi-source application, index-aligned with Sources.
	Revisions []string `json:"revisions,omitempty"`
	Sources   []Source `json:"sources,omitempty"`
	// Images are the images of the application's live pods.
	Images []Image `json:"images,omitempty"`
	// AppCommits are the application commits found for this deployment (from image tags,
	// annotations or configuration), one per repository.
	AppCommits []CommitRef `json:"app_commits,omitempty"`
	StartedAt  time.Time   `json:"started_at,omitzero"`
	FinishedAt time.Time   `json:"finished_at"`
	// ObservedAt is when doraflow saw the deployment; FinishedAt is when it happened.
	ObservedAt time.Time `json:"observed_at,omitzero"`
	// Message is the operation's message, kept for failed deployments.
	Message string `json:"message,omitempty"`
	// Previous is the ID of the deployment this one superseded, when known.
	Previous string `json:"previous,omitempty"`
	// RollbackOf is, for a rollback, the ID of the earlier deployment whose state it returns to.
	RollbackOf string `json:"rollback_of,omitempty"`
	// Backfill marks deployments emitted from existing history on first sight, not seen live.
	Backfill bool `json:"backfill,omitempty"`
	// ArgoCD holds the Argo CD identifiers behind the event.
	ArgoCD *ArgoCDRef        `json:"argocd,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Flags are data-quality conditions the source found (QualityAmbiguousImage); the enricher
	// carries them into DeploymentEnriched.Quality.
	Flags []QualityFlag `json:"flags,omitempty"`
}

// ArgoCDRef identifies the Argo CD objects behind a deployment.
type ArgoCDRef struct {
	UID string `json:"uid"`
	// HistoryID is the status.history id (Argo CD counts from 0, so it is always sent). A failed
	// operation adds no history entry: its HistoryID is 0 and its result is failure.
	HistoryID          int64     `json:"history_id"`
	OperationStartedAt time.Time `json:"operation_started_at,omitzero"`
	Project            string    `json:"project,omitempty"`
	// Phase is the final phase of the sync operation (Succeeded, Failed, Error).
	Phase string `json:"phase,omitempty"`
	// InitiatedBy is the user who started the operation; empty for automated syncs.
	InitiatedBy string `json:"initiated_by,omitempty"`
	Automated   bool   `json:"automated,omitempty"`
}

// Source is one source of an Argo CD application.
type Source struct {
	RepoURL        string `json:"repo_url"`
	Path           string `json:"path,omitempty"`
	TargetRevision string `json:"target_revision,omitempty"`
	Chart          string `json:"chart,omitempty"`
	Ref            string `json:"ref,omitempty"`
}

// Image is a container image reference, split by a grammar-aware parser.
type Image struct {
	Ref        string `json:"ref"`
	Repository string `json:"repository"` // registry host and path, such as quay.io/org/app
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
}

// CommitRef is an application commit found for a deployment, before enrichment.
type CommitRef struct {
	SHA     string `json:"sha"`
	RepoURL string `json:"repo_url,omitempty"` // empty when no rule maps the image to a repository
	// Via says how the commit was found: image_tag, annotation, label or config.
	Via   string `json:"via"`
	Image string `json:"image,omitempty"`
}

// Meta implements Event.
func (d DeploymentObserved) Meta() Meta {
	return Meta{ID: d.ID, Type: TypeDeploymentObserved, Subject: SubjectDeploymentObserved,
		About: path.Join(d.Cluster, d.Namespace, d.Application), Time: d.FinishedAt}
}

// Validate implements Event.
func (d DeploymentObserved) Validate() error {
	var p problems
	d.validateInto(&p)
	return p.err("deployment")
}

func (d DeploymentObserved) validateInto(p *problems) {
	p.require(d.ID != "", "id", "required")
	p.require(d.Source != "", "source", "required")
	p.require(d.Application != "", "application", "required")
	p.require(d.Component != "", "component", "required")
	p.require(!d.FinishedAt.IsZero(), "finished_at", "required")
	p.require(d.StartedAt.IsZero() || !d.StartedAt.After(d.FinishedAt), "started_at", "after finished_at")
	p.oneOf("result", string(d.Result), string(ResultSuccess), string(ResultFailure))
	p.oneOf("kind", string(d.Kind), string(KindDeploy), string(KindRedeploy), string(KindRollback))
	p.oneOf("environment", string(d.Environment), environments...)
}

// QualityFlag names a data-quality condition of an enriched event. Flags never drop an event: they
// travel with it so that every number can say how far it can be trusted.
type QualityFlag string

// Quality flags.
const (
	// QualityFirstDeployment: no earlier deployment of the component in this environment and
	// repository, so only the head commit is known and no commit range was computed.
	QualityFirstDeployment QualityFlag = "first_deployment"
	// QualityNoAppSHA: no application commit could be resolved; lead time is skipped.
	QualityNoAppSHA QualityFlag = "no_app_sha"
	// QualityUnknownRepo: the commit's repository is not mapped in configuration.
	QualityUnknownRepo QualityFlag = "unknown_repo"
	// QualityRepoNotFound: GitHub answered 404 for the repository or commit.
	QualityRepoNotFound QualityFlag = "repo_not_found"
	// QualityRepoForbidden: GitHub refused access (private repository, missing permission).
	QualityRepoForbidden QualityFlag = "repo_forbidden"
	// QualityDivergedHistory: the previous and new commits have diverged (force push); no range.
	QualityDivergedHistory QualityFlag = "diverged_history"
	// QualityBehind: the new commit is an ancestor of the previous one (a rollback by revert).
	QualityBehind QualityFlag = "behind"
	// QualityNoTeam: no routing rule names a team; the event goes to the global project only.
	QualityNoTeam QualityFlag = "no_team"
	// QualityUnknownEnvironment: the environment could not be determined.
	QualityUnknownEnvironment QualityFlag = "unknown_environment"
	// QualityNoLinkedDeployment: an incident could not be linked to a causing deployment.
	QualityNoLinkedDeployment QualityFlag = "no_linked_deployment"
	// QualityAmbiguousImage: live pods ran several tags of one image repository and the source could
	// not tell which one the new revision deploys, so no commit was taken from that repository.
	QualityAmbiguousImage QualityFlag = "ambiguous_image"
	// QualityRevert: the deployment reverts earlier deployed commits (its commit is behind the
	// previous one, or its commits say "This reverts commit …"); it is a rollback.
	QualityRevert QualityFlag = "revert"
	// QualityLinkTooOld: the last deployment before an incident is older than the look-back limit,
	// so the incident is linked to nothing.
	QualityLinkTooOld QualityFlag = "link_too_old"
)

// Commit is one application commit that a deployment shipped.
type Commit struct {
	SHA         string       `json:"sha"`
	RepoURL     string       `json:"repo_url"` // canonical https://github.com/<owner>/<repo>, no .git
	Author      string       `json:"author,omitempty"`
	AuthoredAt  time.Time    `json:"authored_at,omitzero"`
	CommittedAt time.Time    `json:"committed_at,omitzero"`
	Title       string       `json:"title,omitempty"` // first line of the message
	PullRequest *PullRequest `json:"pull_request,omitempty"`
}

// PullRequest is the pull request that brought a commit into the deployed branch. Its first-commit
// time gives squash and rebase merges a correct lead time.
type PullRequest struct {
	Number        int       `json:"number"`
	URL           string    `json:"url,omitempty"`
	CreatedAt     time.Time `json:"created_at,omitzero"`
	MergedAt      time.Time `json:"merged_at,omitzero"`
	FirstCommitAt time.Time `json:"first_commit_at,omitzero"`
}

// CompareStatus is how a deployed commit relates to the previously deployed one.
type CompareStatus string

// Compare statuses, as GitHub's compare API reports them, plus "first" for no previous commit.
const (
	CompareAhead     CompareStatus = "ahead"
	CompareIdentical CompareStatus = "identical"
	CompareBehind    CompareStatus = "behind"
	CompareDiverged  CompareStatus = "diverged"
	CompareFirst     CompareStatus = "first"
)

// CommitRange records how the commit set of one repository was computed, as evidence.
type CommitRange struct {
	RepoURL string        `json:"repo_url"`
	BaseSHA string        `json:"base_sha,omitempty"` // previously deployed commit; empty when first
	HeadSHA string        `json:"head_sha"`
	Status  CompareStatus `json:"status"`
	Commits int           `json:"commits"` // number of commits in Commits from this range
}

// Routing says which DevLake projects and teams an event belongs to. It is resolved when the event
// happens and travels with it, so a later re-organisation does not rewrite history.
type Routing struct {
	Teams   []string `json:"teams,omitempty"`
	Targets []Target `json:"targets"`
}

// Target is one destination of an event: the global project or a team's project.
type Target struct {
	Scope     TargetScope `json:"scope"`
	Team      string      `json:"team,omitempty"`
	ProjectID string      `json:"project_id"`
}

// TargetScope is global or team.
type TargetScope string

// Target scopes.
const (
	ScopeGlobal TargetScope = "global"
	ScopeTeam   TargetScope = "team"
)

func (r Routing) validateInto(p *problems) {
	for _, t := range r.Targets {
		p.oneOf("routing.targets.scope", string(t.Scope), string(ScopeGlobal), string(ScopeTeam))
		p.require(t.ProjectID != "", "routing.targets.project_id", "required")
		p.require(t.Scope != ScopeTeam || t.Team != "", "routing.targets.team", "required for team scope")
	}
}

// DeploymentEnriched is a DeploymentObserved plus the exact application commits it shipped, its
// routing targets and data-quality flags. Its ID equals the observed deployment's ID.
type DeploymentEnriched struct {
	DeploymentObserved
	// Commits are the commits this deployment brought to its environment for the first time.
	Commits []Commit      `json:"commits"`
	Ranges  []CommitRange `json:"ranges,omitempty"`
	Routing Routing       `json:"routing"`
	Quality []QualityFlag `json:"quality,omitempty"`
	// Rollout places the deployment in its logical deployment (nil for failed deployments and
	// unknown environments, which are never grouped).
	Rollout *Rollout `json:"rollout,omitempty"`
	// EnrichedAt is when the enricher produced this event.
	EnrichedAt time.Time `json:"enriched_at,omitzero"`
}

// RolloutPolicy says how the deployments of one change to several clusters are counted.
type RolloutPolicy string

// Rollout policies (argocd.md §3.9).
const (
	// RolloutFirst counts a logical deployment once, at the first cluster to deploy it: deployment
	// frequency counts the change once and lead time runs to the first cluster.
	RolloutFirst RolloutPolicy = "first"
	// RolloutEach counts every cluster's deployment as a deployment of its own.
	RolloutEach RolloutPolicy = "each"
	// RolloutAll counts a logical deployment once, when the last expected cluster has it: lead
	// time runs to the last cluster.
	RolloutAll RolloutPolicy = "all"
)

// Rollout places one cluster's deployment (a child rollout) in its logical deployment: one change,
// identified by (component, environment, state fingerprint), rolled out to one or more clusters.
// Every consumer counts logical deployments, not children: DevLake receives the counted child under
// LogicalID and the exporter counts LogicalID once.
type Rollout struct {
	// LogicalID identifies the logical deployment: LogicalDeploymentID of its first child under the
	// policies first and all, the deployment's own ID under each.
	LogicalID string        `json:"logical_id"`
	Policy    RolloutPolicy `json:"policy"`
	// Fingerprint identifies the deployed state across clusters: the application commits, else the
	// GitOps revision(s).
	Fingerprint string `json:"fingerprint"`
	// Counted marks the one child that stands for the logical deployment in DORA numbers and DevLake:
	// the first cluster (first, each) or the cluster that completed the rollout (all). Only it carries
	// the logical deployment's commits.
	Counted bool `json:"counted"`
	// Clusters have the change so far, this deployment's included, in the order they deployed it.
	Clusters []string `json:"clusters"`
	// Expected are the clusters the policy all waits for.
	Expected []string `json:"expected,omitempty"`
	// Complete is set once every expected cluster has the change (policy all), and always under
	// first and each.
	Complete bool `json:"complete,omitempty"`
	// StartedAt is the first child's start: the logical deployment's start (DevLake's startedDate).
	StartedAt time.Time `json:"started_at,omitzero"`
	// FirstFinishedAt is the first child's finish.
	FirstFinishedAt time.Time `json:"first_finished_at,omitzero"`
}

// Meta implements Event.
func (d DeploymentEnriched) Meta() Meta {
	m := d.DeploymentObserved.Meta()
	m.Type, m.Subject = TypeDeploymentEnriched, SubjectDeploymentEnriched
	return m
}

// Validate implements Event.
func (d DeploymentEnriched) Validate() error {
	var p problems
	d.validateInto(&p)
	d.Routing.validateInto(&p)
	for _, c := range d.Commits {
		p.require(c.SHA != "", "commits.sha", "required")
		p.require(c.RepoURL != "", "commits.repo_url", "required")
	}
	if r := d.Rollout; r != nil {
		p.require(r.LogicalID != "", "rollout.logical_id", "required")
		p.oneOf("rollout.policy", string(r.Policy), string(RolloutFirst), string(RolloutEach), string(RolloutAll))
		p.require(r.Policy != RolloutEach || r.LogicalID == d.ID, "rollout.logical_id", "must equal id under policy each")
	}
	return p.err("enriched deployment")
}

// Detection says how a change failure was detected.
type Detection string

// Detections, strongest first: when several arrive together, the strongest names the failure.
const (
	DetectionIncident   Detection = "incident"
	DetectionRollback   Detection = "rollback"
	DetectionRevert     Detection = "revert"
	DetectionDegraded   Detection = "degraded"
	DetectionSyncFailed Detection = "sync_failed"
	DetectionManual     Detection = "manual"
)

var detections = []string{
	string(DetectionIncident), string(DetectionRollback), string(DetectionRevert),
	string(DetectionDegraded), string(DetectionSyncFailed), string(DetectionManual),
}

// ChangeFailureSignal reports that a deployment was found failed after the fact: its application
// degraded within the watch window, it was rolled back, or its sync failed part-way. A second signal
// with RecoveredAt set reports the end of the failure.
type ChangeFailureSignal struct {
	// ID is ChangeFailureID(DeploymentID, Detection, recovered).
	ID string `json:"id"`
	// DeploymentID is the ID of the deployment that failed.
	DeploymentID string      `json:"deployment_id"`
	Source       string      `json:"source"`
	Instance     string      `json:"instance,omitempty"`
	Cluster      string      `json:"cluster,omitempty"`
	Namespace    string      `json:"namespace,omitempty"`
	Application  string      `json:"application"`
	Component    string      `json:"component"`
	Environment  Environment `json:"environment"`
	Team         string      `json:"team,omitempty"`
	Detection    Detection   `json:"detection"`
	// Reason explains the detection in words: "health Degraded 4m after deployment".
	Reason string `json:"reason"`
	// DetectedAt is when the failure showed (the health transition, the rollback's finish).
	DetectedAt time.Time `json:"detected_at"`
	// DeploymentFinishedAt is the failed deployment's finish, where recovery time starts.
	DeploymentFinishedAt time.Time `json:"deployment_finished_at,omitzero"`
	// RecoveredAt is set on the recovery signal: when the application was healthy again.
	RecoveredAt time.Time `json:"recovered_at,omitzero"`
	// RelatedID is the ID of the event that revealed the failure, such as the rollback deployment.
	RelatedID string `json:"related_id,omitempty"`
}

// ChangeFailureInferred is a change failure the enricher found in commit history, which no source
// observes: a GitOps revert (the new deployment's commit is an ancestor of the previous one, or its
// commits revert deployed commits) makes the reverted deployment a failure with detection revert.
// DeploymentID and RelatedID are logical deployment IDs (Rollout.LogicalID). Its fields and ID rules
// are ChangeFailureSignal's; only the subject differs.
type ChangeFailureInferred struct {
	ChangeFailureSignal
}

// Meta implements Event.
func (s ChangeFailureInferred) Meta() Meta {
	m := s.ChangeFailureSignal.Meta()
	m.Type, m.Subject = TypeChangeFailureInferred, SubjectChangeFailureInferred
	return m
}

// Meta implements Event.
func (s ChangeFailureSignal) Meta() Meta {
	t := s.DetectedAt
	if !s.RecoveredAt.IsZero() {
		t = s.RecoveredAt
	}
	return Meta{ID: s.ID, Type: TypeChangeFailureSignal, Subject: SubjectChangeFailureDetected,
		About: s.DeploymentID, Time: t}
}

// Validate implements Event.
func (s ChangeFailureSignal) Validate() error {
	var p problems
	p.require(s.ID != "", "id", "required")
	p.require(s.DeploymentID != "", "deployment_id", "required")
	p.require(s.Source != "", "source", "required")
	p.require(s.Application != "", "application", "required")
	p.require(s.Component != "", "component", "required")
	p.require(!s.DetectedAt.IsZero(), "detected_at", "required")
	p.require(s.RecoveredAt.IsZero() || !s.RecoveredAt.Before(s.DetectedAt), "recovered_at", "before detected_at")
	p.oneOf("detection", string(s.Detection), detections...)
	p.oneOf("environment", string(s.Environment), environments...)
	return p.err("change failure signal")
}
