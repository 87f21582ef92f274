// Package detect turns the current state of one Argo CD Application, compared with what was
// persisted about it, into the events to publish (argocd.md §3): a DeploymentObserved for every new
// status.history entry (deploy, redeploy or rollback) and for every sync operation that ended Failed
// or Error on a new revision, and a ChangeFailureSignal for rollbacks and for health turning Degraded
// or Missing within a window after a deployment, followed by a recovery signal.
//
// It is pure: no clock (the caller passes now), no I/O, no logging. The same State and Application
// always give the same Result, so relists, restarts and replays are harmless.
package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

// Source is the Source of every event: the system that observed it.
const Source = "argocd"

// Argo CD health and operation values that detection reads.
const (
	HealthHealthy  = "Healthy"
	HealthDegraded = "Degraded"
	HealthMissing  = "Missing"
	PhaseFailed    = "Failed"
	PhaseError     = "Error"
	PhaseSucceeded = "Succeeded"
)

// Config is what detection needs to know besides the Application.
type Config struct {
	// Instance names the Argo CD instance; part of every event ID.
	Instance string
	// KnownClusters are matched as the suffix of <component>-<cluster> names (longest wins).
	KnownClusters []string
	// Clusters maps a destination name or server URL to a cluster name.
	Clusters map[string]string
	// ComponentsToIgnore never produce events (exact component names).
	ComponentsToIgnore []string
	// Environments map source path segments to environments, first match wins.
	Environments []EnvironmentRule
	// ProjectTeams maps an AppProject to a team when the application has no team label.
	ProjectTeams map[string]string
	// ComponentRepos maps a component to its source repository.
	ComponentRepos map[string]string
	// ImageRepos map image repositories to source repositories.
	ImageRepos []ImageRepo
	// TagPatterns find application commits in image tags; each has a named group "sha".
	TagPatterns []*regexp.Regexp
	// DegradedWindow is how long after a deployment a Degraded or Missing health is its failure.
	DegradedWindow time.Duration
	// DegradedGrace is how long health must stay Degraded or Missing before it counts, so a
	// self-healing blip is not a change failure.
	DegradedGrace time.Duration
	// Backfill emits the existing history of an application seen for the first time, marked
	// Backfill; otherwise its newest entry is only recorded as the baseline.
	Backfill bool
	// WatchingSince is when this instance was first watched. An application created after it is new:
	// all of its history happened while doraflow was responsible, so it is emitted as live events
	// even if the watcher was down when the application appeared.
	WatchingSince time.Time
	// ImageSettleTimeout bounds how long a new history entry is held while its rollout settles
	// (health Progressing, or the live images still exactly the previous deployment's), so that
	// status.summary.images shows the new revision's images; 0 publishes at once.
	ImageSettleTimeout time.Duration
	// Remember bounds the history entries kept in State for redeploy and rollback detection.
	Remember int
}

// State is what is persisted about one Application incarnation (one UID) between calls.
type State struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// LastHistoryID is the highest status.history id processed; -1 before the first entry.
	LastHistoryID int64 `json:"last_history_id"`
	// Entries are the most recent processed history entries, ascending.
	Entries []Entry `json:"entries,omitempty"`
	// LastFailedOperation is the start of the last Failed/Error operation seen.
	LastFailedOperation time.Time `json:"last_failed_operation,omitzero"`
	// Watch is the health window of the latest deployment, while it is open.
	Watch *Watch `json:"watch,omitempty"`
	// Open are change failures waiting for the application to be Healthy again.
	Open []Failure `json:"open,omitempty"`
	// Images are the images the latest published deployment resolved (one version per repository,
	// every candidate of a repository it could not tell apart); the baseline's live images on first
	// sight. A rollout's old images are told from its new ones by them (argocd.md §3.8).
	Images []events.Image `json:"images,omitempty"`
	// Held is the newest history entry while its rollout settles (ImageSettleTimeout), not yet
	// published; persisted, so a restart neither loses nor repeats it.
	Held *Held `json:"held,omitempty"`
}

// Entry is a processed history entry.
type Entry struct {
	ID int64 `json:"id"`
	// Fingerprint hashes what the entry deployed: revision(s) and source(s) with their overrides.
	Fingerprint string      `json:"fingerprint"`
	Kind        events.Kind `json:"kind,omitempty"` // empty for baseline entries
	FinishedAt  time.Time   `json:"finished_at,omitzero"`
}

