package argocd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Application is the small typed view of an argoproj.io/v1alpha1 Application that doraflow reads:
// only the fields detection needs (argocd.md §2). Unknown fields are ignored, so Argo CD upgrades that
// add fields do not break the watcher; absent fields are zero values.
type Application struct {
	Name        string
	Namespace   string
	UID         string
	CreatedAt   time.Time
	Labels      map[string]string
	Annotations map[string]string
	Project     string
	// Sources are spec.sources of a multi-source application, or spec.source as one element.
	Sources     []Source
	MultiSource bool
	Destination Destination
	// RevisionHistoryLimit is spec.revisionHistoryLimit; zero when unset (Argo CD keeps 10).
	RevisionHistoryLimit int64
	// History is status.history sorted by ascending ID.
	History   []HistoryEntry
	Operation *Operation
	// SyncStatus is status.sync.status: Synced, OutOfSync or Unknown.
	SyncStatus string
	// Health is status.health.status: Healthy, Progressing, Degraded, Suspended, Missing, Unknown.
	Health string
	// HealthChangedAt is status.health.lastTransitionTime; zero when Argo CD does not record it.
	HealthChangedAt time.Time
	// Images are status.summary.images: the images of the application's live pods.
	Images []string
	// Problems are non-fatal defects found while decoding, one reason each (such as an unparsable
	// image); the application is still usable.
	Problems []Problem
}

// Source is one application source: spec.source, an element of spec.sources, or the source a
// history entry or operation recorded.
type Source struct {
	RepoURL        string
	Path           string
	TargetRevision string
	Chart          string
	Ref            string
	// Overrides is a hash of the rest of the source (helm, kustomize, directory, plugin settings),
	// empty when there are none. Two sources with equal fields and Overrides deploy the same thing.
	Overrides string
}

// Destination is spec.destination.
type Destination struct {
	Server    string
	Name      string
	Namespace string
}

// HistoryEntry is one status.history entry: one successful, non-dry-run, non-selective sync.
type HistoryEntry struct {
	ID         int64
	Revision   string
	Revisions  []string
	Source     *Source
	Sources    []Source
	StartedAt  time.Time // deployStartedAt; zero in entries written by old Argo CD releases
	DeployedAt time.Time
	// InitiatedBy is the user who started the sync; empty for automated syncs and old releases.
	InitiatedBy string
	Automated   bool
}

// Operation is status.operationState: the latest sync operation, in flight or finished.
type Operation struct {
	Phase      string // Running, Terminating, Succeeded, Failed, Error
	Message    string
	StartedAt  time.Time
	FinishedAt time.Time
	RetryCount int64
	// Revision and Revisions are what the operation synced: syncResult.revision(s), or
	// operation.sync.revision(s) when the operation failed before manifests were generated.
	Revision    string
	Revisions   []string
	DryRun      bool
	InitiatedBy string
	Automated   bool
}

// Problem is a defect in an Application object, named by a bounded reason usable as a metric label.
type Problem struct {
	Reason Reason
	// Detail says where and what, for logs.
	Detail string
}

// Reason is a bounded name for a kind of malformed Application.
type Reason string

// Reasons for malformed Applications.
const (
	ReasonMissingUID       Reason = "missing_uid"
	ReasonBadUID           Reason = "bad_uid"
	ReasonMissingName      Reason = "missing_name"
	ReasonWrongType        Reason = "wrong_type"
	ReasonBadTime          Reason = "bad_time"
	ReasonHistoryNoID      Reason = "history_missing_id"
	ReasonHistoryDuplicate Reason = "history_duplicate_id"
	ReasonHistoryNoTime    Reason = "history_missing_time"
	ReasonBadImage         Reason = "bad_image"
	ReasonNotApplication   Reason = "not_an_application"
)

// MalformedError says why an object cannot be processed at all.
type MalformedError struct {
	Problem
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("malformed application (%s): %s", e.Reason, e.Detail)
}

// ErrMalformed matches every MalformedError with errors.Is.
var ErrMalformed = errors.New("malformed application")

// Is reports whether target is ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

func malformed(r Reason, format string, args ...any) error {
	return &MalformedError{Problem{Reason: r, Detail: fmt.Sprintf(format, args...)}}
}

