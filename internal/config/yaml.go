package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Sections are the top-level keys of doraflow's YAML configuration. One file may configure every
// service (the seed project had one file for everything), so a service ignores the sections that
// belong to other services; any other unknown key is an error.
var Sections = []string{"argocd", "webrca", "github", "integration", "enricher", "metrics", "devlake_sink", "demo"}

// Validator is implemented by configuration types that check themselves. Validate returns every
// problem joined, each prefixed with its YAML path.
type Validator interface {
	Validate() error
}

// ErrInvalid marks configuration errors, so callers can tell them from I/O errors:
// errors.Is(err, ErrInvalid).
var ErrInvalid = errors.New("invalid configuration")

// InvalidError holds the problems of an invalid configuration.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return "invalid configuration: " + e.Err.Error() }

// Unwrap returns the problems.
func (e *InvalidError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// LoadFile decodes the YAML file at path into dst, which must already hold the defaults. Decoding is
// strict: unknown keys are errors, except the top-level sections of other services. When dst
// implements Validator, it is validated after decoding.
func LoadFile(path string, dst any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := Decode(bytes.NewReader(b), dst); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Decode decodes one YAML document from r into dst, strictly, then validates it.
func Decode(r io.Reader, dst any) error {
	var doc yaml.Node
	var decodeErr error
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return &InvalidError{Err: err}
	}
	if len(doc.Content) == 1 {
		if err := dropForeignSections(doc.Content[0], dst); err != nil {
			return err
		}
		b, err := yaml.Marshal(&doc)
		if err != nil {
			return fmt.Errorf("re-encode config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		err = dec.Decode(dst)
		var te *yaml.TypeError
		switch {
		case err == nil || errors.Is(err, io.EOF):
		case errors.As(err, &te):
			// Type errors and unknown keys: yaml.v3 decoded everything else, so the range checks
			// below still run and every problem of the file is reported at once.
			decodeErr = err
		default:
			return &InvalidError{Err: err}
		}
	}
	var errs []error
	if decodeErr != nil {
		errs = append(errs, decodeErr)
	}
	if v, ok := dst.(Validator); ok {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &InvalidError{Err: errors.Join(errs...)}
	}
	return nil
}

// dropForeignSections removes top-level keys that dst does not declare but another service does.
func dropForeignSections(root *yaml.Node, dst any) error {
	if root.Kind != yaml.MappingNode {
		return &InvalidError{Err: fmt.Errorf("line %d: the document must be a mapping of sections", root.Line)}
	}
	own := yamlKeys(dst)
	kept := root.Content[:0:0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		key := root.Content[i].Value
		if !own[key] && isSection(key) {
			continue
		}
		kept = append(kept, root.Content[i], root.Content[i+1])
	}
	root.Content = kept
	return nil
}

func isSection(key string) bool {
	for _, s := range Sections {
		if s == key {
			return true
		}
	}
	return false
}

// yamlKeys returns the top-level YAML keys of a struct (or pointer to struct).
func yamlKeys(v any) map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return keys
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys[name] = true
	}
	return keys
}

// Problems collects validation problems, each prefixed with its YAML path.
type Problems struct{ errs []error }

// Addf records a problem at a YAML path such as "integration.devlake.teams[2].name".
func (p *Problems) Addf(path, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// Add records err at path when err is not nil.
func (p *Problems) Add(path string, err error) {
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %w", path, err))
	}
}

// Err returns every problem joined, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Each returns the individual problems of an error from LoadFile or Decode, one line each, for
// printing. yaml.v3 reports several unknown fields in one error; they are split too.
func Each(err error) []string {
	var inv *InvalidError
	if !errors.As(err, &inv) {
		if err == nil {
			return nil
		}
		return []string{err.Error()}
	}
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		var te *yaml.TypeError
		if errors.As(e, &te) {
			for _, line := range te.Errors {
				out = append(out, strings.TrimSpace(line))
			}
			return
		}
		out = append(out, e.Error())
	}
	walk(inv.Err)
	return out
}
