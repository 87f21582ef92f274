package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doraflow/doraflow/pkg/events"
)

// TestEventsDocMatchesCode fails when docs/events.md and pkg/events disagree: every subject, its Go
// type, CloudEvents type and stream must appear in one catalogue row, and every stream in the
// streams table with its subject filters.
func TestEventsDocMatchesCode(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	rows := []struct{ subject, goType, ceType, stream string }{
		{events.SubjectDeploymentObserved, "DeploymentObserved", events.TypeDeploymentObserved, events.StreamRaw},
		{events.SubjectChangeFailureDetected, "ChangeFailureSignal", events.TypeChangeFailureSignal, events.StreamRaw},
		{events.SubjectIncidentObserved, "IncidentObserved", events.TypeIncidentObserved, events.StreamRaw},
		{events.SubjectDeploymentEnriched, "DeploymentEnriched", events.TypeDeploymentEnriched, events.StreamEnriched},
		{events.SubjectIncidentEnriched, "IncidentEnriched", events.TypeIncidentEnriched, events.StreamEnriched},
		{events.SubjectChangeFailureInferred, "ChangeFailureInferred", events.TypeChangeFailureInferred, events.StreamEnriched},
	}
	for _, r := range rows {
		line := lineWith(doc, "| `"+r.subject+"` |")
		if line == "" {
			t.Errorf("docs/events.md has no catalogue row for %s", r.subject)
			continue
		}
		for _, want := range []string{"`" + r.goType + "`", "`" + r.ceType + "`", "`" + r.stream + "`"} {
			if !strings.Contains(line, want) {
				t.Errorf("row for %s lacks %s:\n%s", r.subject, want, line)
			}
		}
		if !subjectInStream(r.subject, events.StreamSubjects[r.stream]) {
			t.Errorf("code: %s is not captured by stream %s", r.subject, r.stream)
		}
	}
	for stream, subjects := range events.StreamSubjects {
		line := lineWith(doc, "| `"+stream+"` |")
		if line == "" {
			t.Errorf("docs/events.md streams table lacks %s", stream)
			continue
		}
		for _, s := range subjects {
			if !strings.Contains(line, "`"+s+"`") {
				t.Errorf("streams row for %s lacks subject filter %s", stream, s)
			}
		}
	}
	for _, h := range []string{events.HeaderSpecVersion, events.HeaderID, events.HeaderType, events.HeaderSource,
		events.HeaderTime, events.HeaderSubject, events.HeaderCorrelationID, events.HeaderMsgID,
		events.HeaderDeadReason, events.HeaderDeadSubject, events.HeaderDeadHandler} {
		if !strings.Contains(doc, "`"+h+"`") {
			t.Errorf("docs/events.md does not document header %s", h)
		}
	}
}

func lineWith(doc, prefix string) string {
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// subjectInStream reports whether a subject matches one of the stream's filters (only the trailing
// ">" wildcard is used by doraflow).
func subjectInStream(subject string, filters []string) bool {
	for _, f := range filters {
		if prefix, ok := strings.CutSuffix(f, ">"); ok && strings.HasPrefix(subject, prefix) || f == subject {
			return true
		}
	}
	return false
}
