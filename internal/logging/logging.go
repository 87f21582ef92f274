// Package logging builds doraflow's zerolog logger: JSON on stdout with fixed snake_case field names,
// a level from LOG_LEVEL, and a watermill adapter that demotes watermill's chatter by one level.
package logging

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Field names shared by every service. Use these constants instead of literals so the same field
// never appears under two names.
const (
	FieldService       = "service"
	FieldVersion       = "version"
	FieldHandler       = "handler"
	FieldSubject       = "subject"
	FieldMessageID     = "message_id"
	FieldEventID       = "event_id"
	FieldCorrelationID = "correlation_id"
	FieldApplication   = "application"
	FieldNamespace     = "namespace"
	FieldRevision      = "revision"
	FieldIncidentID    = "incident_id"
	FieldRepo          = "repo"
)

// New returns the service's logger writing JSON lines to w at level (trace, debug, info, warn,
// error). Timestamps are UTC RFC 3339 with milliseconds.
func New(w io.Writer, level, service, version string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(strings.TrimSpace(level)))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("LOG_LEVEL=%q is not one of trace, debug, info, warn, error", level)
	}
	return zerolog.New(w).Level(lvl).Hook(utcTimestamp{}).With().
		Str(FieldService, service).
		Str(FieldVersion, version).
		Logger(), nil
}

// utcTimestamp writes zerolog's "time" field as UTC RFC 3339 with milliseconds, without touching
// zerolog's process-wide settings.
type utcTimestamp struct{}

func (utcTimestamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}
