package events

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	t0 = time.Date(2026, 3, 10, 14, 2, 11, 0, time.UTC)
	t1 = time.Date(2026, 3, 10, 14, 4, 57, 0, time.UTC)
)

func sampleObserved() DeploymentObserved {
	return DeploymentObserved{
		ID:                  DeploymentID("argocd-hub", "3b0c3a4e-93a1-4f0e-8a55-1a6f2b7d9e10", 318),
		Source:              "argocd",
		Instance:            "argocd-hub",
		Cluster:             "prod-eu-west-1",
		Namespace:           "argocd",
		Application:         "checkout-api-prod-eu-west-1",
		Component:           "checkout-api",
		Environment:         EnvironmentProduction,
		OriginalEnvironment: "production",
		Team:                "payments",
		Kind:                KindDeploy,
		Result:              ResultSuccess,
		Revision:            "b7e2d94a0c1f3e5a7c9b1d3f5e7a9c1b3d5f7a90",
		Sources: []Source{{RepoURL: "https://github.com/example-org/gitops",
			Path: "components/checkout-api/overlays/production", TargetRevision: "main"}},
		Images: []Image{{
			Ref:        "quay.io/example-org/checkout-api:3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d",
			Repository: "quay.io/example-org/checkout-api",
			Tag:        "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d",
		}},
		AppCommits: []CommitRef{{SHA: "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d",
			RepoURL: "https://github.com/example-org/checkout-api", Via: "image_tag",
			Image: "quay.io/example-org/checkout-api"}},
		StartedAt:  t0,
		FinishedAt: t1,
		ObservedAt: t1.Add(2 * time.Second),
		Previous:   DeploymentID("argocd-hub", "3b0c3a4e-93a1-4f0e-8a55-1a6f2b7d9e10", 317),
		ArgoCD: &ArgoCDRef{UID: "3b0c3a4e-93a1-4f0e-8a55-1a6f2b7d9e10", HistoryID: 318,
			OperationStartedAt: t0, Project: "payments", Phase: "Succeeded", Automated: true},
		Labels: map[string]string{"doraflow.io/team": "payments"},
	}
}

func sampleEnriched() DeploymentEnriched {
	return DeploymentEnriched{
		DeploymentObserved: sampleObserved(),
		Commits: []Commit{{
			SHA: "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d", RepoURL: "https://github.com/example-org/checkout-api",
			Author: "dexample", AuthoredAt: t0.Add(-26 * time.Hour), CommittedAt: t0.Add(-3 * time.Hour),
			Title: "Cache tax rules per region",
			PullRequest: &PullRequest{Number: 1234, URL: "https://github.com/example-org/checkout-api/pull/1234",
				CreatedAt: t0.Add(-25 * time.Hour), MergedAt: t0.Add(-3 * time.Hour), FirstCommitAt: t0.Add(-26 * time.Hour)},
		}},
		Ranges: []CommitRange{{RepoURL: "https://github.com/example-org/checkout-api",
			BaseSHA: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", HeadSHA: "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f1a2b4c6d",
			Status: CompareAhead, Commits: 1}},
		Routing: Routing{Teams: []string{"payments"}, Targets: []Target{
			{Scope: ScopeGlobal, ProjectID: "1"},
			{Scope: ScopeTeam, Team: "payments", ProjectID: "2"},
		}},
		EnrichedAt: t1.Add(3 * time.Second),
	}
}

func sampleIncident() IncidentObserved {
	return IncidentObserved{
		ID:          IncidentEventID("webrca", "0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", IncidentResolved, "9c1e"),
		Source:      "webrca",
		IncidentID:  "0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17",
		Key:         "ITN-2026-00317",
		Change:      IncidentResolved,
		Title:       "Checkout latency above SLO in eu-west-1",
		Status:      "resolved",
		Resolved:    true,
		Severity:    "2",
		Products:    []string{"konflux"},
		URL:         "https://web-rca.devshift.net/incident/ITN-2026-00317",
		CreatedAt:   time.Date(2026, 3, 10, 15, 20, 0, 412733000, time.UTC),
		UpdatedAt:   time.Date(2026, 3, 10, 16, 5, 40, 0, time.UTC),
		ResolvedAt:  time.Date(2026, 3, 10, 16, 5, 0, 301877000, time.UTC),
		ObservedAt:  time.Date(2026, 3, 10, 16, 6, 0, 0, time.UTC),
		Fingerprint: "9c1e",
	}
}