// Watch is the degraded-after-deploy window of the latest deployment.
type Watch struct {
	HistoryID  int64     `json:"history_id"`
	FinishedAt time.Time `json:"finished_at"`
	Until      time.Time `json:"until"`
	// DegradedSince is when Degraded/Missing was first seen, for Argo CD releases that do not record
	// health.lastTransitionTime.
	DegradedSince time.Time `json:"degraded_since,omitzero"`
}

// Failure is a change failure signalled and not yet recovered.
type Failure struct {
	DeploymentID         string           `json:"deployment_id"`
	Detection            events.Detection `json:"detection"`
	DetectedAt           time.Time        `json:"detected_at"`
	DeploymentFinishedAt time.Time        `json:"deployment_finished_at,omitzero"`
	RelatedID            string           `json:"related_id,omitempty"`
	Reason               string           `json:"reason"`
}

// Skip reasons: conditions seen but deliberately not published.
const (
	SkipIgnoredComponent   = "ignored_component"
	SkipCancelledOperation = "cancelled_operation"
	SkipFailedSameRevision = "failed_same_revision"
	SkipDryRun             = "dry_run"
	SkipOperationNoStart   = "operation_without_start"
	SkipEntryWithoutTime   = "history_entry_without_time"
	// SkipNoRevision: a history entry with neither revision nor revisions deployed nothing we can
	// name; it is malformed, not a production deployment of nothing.
	SkipNoRevision   = "no_revision"
	SkipInvalidEvent = "invalid_event"
)

// Result is the outcome of one Detect call.
type Result struct {
	// Events to publish, in order; the new State may be persisted only after all were published.
	Events []events.Event
	State  State
	// FirstSight is set when no state existed for this UID.
	FirstSight bool
	// Gap counts history entries lost to truncation since the last call (revisionHistoryLimit).
	Gap int64
	// Skipped names conditions seen but not published (Skip* reasons), one per occurrence.
	Skipped []string
	// Unresolved names fields of published deployments no rule could resolve: cluster, environment.
	Unresolved []string
	// RecheckAfter asks to call Detect again after this long even without a change (grace period,
	// a held entry's bound).
	RecheckAfter time.Duration
	// Held names why a new entry was held (HoldProgressing, HoldUnchangedImages), one per entry.
	Held []string
	// Released names why held entries were published (ReleaseSettled, ReleaseTimeout,
	// ReleaseSuperseded, ReleaseRecreated), one per entry.
	Released []string
	// Problems are defects found while detecting (an unparsable image, an invalid event), for the
	// malformed-application metric and logs.
	Problems []argocd.Problem
}

// ReasonInvalidEvent names an Application whose events would not validate (a Problem reason).
const ReasonInvalidEvent argocd.Reason = "invalid_event"

// ReasonNoRevision names an Application with a history entry that has no revision (a Problem reason).
const ReasonNoRevision argocd.Reason = "no_revision"

type mode int

const (
	modeLive mode = iota
	modeBackfill
	modeBaseline
)

// Detect compares app with prev (nil when nothing is persisted for it) at time now.
func (c *Config) Detect(prev *State, app argocd.Application, now time.Time) Result {
	now = now.UTC()
	res := Result{}
	var st State
	m := modeLive
	if prev != nil && prev.UID != app.UID && prev.Held != nil {
		// Recreated while an entry of the old incarnation was held: that deployment happened.
		old := prev.clone()
		c.supersede(&res, &old, ReleaseRecreated)
	}
	if prev == nil || prev.UID != app.UID {
		res.FirstSight = true
		st = State{UID: app.UID, LastHistoryID: -1}
		switch {
		case !c.WatchingSince.IsZero() && !app.CreatedAt.IsZero() &&
			!app.CreatedAt.Before(c.WatchingSince.Truncate(time.Second)):
			m = modeLive // created while we were responsible for it
		case c.Backfill:
			m = modeBackfill
		default:
			m = modeBaseline
		}
	} else {
		st = prev.clone()
	}
	st.Namespace, st.Name = app.Namespace, app.Name
	r := c.route(app)
	ignored := c.ignored(r.Component)

	c.history(&res, &st, app, r, m, now)
	c.failedOperation(&res, &st, app, r, m, now)
	c.health(&res, &st, app, r, now)

	if ignored {
		if len(res.Events) > 0 {
			res.Skipped = append(res.Skipped, SkipIgnoredComponent)
		}
		res.Events, res.Unresolved, res.RecheckAfter, res.Held, res.Released = nil, nil, 0, nil, nil
		st.Watch, st.Open, st.Held = nil, nil, nil
	}
	res.Events = c.valid(&res, res.Events)
	res.State = st
	return res
}