// Decode converts an Application object (the unstructured content map) into the typed view. It never
// panics: fields of the wrong type, missing identity or an unusable history give a *MalformedError;
// smaller defects (one unparsable image) are recorded in Application.Problems.
func Decode(obj map[string]any) (app Application, err error) {
	if obj == nil {
		return Application{}, malformed(ReasonNotApplication, "empty object")
	}
	if k, _ := obj["kind"].(string); k != "" && k != Kind {
		return Application{}, malformed(ReasonNotApplication, "kind %q", k)
	}
	d := decoder{}
	meta := d.object(obj, "metadata")
	app.Name = d.str(meta, "metadata.name", "name")
	app.Namespace = d.str(meta, "metadata.namespace", "namespace")
	app.UID = d.str(meta, "metadata.uid", "uid")
	app.CreatedAt = d.time(meta, "metadata.creationTimestamp", "creationTimestamp")
	app.Labels = d.stringMap(meta, "metadata.labels", "labels")
	app.Annotations = d.stringMap(meta, "metadata.annotations", "annotations")

	spec := d.object(obj, "spec")
	app.Project = d.str(spec, "spec.project", "project")
	if srcs := d.list(spec, "spec.sources", "sources"); len(srcs) > 0 {
		app.MultiSource = true
		for i, s := range srcs {
			app.Sources = append(app.Sources, d.source(s, fmt.Sprintf("spec.sources[%d]", i)))
		}
	} else if s, ok := spec["source"]; ok && s != nil {
		app.Sources = []Source{d.source(s, "spec.source")}
	}
	dest := d.object(spec, "destination")
	app.Destination = Destination{
		Server:    d.str(dest, "spec.destination.server", "server"),
		Name:      d.str(dest, "spec.destination.name", "name"),
		Namespace: d.str(dest, "spec.destination.namespace", "namespace"),
	}
	app.RevisionHistoryLimit = d.int(spec, "spec.revisionHistoryLimit", "revisionHistoryLimit")

	status := d.object(obj, "status")
	for i, h := range d.list(status, "status.history", "history") {
		e, ok := d.history(h, fmt.Sprintf("status.history[%d]", i))
		if ok {
			app.History = append(app.History, e)
		}
	}
	slices.SortStableFunc(app.History, func(a, b HistoryEntry) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	for i := 1; i < len(app.History); i++ {
		if app.History[i].ID == app.History[i-1].ID {
			d.fail(ReasonHistoryDuplicate, "status.history: id %d appears twice", app.History[i].ID)
		}
	}
	if op, ok := status["operationState"]; ok && op != nil {
		app.Operation = d.operation(op)
	}
	app.SyncStatus = d.str(d.object(status, "sync"), "status.sync.status", "status")
	health := d.object(status, "health")
	app.Health = d.str(health, "status.health.status", "status")
	app.HealthChangedAt = d.time(health, "status.health.lastTransitionTime", "lastTransitionTime")
	summary := d.object(status, "summary")
	for i, v := range d.list(summary, "status.summary.images", "images") {
		s, ok := v.(string)
		if !ok || strings.TrimSpace(s) == "" {
			app.Problems = append(app.Problems, Problem{ReasonBadImage, fmt.Sprintf("status.summary.images[%d]: %v", i, v)})
			continue
		}
		app.Images = append(app.Images, s)
	}

	if d.err == nil {
		switch {
		case app.UID == "":
			d.fail(ReasonMissingUID, "metadata.uid is empty")
		case !uidPattern.MatchString(app.UID):
			d.fail(ReasonBadUID, "metadata.uid %q is not a Kubernetes UID", app.UID)
		case app.Name == "":
			d.fail(ReasonMissingName, "metadata.name is empty")
		}
	}
	if d.err != nil {
		return Application{}, d.err
	}
	app.Problems = append(app.Problems, d.problems...)
	return app, nil
}

// uidPattern accepts Kubernetes UIDs (UUIDs) and nothing that could break a KV key or an event ID.
var uidPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// decoder reads typed fields and keeps the first fatal problem; later reads return zero values.
type decoder struct {
	err      error
	problems []Problem
}

func (d *decoder) fail(r Reason, format string, args ...any) {
	if d.err == nil {
		d.err = malformed(r, format, args...)
	}
}

func (d *decoder) wrongType(path string, v any) {
	d.fail(ReasonWrongType, "%s: %T, want another type", path, v)
}

func (d *decoder) object(m map[string]any, key string) map[string]any {
	v, ok := m[key]
	if !ok || v == nil {
		return nil
	}
	o, ok := v.(map[string]any)
	if !ok {
		d.wrongType(key, v)
		return nil
	}
	return o
}

func (d *decoder) list(m map[string]any, path, key string) []any {
	v, ok := m[key]
	if !ok || v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		d.wrongType(path, v)
		return nil
	}
	return l
}

func (d *decoder) str(m map[string]any, path, key string) string {
	v, ok := m[key]
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.wrongType(path, v)
	}
	return s
}

func (d *decoder) boolean(m map[string]any, path, key string) bool {
	v, ok := m[key]
	if !ok || v == nil {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		d.wrongType(path, v)
	}
	return b
}

// int reads an integer that JSON decoding left as int64 or float64 (client-go gives int64).
func (d *decoder) int(m map[string]any, path, key string) int64 {
	n, _ := d.intOK(m, path, key)
	return n
}

func (d *decoder) intOK(m map[string]any, path, key string) (int64, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return 0, false
	}
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		if n == float64(int64(n)) {
			return int64(n), true
		}
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i, true
		}
	}
	d.wrongType(path, v)
	return 0, false
}

func (d *decoder) time(m map[string]any, path, key string) time.Time {
	s := d.str(m, path, key)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d.fail(ReasonBadTime, "%s: %q is not an RFC 3339 time", path, s)
		return time.Time{}
	}
	return t.UTC()
}