func sampleIncidentEnriched() IncidentEnriched {
	return IncidentEnriched{
		IncidentObserved: sampleIncident(),
		Routing:          Routing{Teams: []string{"payments"}, Targets: []Target{{Scope: ScopeGlobal, ProjectID: "1"}, {Scope: ScopeTeam, Team: "payments", ProjectID: "2"}}},
		Components:       []string{"checkout-api"},
		CausedBy: &DeploymentLink{DeploymentID: sampleObserved().ID, Component: "checkout-api",
			Environment: EnvironmentProduction, FinishedAt: t1, Reason: LinkLastProductionDeployment},
		EnrichedAt: time.Date(2026, 3, 10, 16, 6, 1, 0, time.UTC),
	}
}

func sampleSignal() ChangeFailureSignal {
	dep := sampleObserved()
	return ChangeFailureSignal{
		ID: ChangeFailureID(dep.ID, DetectionDegraded, false), DeploymentID: dep.ID, Source: "argocd",
		Instance: dep.Instance, Cluster: dep.Cluster, Namespace: dep.Namespace, Application: dep.Application,
		Component: dep.Component, Environment: dep.Environment, Team: dep.Team, Detection: DetectionDegraded,
		Reason: "health Degraded 4m0s after deployment", DetectedAt: t1.Add(4 * time.Minute), DeploymentFinishedAt: t1,
	}
}

// TestGoldenWireFormat pins the JSON of every contract type. A renamed or retyped field changes the
// marshalled bytes (golden mismatch) and makes the old golden file undecodable in strict mode.
func TestGoldenWireFormat(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		fresh func() any // a pointer to an empty value of the same type
		meta  Meta
	}{
		{"deployment_observed", sampleObserved(), func() any { return new(DeploymentObserved) },
			Meta{Type: TypeDeploymentObserved, Subject: SubjectDeploymentObserved}},
		{"deployment_enriched", sampleEnriched(), func() any { return new(DeploymentEnriched) },
			Meta{Type: TypeDeploymentEnriched, Subject: SubjectDeploymentEnriched}},
		{"incident_observed", sampleIncident(), func() any { return new(IncidentObserved) },
			Meta{Type: TypeIncidentObserved, Subject: SubjectIncidentObserved}},
		{"incident_enriched", sampleIncidentEnriched(), func() any { return new(IncidentEnriched) },
			Meta{Type: TypeIncidentEnriched, Subject: SubjectIncidentEnriched}},
		{"change_failure_signal", sampleSignal(), func() any { return new(ChangeFailureSignal) },
			Meta{Type: TypeChangeFailureSignal, Subject: SubjectChangeFailureDetected}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.event.Validate(); err != nil {
				t.Fatalf("sample does not validate: %v", err)
			}
			m := tt.event.Meta()
			if m.Type != tt.meta.Type || m.Subject != tt.meta.Subject {
				t.Errorf("Meta() type/subject = %s %s, want %s %s", m.Type, m.Subject, tt.meta.Type, tt.meta.Subject)
			}
			got, err := json.MarshalIndent(tt.event, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tt.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wire format of %s changed; diff the output against %s:\n%s", tt.name, golden, got)
			}

			// Strict decode of the golden bytes back into the type must reproduce the sample.
			back := tt.fresh()
			dec := json.NewDecoder(bytes.NewReader(want))
			dec.DisallowUnknownFields()
			if err := dec.Decode(back); err != nil {
				t.Fatalf("golden %s does not decode strictly (renamed field?): %v", golden, err)
			}
			if gotBack := reflect.ValueOf(back).Elem().Interface(); !reflect.DeepEqual(gotBack, tt.event) {
				t.Errorf("round trip changed the event:\n got %+v\nwant %+v", gotBack, tt.event)
			}
		})
	}
}