func (s State) clone() State {
	c := s
	c.Entries = slices.Clone(s.Entries)
	c.Open = slices.Clone(s.Open)
	// Images is shared: it is only ever replaced, never changed in place.
	if s.Held != nil {
		h := *s.Held
		c.Held = &h
	}
	if s.Watch != nil {
		w := *s.Watch
		c.Watch = &w
	}
	return c
}

func (c *Config) remember() int { return max(c.Remember, 20) }

func (c *Config) history(res *Result, st *State, app argocd.Application, r route, m mode, now time.Time) {
	if m == modeBaseline {
		for _, e := range app.History {
			st.Entries = append(st.Entries, Entry{ID: e.ID, Fingerprint: fingerprint(e), FinishedAt: e.DeployedAt})
			st.LastHistoryID = e.ID
		}
		st.trim(c.remember())
		st.Images = c.images(res, app)
		return
	}
	var fresh []argocd.HistoryEntry
	for _, e := range app.History {
		if e.ID > st.LastHistoryID {
			fresh = append(fresh, e)
		}
	}
	if len(fresh) == 0 {
		if st.Held != nil {
			c.settle(res, st, app, now)
		}
		return
	}
	c.supersede(res, st, ReleaseSuperseded)
	if m == modeLive && fresh[0].ID > st.LastHistoryID+1 {
		// Entries were truncated away while we were not looking. What they deployed is unknown, so
		// the first entry after the gap has no known predecessor: forget the entries before it
		// rather than guess a redeploy or a rollback.
		res.Gap = fresh[0].ID - st.LastHistoryID - 1
		st.Entries = nil
	}
	var newest *events.DeploymentObserved
	var live []events.Image
	for i, e := range fresh {
		if e.Revision == "" && len(e.Revisions) == 0 {
			st.LastHistoryID = e.ID // seen once: counted and logged now, never again
			res.Skipped = append(res.Skipped, SkipNoRevision)
			res.Problems = append(res.Problems, argocd.Problem{Reason: ReasonNoRevision,
				Detail: fmt.Sprintf("status.history entry %d has no revision", e.ID)})
			continue
		}
		fp := fingerprint(e)
		kind, rollbackOf := classify(st.Entries, fp)
		var prevEntry *Entry
		if n := len(st.Entries); n > 0 {
			p := st.Entries[n-1]
			prevEntry = &p
		}
		st.Entries = append(st.Entries, Entry{ID: e.ID, Fingerprint: fp, Kind: kind, FinishedAt: e.DeployedAt})
		st.LastHistoryID = e.ID
		if e.DeployedAt.IsZero() {
			res.Skipped = append(res.Skipped, SkipEntryWithoutTime)
			continue
		}
		d := c.deployment(app, r, e, kind, m == modeBackfill, now)
		if prevEntry != nil {
			d.Previous = c.id(app, prevEntry.ID)
		}
		if rollbackOf != nil {
			d.RollbackOf = c.id(app, rollbackOf.ID)
		}
		var f *Failure
		var sig *events.ChangeFailureSignal
		if kind == events.KindRollback && prevEntry != nil {
			f = &Failure{
				DeploymentID: c.id(app, prevEntry.ID), Detection: events.DetectionRollback,
				DetectedAt: e.DeployedAt, DeploymentFinishedAt: prevEntry.FinishedAt, RelatedID: d.ID,
				Reason: fmt.Sprintf("rolled back by history entry %d to the state of entry %d", e.ID, rollbackOf.ID),
			}
			sig = c.signal(app, r, d.Environment, *f, time.Time{})
		}
		newest = nil
		if i == len(fresh)-1 {
			// Live pods show the newest state; older entries caught up in the same call get no images.
			live = c.images(res, app)
			reason := ""
			if m == modeLive && c.ImageSettleTimeout > 0 && now.Before(e.DeployedAt.Add(c.ImageSettleTimeout)) && !c.ignored(r.Component) {
				reason = c.holdReason(app, kind, live, st.Images)
			}
			if reason != "" {
				c.hold(res, st, app, r, d, f, sig, reason, now)
			} else {
				newest = &d
			}
		}
		if st.Held == nil || st.Held.Deployment.ID != d.ID {
			res.Events = append(res.Events, &d)
			if sig != nil {
				res.Events = append(res.Events, sig)
				st.Open = append(st.Open, *f)
			}
		}
		if d.Cluster == UnknownCluster || d.Environment == events.EnvironmentUnknown {
			if d.Cluster == UnknownCluster {
				res.Unresolved = append(res.Unresolved, "cluster")
			}
			if d.Environment == events.EnvironmentUnknown {
				res.Unresolved = append(res.Unresolved, "environment")
			}
		}
	}
	st.trim(c.remember())
	if newest != nil {
		c.attachImages(newest, st, r, live)
	}
	last := fresh[len(fresh)-1]
	st.Watch = nil
	if until := last.DeployedAt.Add(c.DegradedWindow); c.DegradedWindow > 0 && now.Before(until) && !last.DeployedAt.IsZero() {
		st.Watch = &Watch{HistoryID: last.ID, FinishedAt: last.DeployedAt, Until: until}
	}
}

