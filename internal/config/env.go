package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads settings from environment variables and collects every problem, so that a service
// reports all missing or malformed variables in one error instead of failing on the first.
type Env struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	problems []error
	// Documented lists every variable read, in order, for docs and --help output.
	Documented []EnvVar
}

// EnvVar describes one environment variable a service reads.
type EnvVar struct {
	Name     string `json:"name"`
	Default  string `json:"default,omitempty"`
	Required bool   `json:"required,omitempty"`
	Secret   bool   `json:"secret,omitempty"`
	Usage    string `json:"usage"`
}

// NewEnv returns an Env reading from getenv (os.Getenv in production, a map in tests).
func NewEnv(getenv func(string) string) *Env {
	return &Env{getenv: getenv, readFile: os.ReadFile}
}

func (e *Env) note(v EnvVar) { e.Documented = append(e.Documented, v) }

// Problemf records a problem found by the caller, such as two settings that contradict each other.
func (e *Env) Problemf(format string, args ...any) {
	e.problems = append(e.problems, fmt.Errorf(format, args...))
}

// String returns the variable's value, or def when it is unset or empty.
func (e *Env) String(name, def, usage string) string {
	e.note(EnvVar{Name: name, Default: def, Usage: usage})
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// Required returns the variable's value and records a problem when it is unset.
func (e *Env) Required(name, usage string) string {
	e.note(EnvVar{Name: name, Required: true, Usage: usage})
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		e.problems = append(e.problems, fmt.Errorf("%s is required (%s)", name, usage))
	}
	return v
}

// Duration parses a Go duration such as 30s or 5m.
func (e *Env) Duration(name string, def time.Duration, usage string) time.Duration {
	e.note(EnvVar{Name: name, Default: def.String(), Usage: usage})
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.problems = append(e.problems, fmt.Errorf("%s=%q is not a non-negative duration such as 30s or 5m", name, v))
		return def
	}
	return d
}

// Int parses a decimal integer within [min, max].
func (e *Env) Int(name string, def, minV, maxV int, usage string) int {
	e.note(EnvVar{Name: name, Default: strconv.Itoa(def), Usage: usage})
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minV || n > maxV {
		e.problems = append(e.problems, fmt.Errorf("%s=%q is not an integer from %d to %d", name, v, minV, maxV))
		return def
	}
	return n
}

// Bool parses true/false (also 1/0, yes/no).
func (e *Env) Bool(name string, def bool, usage string) bool {
	e.note(EnvVar{Name: name, Default: strconv.FormatBool(def), Usage: usage})
	switch v := strings.ToLower(strings.TrimSpace(e.getenv(name))); v {
	case "":
		return def
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	default:
		e.problems = append(e.problems, fmt.Errorf("%s=%q is not a boolean (true or false)", name, v))
		return def
	}
}

// Secret reads a credential from NAME, or from the file named by NAME_FILE (a mounted Kubernetes
// Secret). Setting both is a problem, because it is unclear which one is meant. Surrounding
// whitespace, such as the newline most editors add to a file, is removed.
func (e *Env) Secret(name string, required bool, usage string) Secret {
	e.note(EnvVar{Name: name, Required: required, Secret: true, Usage: usage + " (or " + name + "_FILE)"})
	direct := strings.TrimSpace(e.getenv(name))
	file := strings.TrimSpace(e.getenv(name + "_FILE"))
	switch {
	case direct != "" && file != "":
		e.problems = append(e.problems, fmt.Errorf("%s and %s_FILE are both set; set one", name, name))
		return Secret{}
	case file != "":
		b, err := e.readFile(file)
		if err != nil {
			// The path is not secret, but the error text of a read never contains the content.
			e.problems = append(e.problems, fmt.Errorf("%s_FILE: read %s: %w", name, file, errors.Unwrap(err)))
			return Secret{}
		}
		v := strings.TrimSpace(string(b))
		if v == "" && required {
			e.problems = append(e.problems, fmt.Errorf("%s_FILE: %s is empty", name, file))
		}
		return Secret{value: v}
	case direct != "":
		return Secret{value: direct}
	default:
		if required {
			e.problems = append(e.problems, fmt.Errorf("%s or %s_FILE is required (%s)", name, name, usage))
		}
		return Secret{}
	}
}

// Err returns every recorded problem joined, or nil.
func (e *Env) Err() error {
	if len(e.problems) == 0 {
		return nil
	}
	return fmt.Errorf("environment: %w", errors.Join(e.problems...))
}
