package logging

import (
	"github.com/ThreeDotsLabs/watermill"
	"github.com/rs/zerolog"
)

// Watermill adapts a zerolog logger to watermill. Watermill logs every message at Info and its
// internals at Debug; doraflow logs per-message success at Debug, so each level moves down one step
// (Info → Debug, Debug and Trace → Trace). Errors stay errors.
func Watermill(l zerolog.Logger) watermill.LoggerAdapter { return wmAdapter{l: l} }

type wmAdapter struct{ l zerolog.Logger }

func (a wmAdapter) log(e *zerolog.Event, msg string, fields watermill.LogFields) {
	if e == nil {
		return
	}
	for k, v := range fields {
		e = e.Interface(k, v)
	}
	e.Msg(msg)
}

// handledElsewhere are watermill error messages that doraflow's messaging middleware already logs
// once, with the handler, subject and event fields; watermill's copy is demoted to Debug.
var handledElsewhere = map[string]bool{
	"Handler returned error":              true,
	"Error occurred, retrying":            true,
	"Publishing produced messages failed": true,
}

func (a wmAdapter) Error(msg string, err error, fields watermill.LogFields) {
	if handledElsewhere[msg] {
		a.log(a.l.Debug().Err(err), msg, fields)
		return
	}
	a.log(a.l.Error().Err(err), msg, fields)
}
func (a wmAdapter) Info(msg string, fields watermill.LogFields)  { a.log(a.l.Debug(), msg, fields) }
func (a wmAdapter) Debug(msg string, fields watermill.LogFields) { a.log(a.l.Trace(), msg, fields) }
func (a wmAdapter) Trace(msg string, fields watermill.LogFields) { a.log(a.l.Trace(), msg, fields) }

func (a wmAdapter) With(fields watermill.LogFields) watermill.LoggerAdapter {
	c := a.l.With()
	for k, v := range fields {
		c = c.Interface(k, v)
	}
	return wmAdapter{l: c.Logger()}
}
