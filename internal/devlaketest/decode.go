package devlaketest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// object is a decoded JSON request body read the way DevLake's weakly typed decoder reads it: keys
// match case-insensitively, unknown keys are ignored, and scalars convert where mapstructure would.
type object struct {
	fields map[string]any // lower-cased key → value (json.Number for numbers)
	errs   []string       // decoding problems, in the order found
	owner  string         // Go type name used in messages, such as WebhookDeploymentReq
}

// parseBody decodes a request body. A body that is not a JSON object fails like DevLake's JSON
// binding does: with Go's JSON error text, answered as a 500.
func parseBody(b []byte) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("json: cannot unmarshal null into Go value of type map[string]interface {}")
	}
	return m, nil
}

func newObject(owner string, m map[string]any) *object {
	o := &object{fields: make(map[string]any, len(m)), owner: owner}
	// Exact-case keys win over other spellings; among other spellings the order is fixed.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if _, seen := o.fields[lk]; seen && k != lk {
			continue
		}
		o.fields[lk] = m[k]
	}
	return o
}

func (o *object) fail(field, format string, args ...any) {
	o.errs = append(o.errs, fmt.Sprintf("'%s' %s", field, fmt.Sprintf(format, args...)))
}

// str reads a string field: strings as they are, numbers as their decimal text, booleans as 1 or 0.
func (o *object) str(field string) string {
	v, ok := o.fields[strings.ToLower(field)]
	if !ok || v == nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "1"
		}
		return "0"
	default:
		o.fail(field, "expected type 'string', got unconvertible type '%T'", v)
		return ""
	}
}

// numberText reads a number field as text: a JSON number's digits, or a string as it is (the
// caller parses it). It returns false, leaving the caller's zero value, when the field is absent,
// null or an empty string, or holds another type, which is a problem reported with typ, the Go type
// DevLake decodes into.
func (o *object) numberText(field, typ string) (string, bool) {
	v, ok := o.fields[strings.ToLower(field)]
	if !ok || v == nil {
		return "", false
	}
	switch x := v.(type) {
	case json.Number:
		return x.String(), true
	case string:
		return x, x != ""
	default:
		o.fail(field, "expected type '%s', got unconvertible type '%T'", typ, v)
		return "", false
	}
}

// uint reads an unsigned integer field (numbers, or strings holding one).
func (o *object) uint(field string) uint64 {
	s, ok := o.numberText(field, "uint")
	if !ok {
		return 0
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f == math.Trunc(f) && f <= math.MaxUint32 {
		return uint64(f)
	}
	o.fail(field, "cannot parse '%s' as uint", s)
	return 0
}

// int reads a signed integer field.
func (o *object) int(field string) int64 {
	s, ok := o.numberText(field, "int")
	if !ok {
		return 0
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) <= math.MaxInt32 {
		return int64(f)
	}
	o.fail(field, "cannot parse '%s' as int", s)
	return 0
}

// float reads a number field; nil when absent.
func (o *object) float(field string) *float64 {
	s, ok := o.numberText(field, "float64")
	if !ok {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		o.fail(field, "cannot parse '%s' as float", s)
		return nil
	}
	return &f
}

// date reads a date field with DevLake's Iso8601Time rules; the zero time means not set.
func (o *object) date(field string) time.Time {
	v, ok := o.fields[strings.ToLower(field)]
	if !ok || v == nil {
		return time.Time{}
	}
	s, isString := v.(string)
	if !isString {
		// An epoch number reaches the date parser as its digits, which match no layout.
		o.fail(field, "parsing time %s: cannot parse as a date", jsonText(v))
		return time.Time{}
	}
	t, err := ParseDate(s)
	if err != nil {
		o.fail(field, "%v", err)
		return time.Time{}
	}
	return t
}

// objects reads an array of objects.
func (o *object) objects(field, owner string) []*object {
	v, ok := o.fields[strings.ToLower(field)]
	if !ok || v == nil {
		return nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		o.fail(field, "expected type '[]%s', got unconvertible type '%T'", owner, v)
		return nil
	}
	out := make([]*object, 0, len(arr))
	for i, e := range arr {
		m, isObj := e.(map[string]any)
		if !isObj {
			o.fail(fmt.Sprintf("%s[%d]", field, i), "expected a map, got '%T'", e)
			continue
		}
		out = append(out, newObject(owner, m))
	}
	return out
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// dateLayouts are DevLake's Iso8601Time layouts: the first whose matcher matches the input is used,
// and RFC 3339 is tried when none matches. The order is the trap the contract describes: an input
// with six or nine fractional digits and a numeric offset matches the millisecond layout and fails.
var dateLayouts = []struct {
	match  *regexp.Regexp
	layout string
}{
	{regexp.MustCompile(`[+-]\d{4}$`), "2006-01-02T15:04:05-0700"},
	{regexp.MustCompile(`\d{3}[+-]\d{2}:\d{2}$`), "2006-01-02T15:04:05.000-07:00"},
	{regexp.MustCompile(`[+-]\d{2}:\d{2}$`), "2006-01-02T15:04:05-07:00"},
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$`), "2006-01-02 15:04:05"},
	{regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$`), "2006-01-02 15:04"},
	{regexp.MustCompile(`[+-]\d{2}-\d{2}$`), "2006-01-02"},
}

// ParseDate parses a date the way DevLake's webhook does (devlake-webhook.md §3). Empty strings and
// strings containing 0000-00-00 mean "not set" and return the zero time without error. Zone-less
// layouts are read as UTC.
func ParseDate(s string) (time.Time, error) {
	if s == "" || strings.Contains(s, "0000-00-00") {
		return time.Time{}, nil
	}
	for _, l := range dateLayouts {
		if l.match.MatchString(s) {
			return time.Parse(l.layout, s)
		}
	}
	return time.Parse(time.RFC3339, s)
}
