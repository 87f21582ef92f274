package sink

import (
	"errors"
	"sync"
	"time"

	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

// State is a connection's circuit state; its value is the circuit-state gauge.
type State int

// States.
const (
	StateClosed   State = 0
	StateHalfOpen State = 1
	StateOpen     State = 2
)

func (s State) String() string {
	switch s {
	case StateHalfOpen:
		return "half_open"
	case StateOpen:
		return "open"
	default:
		return "closed"
	}
}

// BreakerConfig configures the per-connection circuit breakers.
type BreakerConfig struct {
	// Failures is how many retryable failures in a row open the circuit.
	Failures int
	// OpenFor is how long an opened circuit refuses posts before one probe is let through; it
	// doubles with each failed probe, up to MaxOpenFor.
	OpenFor    time.Duration
	MaxOpenFor time.Duration
	// ConfigOpenFor is how long a 401 or 403 keeps the circuit open: the key needs an operator.
	ConfigOpenFor time.Duration
}

// ErrCircuitOpen means posts to a connection are paused because DevLake failed repeatedly there.
var ErrCircuitOpen = errors.New("circuit open: DevLake failed repeatedly on this connection; posts are paused")

// breaker is one connection's circuit: closed (posting), open (refusing until a deadline), then
// half-open (one probe decides).
type breaker struct {
	cfg BreakerConfig

	mu        sync.Mutex
	state     State
	failures  int
	openFor   time.Duration
	openUntil time.Time
	probing   bool
	cause     error
	// fault is the configuration fault the connection is paused for, from its first answer until a
	// post succeeds or DevLake itself rejects a message (which proves the connection right).
	fault *ConfigFault
}

// ConfigFault is a connection paused because DevLake, or whatever answers in its place, says the
// connection is misconfigured (devlake.ClassConfig): every message would fail the same way.
type ConfigFault struct {
	Connection uint64
	// Cause is the last such answer (a *devlake.Error).
	Cause error
	// Since is the first such answer; NextProbe is when the circuit lets the next post through.
	Since, NextProbe time.Time
}

// transition is a state change to report.
type transition struct {
	from, to State
	cause    error
}

func newBreaker(cfg BreakerConfig) *breaker { return &breaker{cfg: cfg} }

// allow reports whether a post may go out now; probe is true for the one post a half-open circuit
// lets through. When refused, err wraps ErrCircuitOpen and the last cause.
func (b *breaker) allow(now time.Time) (probe bool, tr *transition, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case StateClosed:
		return false, nil, nil
	case StateOpen:
		if now.Before(b.openUntil) {
			return false, nil, b.refusal()
		}
		b.state, b.probing = StateHalfOpen, true
		return true, &transition{from: StateOpen, to: StateHalfOpen}, nil
	default: // half-open
		if b.probing {
			return false, nil, b.refusal()
		}
		b.probing = true
		return true, nil, nil
	}
}

func (b *breaker) refusal() error {
	if b.cause != nil {
		return errors.Join(ErrCircuitOpen, b.cause)
	}
	return ErrCircuitOpen
}

// record takes the outcome of an allowed post. A post cut short by its own context (shutdown, the
// delivery's deadline) says nothing about DevLake: it only releases a probe.
func (b *breaker) record(now time.Time, probe bool, err error, cancelled bool) *transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if cancelled {
		return nil
	}
	from := b.state
	switch {
	case err == nil || devlake.ClassOf(err) == devlake.ClassPermanent:
		// DevLake answered; a rejected payload is not an outage.
		b.failures, b.openFor, b.cause, b.fault = 0, 0, nil, nil
		if from != StateClosed {
			b.state = StateClosed
			return &transition{from: from, to: StateClosed}
		}
		return nil
	case devlake.ClassOf(err) == devlake.ClassConfig:
		b.cause = err
		b.state, b.openUntil = StateOpen, now.Add(b.cfg.ConfigOpenFor)
		since := now
		if b.fault != nil {
			since = b.fault.Since
		}
		b.fault = &ConfigFault{Cause: err, Since: since, NextProbe: b.openUntil}
		return &transition{from: from, to: StateOpen, cause: err}
	default:
		b.failures++
		b.cause = err
		if from == StateClosed && b.failures < b.cfg.Failures {
			return nil
		}
		if from == StateOpen {
			return nil // a post allowed before the circuit opened, finishing late
		}
		switch {
		case b.openFor == 0:
			b.openFor = b.cfg.OpenFor
		case from == StateHalfOpen:
			b.openFor = min(2*b.openFor, b.cfg.MaxOpenFor)
		}
		b.state, b.openUntil = StateOpen, now.Add(b.openFor)
		return &transition{from: from, to: StateOpen, cause: err}
	}
}
