package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/doraflow/doraflow/internal/logging"
)

// The state file tells the CLI where a running `doraflow local` or `doraflow demo` is: the demo's NATS
// listens on a random port, so NATS_URL's default would miss it. One file per user, in the runtime
// directory (XDG_RUNTIME_DIR, removed at logout, private to the user), so the CLI finds the pipeline
// from any directory and any terminal; the pipeline started last wins. DORAFLOW_STATE_FILE overrides
// the path.
const stateFileHelp = "$DORAFLOW_STATE_FILE, else $XDG_RUNTIME_DIR/doraflow/pipeline.json, else <tmp>/doraflow-<uid>/pipeline.json"

// pipelineState is the content of the state file.
type pipelineState struct {
	Command     string            `json:"command"` // local or demo
	PID         int               `json:"pid"`
	StartedAt   time.Time         `json:"started_at"`
	NATSURL     string            `json:"nats_url"`
	ExporterURL string            `json:"exporter_url,omitempty"`
	Ops         map[string]string `json:"ops,omitempty"` // service → ops URL
}

// stateFilePath is where the state file lives for this environment.
func stateFilePath(getenv func(string) string) string {
	if p := getenv("DORAFLOW_STATE_FILE"); p != "" {
		return p
	}
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "doraflow", "pipeline.json")
	}
	return filepath.Join(os.TempDir(), "doraflow-"+strconv.Itoa(os.Getuid()), "pipeline.json")
}

// writePipelineState prints where NATS and the exporter are (with an `export NATS_URL=…` line to paste)
// and writes the state file the CLI reads by default. It returns the function that removes the file on
// a clean stop (only while it is still this process's). A file that cannot be written is a warning on
// out, not an error: the pipeline runs anyway. Use: defer writePipelineState(…)().
func writePipelineState(out io.Writer, getenv func(string) string, command, natsURL string, ops map[string]string) func() {
	path := stateFilePath(getenv)
	st := pipelineState{Command: command, PID: os.Getpid(), StartedAt: time.Now().UTC().Truncate(time.Second),
		NATSURL: natsURL, ExporterURL: ops["metrics-exporter"], Ops: ops}
	fmt.Fprintf(out, "\nFor the CLI and the NATS CLI in another terminal:\n  export NATS_URL=%s\n", natsURL)
	if st.ExporterURL != "" {
		fmt.Fprintf(out, "  doraflow dora --exporter %s\n", st.ExporterURL)
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		fmt.Fprintf(out, "warning: state file not written (doraflow status needs NATS_URL): %v\n", err)
		return func() {}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		fmt.Fprintf(out, "warning: state file not written (doraflow status needs NATS_URL): %v\n", err)
		return func() {}
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintf(out, "warning: state file not written (doraflow status needs NATS_URL): %v\n", err)
		return func() {}
	}
	fmt.Fprintf(out, "doraflow status, dlq, dora and backfill find this pipeline through %s.\n", path)
	return func() {
		if cur, err := readStateFile(path); err == nil && cur.PID == st.PID {
			_ = os.Remove(path)
		}
	}
}

func readStateFile(path string) (pipelineState, error) {
	var st pipelineState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// alive reports whether a process with this pid exists (EPERM: it exists, owned by someone else).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// pipeline is how a command finds the running pipeline: the environment first, then the state file.
type pipeline struct {
	getenv func(string) string
	stderr io.Writer
}

// state returns the state of the running pipeline, if a state file names a live one. A stale file
// (its process is gone) is ignored, with a note on stderr.
func (p pipeline) state() (pipelineState, string, bool) {
	path := stateFilePath(p.getenv)
	st, err := readStateFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return st, path, false
	case err != nil:
		fmt.Fprintf(p.stderr, "doraflow: ignoring the state file: %v\n", err)
		return st, path, false
	case !alive(st.PID):
		fmt.Fprintf(p.stderr, "doraflow: ignoring stale state file %s: doraflow %s (pid %d, started %s) is no longer running\n",
			path, st.Command, st.PID, st.StartedAt.Format(time.RFC3339))
		return st, path, false
	}
	return st, path, true
}

// natsURL returns the NATS URL to use ("" is messaging's default) and where it came from, for errors
// (credentials redacted: the second value is printed).
func (p pipeline) natsURL() (string, string) {
	if u := p.getenv("NATS_URL"); u != "" {
		return u, logging.RedactURL(u) + " from NATS_URL"
	}
	if st, path, ok := p.state(); ok && st.NATSURL != "" {
		return st.NATSURL, fmt.Sprintf("%s from %s (doraflow %s, pid %d)", logging.RedactURL(st.NATSURL), path, st.Command, st.PID)
	}
	return "", "nats://127.0.0.1:4222, the default: set NATS_URL, or start doraflow local"
}

// exporterURL returns the metrics exporter's ops URL: the flag when given, else the state file's,
// else the default of `make run`.
func (p pipeline) exporterURL(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if st, _, ok := p.state(); ok && st.ExporterURL != "" {
		return st.ExporterURL
	}
	return "http://127.0.0.1:8081"
}

// knownServices are the doraflow services, sorted (for error messages).
func knownServices() []string {
	s := append([]string(nil), services...)
	sort.Strings(s)
	return s
}