func (s *State) trim(n int) {
	if len(s.Entries) > n {
		s.Entries = slices.Clone(s.Entries[len(s.Entries)-n:])
	}
}

// classify says what a new entry with fingerprint fp does relative to the entries before it:
//   - redeploy: the same state as the previous entry;
//   - rollback: the state of an older, non-adjacent entry that was first deployed before the
//     state it replaces (A B A, A B C B);
//   - deploy: a new state, or a roll-forward to a state that came after the one it replaces
//     (A B A B: the last B undoes the rollback).
func classify(entries []Entry, fp string) (events.Kind, *Entry) {
	n := len(entries)
	if n == 0 {
		return events.KindDeploy, nil
	}
	prev := entries[n-1]
	if prev.Fingerprint == fp {
		return events.KindRedeploy, nil
	}
	var match *Entry
	for i := n - 2; i >= 0; i-- {
		if entries[i].Fingerprint == fp {
			match = &entries[i]
			break
		}
	}
	if match == nil {
		return events.KindDeploy, nil
	}
	if firstIndex(entries, fp) < firstIndex(entries, prev.Fingerprint) {
		m := *match
		return events.KindRollback, &m
	}
	return events.KindDeploy, nil
}

func firstIndex(entries []Entry, fp string) int {
	return slices.IndexFunc(entries, func(e Entry) bool { return e.Fingerprint == fp })
}