func TestZeroTimesAreOmitted(t *testing.T) {
	d := sampleObserved()
	d.StartedAt, d.ObservedAt, d.ArgoCD.OperationStartedAt = time.Time{}, time.Time{}, time.Time{}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"started_at", "observed_at", "operation_started_at", "0001-01-01"} {
		if bytes.Contains(b, []byte(key)) {
			t.Errorf("zero time %q present in %s", key, b)
		}
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		want  []string // substrings that must all appear
	}{
		{"empty deployment", DeploymentObserved{}, []string{"id: required", "source: required",
			"application: required", "component: required", "finished_at: required", `result: "" is not one of`,
			`kind: "" is not one of`, `environment: "" is not one of`}},
		{"start after finish", func() Event { d := sampleObserved(); d.StartedAt = d.FinishedAt.Add(time.Second); return d }(),
			[]string{"started_at: after finished_at"}},
		{"bad environment", func() Event { d := sampleObserved(); d.Environment = "PRODUCTION"; return d }(),
			[]string{`environment: "PRODUCTION" is not one of`}},
		{"team target without team", func() Event {
			d := sampleEnriched()
			d.Routing.Targets = []Target{{Scope: ScopeTeam, ProjectID: "2"}}
			return d
		}(), []string{"routing.targets.team: required for team scope"}},
		{"enriched commit without repo", func() Event {
			d := sampleEnriched()
			d.Commits[0].RepoURL = ""
			return d
		}(), []string{"commits.repo_url: required"}},
		{"resolved without time", func() Event { i := sampleIncident(); i.ResolvedAt = time.Time{}; return i }(),
			[]string{"resolved_at: must be set exactly when resolved"}},
		{"resolved before created", func() Event {
			i := sampleIncident()
			i.ResolvedAt = i.CreatedAt.Add(-time.Minute)
			return i
		}(), []string{"resolved_at: before created_at"}},
		{"empty incident", IncidentObserved{}, []string{"incident_id: required", "key: required", "title: required",
			"fingerprint: required", `change: "" is not one of`}},
		{"enriched incident bad link", func() Event {
			i := sampleIncidentEnriched()
			i.CausedBy.Reason = ""
			return i
		}(), []string{"caused_by.reason: required"}},
		{"signal unknown detection", func() Event { s := sampleSignal(); s.Detection = "unhealthy"; return s }(),
			[]string{`detection: "unhealthy" is not one of`}},
		{"signal recovered before detected", func() Event {
			s := sampleSignal()
			s.RecoveredAt = s.DetectedAt.Add(-time.Second)
			return s
		}(), []string{"recovered_at: before detected_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.event.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, missing %q", err, w)
				}
			}
		})
	}
}

func TestIDsAreDeterministicAndDistinct(t *testing.T) {
	a := DeploymentID("hub", "uid-1", 7)
	if a != DeploymentID("hub", "uid-1", 7) {
		t.Fatal("same inputs gave different IDs")
	}
	distinct := map[string]string{
		"base":           a,
		"other history":  DeploymentID("hub", "uid-1", 8),
		"other uid":      DeploymentID("hub", "uid-2", 7),
		"other instance": DeploymentID("hub2", "uid-1", 7),
		"failed op":      FailedOperationID("hub", "uid-1", t0),
		"shifted parts":  NewID("dep", "hubu", "id-1", "7"),
	}
	seen := map[string]string{}
	for name, id := range distinct {
		if !strings.HasPrefix(id, "dep-") || len(id) != len("dep-")+32 {
			t.Errorf("%s: malformed id %q", name, id)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s share id %s", name, prev, id)
		}
		seen[id] = name
	}
	if ChangeFailureID(a, DetectionDegraded, false) == ChangeFailureID(a, DetectionDegraded, true) {
		t.Error("detected and recovered signals share an id")
	}
}

func TestHeaders(t *testing.T) {
	m := sampleObserved().Meta()
	h := Headers(m, "argocd-watcher", "")
	want := map[string]string{
		HeaderSpecVersion:   "1.0",
		HeaderID:            m.ID,
		HeaderMsgID:         m.ID,
		HeaderType:          TypeDeploymentObserved,
		HeaderSource:        "/doraflow/argocd-watcher",
		HeaderTime:          "2026-03-10T14:04:57Z",
		HeaderSubject:       "prod-eu-west-1/argocd/checkout-api-prod-eu-west-1",
		HeaderContentType:   "application/json",
		HeaderCorrelationID: m.ID,
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("Headers() =\n%v\nwant\n%v", h, want)
	}
	if got := Headers(m, "enricher", "corr-1")[HeaderCorrelationID]; got != "corr-1" {
		t.Errorf("correlation id = %q, want corr-1", got)
	}
}

func FuzzDecodeDeploymentEnriched(f *testing.F) {
	for _, name := range []string{"deployment_observed", "deployment_enriched"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"finished_at":"not a time"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d DeploymentEnriched
		if err := json.Unmarshal(b, &d); err != nil {
			return
		}
		_ = d.Validate() // must not panic on any decoded value
		_ = d.Meta()
		if _, err := json.Marshal(d); err != nil {
			t.Fatalf("re-marshal of a decoded event failed: %v", err)
		}
	})
}

func FuzzDecodeIncidentEnriched(f *testing.F) {
	for _, name := range []string{"incident_observed", "incident_enriched"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var i IncidentEnriched
		if err := json.Unmarshal(b, &i); err != nil {
			return
		}
		_ = i.Validate()
		_ = i.Meta()
		if _, err := json.Marshal(i); err != nil {
			t.Fatalf("re-marshal of a decoded event failed: %v", err)
		}
	})
}
