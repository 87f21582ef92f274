package main

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemoProgressIsNumberedWithoutGaps: the demo prints every applied step as [k/N], k running
// from 1 to N without gaps (incidents, which go to WebRCA at the end, used to leave holes and
// inflate N), and says "1 commit", not "1 commits".
func TestDemoProgressIsNumberedWithoutGaps(t *testing.T) {
	monday, _ := demoWeeks(time.Date(2026, 3, 18, 12, 0, 0, 0, time.UTC))
	steps := timeline(42, monday)
	var out bytes.Buffer
	var applied int
	incidents, err := play(&out, steps, func(step) error { applied++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(incidents) == 0 || applied != len(lines) || applied+len(incidents) != len(steps) {
		t.Fatalf("%d steps: %d applied, %d printed, %d incidents", len(steps), applied, len(lines), len(incidents))
	}
	progress := regexp.MustCompile(`^\[ *(\d+)/(\d+)\] `)
	for i, l := range lines {
		m := progress.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %d is not numbered: %q", i+1, l)
		}
		if k, _ := strconv.Atoi(m[1]); k != i+1 || m[2] != strconv.Itoa(len(lines)) {
			t.Errorf("line %d is numbered [%s/%s], want [%d/%d]: %q", i+1, m[1], m[2], i+1, len(lines), l)
		}
	}
	for _, s := range incidents {
		if s.kind != stepIncident {
			t.Errorf("returned as an incident: %s", s)
		}
	}
	if strings.Contains(out.String(), " 1 commits)") {
		t.Error("the progress says \"1 commits\"")
	}
	for n, want := range map[int]string{1: "(squash, 1 commit)", 3: "(squash, 3 commits)"} {
		if got := (step{at: monday, kind: stepChange, component: "checkout-api", merge: "squash", commits: n}).String(); !strings.HasSuffix(got, want) {
			t.Errorf("a merge of %d commits reads %q, want the suffix %q", n, got, want)
		}
	}

	_, err = play(&out, steps, func(s step) error { return errors.New("boom") })
	if err == nil || !strings.HasPrefix(err.Error(), "step 1 (") {
		t.Errorf("play with a failing step = %v, want it to name step 1", err)
	}
}

// TestDemoClosingAfterExitSuggestsNothingThatNeedsThePipeline: after --exit the services have
// stopped, so the demo must not tell the user to run doraflow dora against them.
func TestDemoClosingAfterExitSuggestsNothingThatNeedsThePipeline(t *testing.T) {
	const exporter = "http://127.0.0.1:8081"
	running := closing(exporter, false)
	if !strings.Contains(running, "Try: doraflow dora --exporter "+exporter) || !strings.Contains(running, "Ctrl-C") {
		t.Errorf("closing while running:\n%s", running)
	}
	stopped := closing(exporter, true)
	for _, bad := range []string{"Try:", "keeps running", "Ctrl-C"} {
		if strings.Contains(stopped, bad) {
			t.Errorf("closing after --exit says %q:\n%s", bad, stopped)
		}
	}
	if !strings.Contains(stopped, fmt.Sprintf("came from %s/metrics", exporter)) || !strings.Contains(stopped, "has stopped") {
		t.Errorf("closing after --exit:\n%s", stopped)
	}
}