// fingerprint identifies what a history entry deployed: its revision(s) and its source(s),
// including Helm/Kustomize overrides, so the same revision with different overrides is a change.
func fingerprint(e argocd.HistoryEntry) string {
	b, _ := json.Marshal(struct {
		R  string
		RS []string
		S  *argocd.Source
		SS []argocd.Source
	}{e.Revision, e.Revisions, e.Source, e.Sources})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func (c *Config) id(app argocd.Application, historyID int64) string {
	return events.DeploymentID(c.Instance, app.UID, historyID)
}

func entrySources(e argocd.HistoryEntry) []argocd.Source {
	if len(e.Sources) > 0 {
		return e.Sources
	}
	if e.Source != nil {
		return []argocd.Source{*e.Source}
	}
	return nil
}

func toEventSources(srcs []argocd.Source) []events.Source {
	var out []events.Source
	for _, s := range srcs {
		out = append(out, events.Source{RepoURL: s.RepoURL, Path: s.Path, TargetRevision: s.TargetRevision, Chart: s.Chart, Ref: s.Ref})
	}
	return out
}

func (c *Config) base(app argocd.Application, r route, sources []argocd.Source) events.DeploymentObserved {
	env, orig := c.environment(app, sources, r)
	return events.DeploymentObserved{
		Source: Source, Instance: c.Instance, Cluster: r.Cluster, Namespace: app.Namespace,
		Application: app.Name, Component: r.Component, Environment: env, OriginalEnvironment: orig,
		Team: r.Team, Labels: app.Labels,
	}
}

func (c *Config) deployment(app argocd.Application, r route, e argocd.HistoryEntry, kind events.Kind, backfill bool, now time.Time) events.DeploymentObserved {
	srcs := entrySources(e)
	d := c.base(app, r, srcs)
	d.ID = c.id(app, e.ID)
	d.Kind, d.Result = kind, events.ResultSuccess
	d.Revision, d.Revisions, d.Sources = e.Revision, e.Revisions, toEventSources(srcs)
	d.StartedAt, d.FinishedAt, d.ObservedAt = e.StartedAt, e.DeployedAt, now
	if d.StartedAt.After(d.FinishedAt) {
		d.StartedAt = time.Time{} // clock skew in the controller; a finish before the start is no duration
	}
	d.Backfill = backfill
	d.ArgoCD = &events.ArgoCDRef{UID: app.UID, HistoryID: e.ID, OperationStartedAt: e.StartedAt,
		Project: app.Project, Phase: PhaseSucceeded, InitiatedBy: e.InitiatedBy, Automated: e.Automated}
	return d
}

func (c *Config) images(res *Result, app argocd.Application) []events.Image {
	return c.parseImages(res, app.Images)
}

// parseImages parses image references, reporting unparsable ones in res (when not nil).
func (c *Config) parseImages(res *Result, refs []string) []events.Image {
	var out []events.Image
	for _, ref := range refs {
		img, err := ParseImage(ref)
		if err != nil {
			if res != nil {
				res.Problems = append(res.Problems, argocd.Problem{Reason: argocd.ReasonBadImage, Detail: err.Error()})
			}
			continue
		}
		out = append(out, img)
	}
	return out
}

// failedOperation reports a sync operation that ended Failed or Error on a revision other than the
// deployed one (argocd.md §3.5). It adds no history entry and is keyed by its start time.
func (c *Config) failedOperation(res *Result, st *State, app argocd.Application, r route, m mode, now time.Time) {
	op := app.Operation
	if op == nil || (op.Phase != PhaseFailed && op.Phase != PhaseError) || op.FinishedAt.IsZero() {
		return
	}
	if op.StartedAt.IsZero() {
		res.Skipped = append(res.Skipped, SkipOperationNoStart)
		return
	}
	if !op.StartedAt.After(st.LastFailedOperation) {
		return // already seen
	}
	if m != modeBaseline {
		c.supersede(res, st, ReleaseSuperseded) // the entry before a later operation goes first
	}
	st.LastFailedOperation = op.StartedAt
	switch {
	case m == modeBaseline:
		return
	case op.DryRun:
		res.Skipped = append(res.Skipped, SkipDryRun)
		return
	case strings.HasPrefix(op.Message, "Operation terminated"):
		// A terminated operation ends Failed; it was cancelled, not a failed deployment.
		res.Skipped = append(res.Skipped, SkipCancelledOperation)
		return
	}
	if n := len(app.History); n > 0 {
		latest := app.History[n-1]
		if op.Revision == latest.Revision && slices.Equal(op.Revisions, latest.Revisions) {
			res.Skipped = append(res.Skipped, SkipFailedSameRevision)
			return
		}
	}
	// The sources being synced: the Application's (an operation syncs spec.source(s)).
	d := c.base(app, r, app.Sources)
	d.ID = events.FailedOperationID(c.Instance, app.UID, op.StartedAt)
	d.Kind, d.Result = events.KindDeploy, events.ResultFailure
	d.Revision, d.Revisions, d.Sources = op.Revision, op.Revisions, toEventSources(app.Sources)
	d.StartedAt, d.FinishedAt, d.ObservedAt = op.StartedAt, op.FinishedAt, now
	if d.StartedAt.After(d.FinishedAt) {
		d.StartedAt = time.Time{}
	}
	d.Message = op.Message
	d.Backfill = m == modeBackfill
	if n := len(app.History); n > 0 {
		d.Previous = c.id(app, app.History[n-1].ID)
	}
	d.ArgoCD = &events.ArgoCDRef{UID: app.UID, OperationStartedAt: op.StartedAt, Project: app.Project,
		Phase: op.Phase, InitiatedBy: op.InitiatedBy, Automated: op.Automated}
	res.Events = append(res.Events, &d)
}

// health watches the latest deployment's window for Degraded/Missing (argocd.md §3.6) and closes open
// failures when the application is Healthy again.
func (c *Config) health(res *Result, st *State, app argocd.Application, r route, now time.Time) {
	if w := st.Watch; w != nil {
		latest := int64(-1)
		if n := len(app.History); n > 0 {
			latest = app.History[n-1].ID
		}
		switch {
		case latest != w.HistoryID:
			st.Watch = nil // superseded (or history rewritten): the window belongs to another entry
		case app.Health == HealthDegraded || app.Health == HealthMissing:
			since := app.HealthChangedAt
			if since.IsZero() {
				if w.DegradedSince.IsZero() {
					w.DegradedSince = now
				}
				since = w.DegradedSince
			}
			switch {
			case since.Before(w.FinishedAt):
				// Degraded since before this deployment: it did not cause it. Keep watching.
			case since.After(w.Until):
				st.Watch = nil
			case now.Sub(since) < c.DegradedGrace:
				res.recheck(c.DegradedGrace - now.Sub(since))
			default:
				f := Failure{
					DeploymentID: c.id(app, w.HistoryID), Detection: events.DetectionDegraded,
					DetectedAt: since, DeploymentFinishedAt: w.FinishedAt,
					Reason: fmt.Sprintf("health %s %s after deployment", app.Health, since.Sub(w.FinishedAt).Round(time.Second)),
				}
				res.Events = append(res.Events, c.signal(app, r, c.latestEnvironment(app, r), f, time.Time{}))
				st.Open = append(st.Open, f)
				st.Watch = nil
			}
		default:
			w.DegradedSince = time.Time{}
			if now.After(w.Until) {
				st.Watch = nil
			}
		}
	}
	// While an entry is held, recoveries wait for it, so that events keep their order.
	if app.Health == HealthHealthy && len(st.Open) > 0 && st.Held == nil {
		at := app.HealthChangedAt
		env := c.latestEnvironment(app, r)
		for _, f := range st.Open {
			rec := at
			switch {
			case !rec.IsZero():
			case f.Detection == events.DetectionRollback:
				// Without a recorded health transition, a rollback's failure ended when the rollback
				// was deployed: a world time, not when we looked (after downtime, days later).
				rec = f.DetectedAt
			default:
				rec = now
			}
			res.Events = append(res.Events, c.signal(app, r, env, f, maxTime(rec, f.DetectedAt)))
		}
		st.Open = nil
	}
}

func (c *Config) latestEnvironment(app argocd.Application, r route) events.Environment {
	var srcs []argocd.Source
	if n := len(app.History); n > 0 {
		srcs = entrySources(app.History[n-1])
	}
	env, _ := c.environment(app, srcs, r)
	return env
}

func (c *Config) signal(app argocd.Application, r route, env events.Environment, f Failure, recovered time.Time) *events.ChangeFailureSignal {
	return &events.ChangeFailureSignal{
		ID:           events.ChangeFailureID(f.DeploymentID, f.Detection, !recovered.IsZero()),
		DeploymentID: f.DeploymentID, Source: Source, Instance: c.Instance, Cluster: r.Cluster,
		Namespace: app.Namespace, Application: app.Name, Component: r.Component, Environment: env,
		Team: r.Team, Detection: f.Detection, Reason: f.Reason, DetectedAt: f.DetectedAt,
		DeploymentFinishedAt: f.DeploymentFinishedAt, RecoveredAt: recovered, RelatedID: f.RelatedID,
	}
}

// valid drops events that would not pass validation, so that one odd Application can never block its
// key in a retry loop; each is reported in Skipped and Problems.
func (c *Config) valid(res *Result, evs []events.Event) []events.Event {
	out := evs[:0]
	for _, ev := range evs {
		if err := ev.Validate(); err != nil {
			res.Skipped = append(res.Skipped, SkipInvalidEvent)
			res.Problems = append(res.Problems, argocd.Problem{Reason: ReasonInvalidEvent, Detail: err.Error()})
			continue
		}
		out = append(out, ev)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