func (d *decoder) stringMap(m map[string]any, path, key string) map[string]string {
	v, ok := m[key]
	if !ok || v == nil {
		return nil
	}
	o, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, v)
		return nil
	}
	if len(o) == 0 {
		return nil
	}
	out := make(map[string]string, len(o))
	for k, v := range o {
		s, ok := v.(string)
		if !ok {
			d.wrongType(path+"."+k, v)
			continue
		}
		out[k] = s
	}
	return out
}

func (d *decoder) strings(m map[string]any, path, key string) []string {
	var out []string
	for i, v := range d.list(m, path, key) {
		s, ok := v.(string)
		if !ok {
			d.wrongType(fmt.Sprintf("%s[%d]", path, i), v)
			continue
		}
		out = append(out, s)
	}
	return out
}

// plainSourceFields are the source fields kept as such; everything else is hashed into Overrides.
var plainSourceFields = []string{"repoURL", "path", "targetRevision", "chart", "ref", "name"}

func (d *decoder) source(v any, path string) Source {
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, v)
		return Source{}
	}
	s := Source{
		RepoURL:        d.str(m, path+".repoURL", "repoURL"),
		Path:           d.str(m, path+".path", "path"),
		TargetRevision: d.str(m, path+".targetRevision", "targetRevision"),
		Chart:          d.str(m, path+".chart", "chart"),
		Ref:            d.str(m, path+".ref", "ref"),
	}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if !slices.Contains(plainSourceFields, k) && v != nil {
			rest[k] = v
		}
	}
	if len(rest) > 0 {
		// encoding/json sorts map keys, so equal overrides always hash the same.
		b, err := json.Marshal(rest)
		if err != nil {
			d.fail(ReasonWrongType, "%s: %v", path, err)
			return s
		}
		sum := sha256.Sum256(b)
		s.Overrides = hex.EncodeToString(sum[:12])
	}
	return s
}

func (d *decoder) history(v any, path string) (HistoryEntry, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path, v)
		return HistoryEntry{}, false
	}
	id, ok := d.intOK(m, path+".id", "id")
	if !ok {
		if d.err == nil {
			d.fail(ReasonHistoryNoID, "%s has no id", path)
		}
		return HistoryEntry{}, false
	}
	e := HistoryEntry{
		ID:         id,
		Revision:   d.str(m, path+".revision", "revision"),
		Revisions:  d.strings(m, path+".revisions", "revisions"),
		StartedAt:  d.time(m, path+".deployStartedAt", "deployStartedAt"),
		DeployedAt: d.time(m, path+".deployedAt", "deployedAt"),
	}
	if s, ok := m["source"]; ok && s != nil {
		src := d.source(s, path+".source")
		if src != (Source{}) {
			e.Source = &src
		}
	}
	for i, s := range d.list(m, path+".sources", "sources") {
		e.Sources = append(e.Sources, d.source(s, fmt.Sprintf("%s.sources[%d]", path, i)))
	}
	by := d.object(m, "initiatedBy")
	e.InitiatedBy = d.str(by, path+".initiatedBy.username", "username")
	e.Automated = d.boolean(by, path+".initiatedBy.automated", "automated")
	if e.DeployedAt.IsZero() {
		// Without deployedAt there is no finish time; fall back to the start, never invent one.
		if e.StartedAt.IsZero() {
			d.problems = append(d.problems, Problem{ReasonHistoryNoTime, path + " has neither deployedAt nor deployStartedAt"})
		}
		e.DeployedAt = e.StartedAt
	}
	return e, true
}

func (d *decoder) operation(v any) *Operation {
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType("status.operationState", v)
		return nil
	}
	const p = "status.operationState"
	op := &Operation{
		Phase:      d.str(m, p+".phase", "phase"),
		Message:    d.str(m, p+".message", "message"),
		StartedAt:  d.time(m, p+".startedAt", "startedAt"),
		FinishedAt: d.time(m, p+".finishedAt", "finishedAt"),
		RetryCount: d.int(m, p+".retryCount", "retryCount"),
	}
	operation := d.object(m, "operation")
	sync := d.object(operation, "sync")
	op.DryRun = d.boolean(sync, p+".operation.sync.dryRun", "dryRun")
	by := d.object(operation, "initiatedBy")
	op.InitiatedBy = d.str(by, p+".operation.initiatedBy.username", "username")
	op.Automated = d.boolean(by, p+".operation.initiatedBy.automated", "automated")
	result := d.object(m, "syncResult")
	op.Revision = d.str(result, p+".syncResult.revision", "revision")
	op.Revisions = d.strings(result, p+".syncResult.revisions", "revisions")
	if op.Revision == "" && len(op.Revisions) == 0 {
		op.Revision = d.str(sync, p+".operation.sync.revision", "revision")
		op.Revisions = d.strings(sync, p+".operation.sync.revisions", "revisions")
	}
	return op
}
