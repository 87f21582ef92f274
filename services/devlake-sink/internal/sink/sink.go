// Package sink delivers enriched deployments and incidents to every DevLake connection they are
// routed to, exactly once per (event, connection) in effect: a ledger in a key-value store records
// each successful post, incident states only move forward, and a per-connection circuit breaker
// pauses posting while DevLake is down.
package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
)

// Connection is the DevLake webhook connection of one project, with its key.
type Connection struct {
	ProjectID string
	ID        uint64
	Key       config.Secret
}

// Poster sends one body to one connection (devlake.Client).
type Poster interface {
	Post(ctx context.Context, kind devlake.Kind, conn uint64, key config.Secret, body []byte) error
}

// Store is the ledger's key-value store, with compare-and-set (a JetStream KV bucket).
type Store interface {
	// Get returns the value and its revision, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Create writes a key that must not exist, or returns ErrExists.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes a key whose revision is still rev, or returns ErrConflict.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
}

// Store errors.
var (
	ErrNotFound = errors.New("key not found")
	ErrExists   = errors.New("key exists")
	ErrConflict = errors.New("revision mismatch")
)

// Observer is told what happened, for metrics and logs.
type Observer interface {
	// Posted counts one post by connection, kind and outcome (ok, retryable, permanent,
	// config_error, circuit_open).
	Posted(conn uint64, kind devlake.Kind, outcome string, err error)
	// LedgerSkip counts a post not made because the ledger shows it done (duplicate), superseded
	// by a newer incident state (stale), or made earlier with different content (changed).
	LedgerSkip(kind devlake.Kind, reason string)
	// Skipped counts an event not posted at all, with a Skip* reason.
	Skipped(kind devlake.Kind, reason string)
	// CircuitChanged reports a state change of a connection's circuit.
	CircuitChanged(conn uint64, from, to State, cause error)
}

// Ledger skip reasons.
const (
	LedgerDuplicate = "duplicate"
	LedgerStale     = "stale"
	LedgerChanged   = "changed"
)

// Options configure a Sink.
type Options struct {
	// Connections maps DevLake project ids (routing targets) to connections.
	Connections map[string]Connection
	// Attempts bounds the posts of one body within one delivery (retryable outcomes only).
	Attempts int
	// Backoff is the first delay between attempts; it doubles, with jitter, up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// RequestTimeout is the client's timeout: no attempt starts unless it can finish before the
	// delivery's deadline.
	RequestTimeout time.Duration
	Breaker        BreakerConfig
	// GitOpsFallback posts deployments without application commits with their GitOps commit.
	GitOpsFallback bool
	// PullRequests posts the merged pull requests of every posted successful deployment's commits
	// (DevLake v1.0.3+), which DevLake's change lead time is computed from.
	PullRequests bool
	// PRCreatedFromFirstCommit posts a pull request's first commit time as its createdDate when it
	// is earlier (BuildPullRequests).
	PRCreatedFromFirstCommit bool
	// Now and Rand are for tests.
	Now  func() time.Time
	Rand func() float64
}

// Sink is the delivery core.
type Sink struct {
	poster Poster
	store  Store
	obs    Observer
	opts   Options

	mu       sync.Mutex
	breakers map[uint64]*breaker
	firsts   map[firstKey]*firstPost
	// incidents serialises the states of one incident on one connection within this replica.
	incidents map[string]*keyLock
}

// keyLock is a lock for one ledger key that waiters can abandon when their context ends; users
// counts holders and waiters, so the entry is removed when nobody needs it.
type keyLock struct {
	turn  chan struct{}
	users int
}

// lockKey waits for the ledger key's lock; unlock must be called once it returns nil.
func (s *Sink) lockKey(ctx context.Context, key string) (unlock func(), err error) {
	s.mu.Lock()
	l, ok := s.incidents[key]
	if !ok {
		l = &keyLock{turn: make(chan struct{}, 1)}
		s.incidents[key] = l
	}
	l.users++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		if l.users--; l.users == 0 {
			delete(s.incidents, key)
		}
		s.mu.Unlock()
	}
	select {
	case l.turn <- struct{}{}:
		return func() { <-l.turn; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// firstKey is a connection and what is posted to it: DevLake creates the connection's board (for
// issues) or CI/CD scope (for deployments) in the first write of each.
type firstKey struct {
	conn uint64
	kind devlake.Kind
}

// firstPost serialises the posts of one kind to one connection until one of them succeeded:
// concurrent first writes race inside DevLake on creating the board or scope (400, SQLSTATE
// 23505). After that, posts go out concurrently.
type firstPost struct {
	turn chan struct{} // holds a token while a post is out
	done atomic.Bool
}

// firstTurn waits until a post of kind to conn may go out. release must be called with whether the
// post succeeded; it is a no-op once one has.
func (s *Sink) firstTurn(ctx context.Context, conn uint64, kind devlake.Kind) (release func(ok bool), err error) {
	s.mu.Lock()
	f, ok := s.firsts[firstKey{conn, kind}]
	if !ok {
		f = &firstPost{turn: make(chan struct{}, 1)}
		s.firsts[firstKey{conn, kind}] = f
	}
	s.mu.Unlock()
	noop := func(bool) {}
	if f.done.Load() {
		return noop, nil
	}
	select {
	case f.turn <- struct{}{}:
	case <-ctx.Done():
		return noop, ctx.Err()
	}
	if f.done.Load() {
		<-f.turn
		return noop, nil
	}
	return func(ok bool) {
		if ok {
			f.done.Store(true)
		}
		<-f.turn
	}, nil
}

// New returns a sink.
func New(p Poster, s Store, o Observer, opts Options) *Sink {
	if opts.Attempts < 1 {
		opts.Attempts = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Breaker.Failures < 1 {
		opts.Breaker.Failures = 1
	}
	return &Sink{poster: p, store: s, obs: o, opts: opts, breakers: map[uint64]*breaker{}, firsts: map[firstKey]*firstPost{},
		incidents: map[string]*keyLock{}}
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err must be dead-lettered instead of retried.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Result says what a delivery did, for the log line at the edge.
type Result struct {
	// Skipped is set when the event was not posted anywhere, with a Skip* reason.
	Skipped string
	// Posted, Done and Failed count targets: posted now, already done (ledger), failed.
	Posted, Done, Failed int
	// Changed counts targets that had an earlier version of this deployment (kept as it was).
	Changed int
}

type targetOutcome struct {
	posted  bool
	changed bool
	err     error
}

// targets resolves the event's routing targets to distinct connections; a project without a
// connection is a permanent error for that target.
func (s *Sink) targets(ts []events.Target) ([]Connection, []error) {
	var conns []Connection
	var errs []error
	seen := map[uint64]bool{}
	for _, t := range ts {
		c, ok := s.opts.Connections[t.ProjectID]
		if !ok {
			errs = append(errs, permanentError{fmt.Errorf("project %q (%s %s): no DevLake connection configured", t.ProjectID, t.Scope, t.Team)})
			continue
		}
		if !seen[c.ID] {
			seen[c.ID] = true
			conns = append(conns, c)
		}
	}
	sort.Slice(conns, func(i, j int) bool { return conns[i].ID < conns[j].ID })
	return conns, errs
}

// each runs fn for every connection in parallel and joins the outcomes into one error: retryable
// if any failure is retryable (the retry repeats only what is not in the ledger), else permanent.
func (s *Sink) each(ctx context.Context, conns []Connection, errs []error, fn func(context.Context, Connection) targetOutcome) (Result, error) {
	outs := make([]targetOutcome, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { outs[i] = fn(ctx, c) })
	}
	wg.Wait()
	var r Result
	for _, o := range outs {
		switch {
		case o.err != nil:
			errs = append(errs, o.err)
		case o.posted:
			r.Posted++
		default:
			r.Done++
		}
		if o.changed {
			r.Changed++
		}
	}
	r.Failed = len(errs)
	var retryable []error
	for _, e := range errs {
		if !IsPermanent(e) {
			retryable = append(retryable, e)
		}
	}
	switch {
	case len(errs) == 0:
		return r, nil
	case len(retryable) > 0:
		// Retry: the permanent failures are posted again on the next delivery and dead-lettered
		// once nothing retryable is left. They must not make the whole error look permanent.
		return r, retryError{msg: errors.Join(errs...).Error(), errs: retryable}
	default:
		return r, permanentError{errors.Join(errs...)}
	}
}

// retryError is a delivery that failed on some connections, at least one of them retryably. It
// unwraps to the retryable failures only, so IsPermanent is false for it.
type retryError struct {
	msg  string
	errs []error
}

func (e retryError) Error() string   { return e.msg }
func (e retryError) Unwrap() []error { return e.errs }

// deploymentRecord is the ledger entry of a deployment posted on a connection.
type deploymentRecord struct {
	DeploymentID string    `json:"deployment_id"`
	Digest       string    `json:"digest"`
	PostedAt     time.Time `json:"posted_at"`
}

// Deployment posts a deployment to every connection it is routed to that has not had it yet.
func (s *Sink) Deployment(ctx context.Context, ev events.DeploymentEnriched) (Result, error) {
	if _, skip := BuildDeployment(ev, 0, s.opts.GitOpsFallback); skip != "" {
		s.obs.Skipped(devlake.KindDeployments, skip)
		return Result{Skipped: skip}, nil
	}
	conns, errs := s.targets(ev.Routing.Targets)
	if len(conns) == 0 && len(errs) == 0 {
		s.obs.Skipped(devlake.KindDeployments, SkipNoTargets)
		return Result{Skipped: SkipNoTargets}, nil
	}
	return s.each(ctx, conns, errs, func(ctx context.Context, c Connection) targetOutcome {
		payload, _ := BuildDeployment(ev, c.ID, s.opts.GitOpsFallback)
		body, err := json.Marshal(payload)
		if err != nil {
			return targetOutcome{err: permanentError{fmt.Errorf("encode deployment: %w", err)}}
		}
		key := LedgerKey("deployment", c.ID, LogicalID(ev))
		digest := digestOf(body)
		old, _, err := s.store.Get(ctx, key)
		posted := false
		switch {
		case err == nil:
			var rec deploymentRecord
			if json.Unmarshal(old, &rec) == nil && rec.Digest != digest {
				// Re-posting the id with other commits would leave DevLake's old commit rows
				// behind; the first version stands, and so do its pull requests.
				s.obs.LedgerSkip(devlake.KindDeployments, LedgerChanged)
				return targetOutcome{changed: true}
			}
			s.obs.LedgerSkip(devlake.KindDeployments, LedgerDuplicate)
		case !errors.Is(err, ErrNotFound):
			return targetOutcome{err: fmt.Errorf("connection %d: read ledger: %w", c.ID, err)}
		default:
			if err := s.post(ctx, c, devlake.KindDeployments, body); err != nil {
				return targetOutcome{err: targetError(c, "deployment "+payload.ID, err)}
			}
			rec, _ := json.Marshal(deploymentRecord{DeploymentID: payload.ID, Digest: digest, PostedAt: s.opts.Now().UTC()})
			if _, err := s.store.Create(ctx, key, rec); err != nil && !errors.Is(err, ErrExists) {
				// Posted but not recorded: the retry posts again, which DevLake absorbs as an upsert.
				return targetOutcome{err: fmt.Errorf("connection %d: record deployment %s: %w", c.ID, payload.ID, err)}
			}
			posted = true
		}
		// Pull requests follow their deployment, also when it was posted by an earlier delivery
		// whose pull request posts failed.
		if s.opts.PullRequests {
			for _, pr := range BuildPullRequests(ev, c.ID, payload, s.opts.PRCreatedFromFirstCommit) {
				if err := s.pullRequestOn(ctx, c, pr); err != nil {
					return targetOutcome{err: err}
				}
			}
		}
		return targetOutcome{posted: posted}
	})
}

// pullRequestRecord is the ledger entry of a pull request posted on a connection.
type pullRequestRecord struct {
	Repo     string    `json:"repo"`
	Digest   string    `json:"digest"`
	PostedAt time.Time `json:"posted_at"`
}

// LedgerPRKeyTaken is the ledger skip of a pull request whose number another repository's pull
// request already holds on the connection: DevLake's row id is webhook:<connection>:<number>, so
// posting it would overwrite the other one. The first stands.
const LedgerPRKeyTaken = "key_taken"

// pullRequestOn posts one pull request unless the ledger shows it posted with the same content.
// A pull request row has no child rows, so a changed one is posted again.
func (s *Sink) pullRequestOn(ctx context.Context, c Connection, pr PullRequestPost) error {
	body, err := json.Marshal(pr.Body)
	if err != nil {
		return permanentError{fmt.Errorf("encode pull request: %w", err)}
	}
	key := LedgerKey("pull_request", c.ID, fmt.Sprint(pr.Body.PullRequestKey))
	digest := digestOf(body)
	raw, rev, err := s.store.Get(ctx, key)
	found := err == nil
	switch {
	case found:
		var rec pullRequestRecord
		_ = json.Unmarshal(raw, &rec)
		switch {
		case rec.Repo != pr.Repo:
			s.obs.LedgerSkip(devlake.KindPullRequests, LedgerPRKeyTaken)
			return nil
		case rec.Digest == digest:
			s.obs.LedgerSkip(devlake.KindPullRequests, LedgerDuplicate)
			return nil
		}
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("connection %d: read ledger: %w", c.ID, err)
	}
	if err := s.post(ctx, c, devlake.KindPullRequests, body); err != nil {
		return targetError(c, fmt.Sprintf("pull request %s#%d", pr.Repo, pr.Body.PullRequestKey), err)
	}
	rec, _ := json.Marshal(pullRequestRecord{Repo: pr.Repo, Digest: digest, PostedAt: s.opts.Now().UTC()})
	if found {
		_, err = s.store.Update(ctx, key, rec, rev)
	} else {
		_, err = s.store.Create(ctx, key, rec)
	}
	if err != nil && !errors.Is(err, ErrExists) && !errors.Is(err, ErrConflict) {
		// Posted but not recorded: the retry posts again, an upsert.
		return fmt.Errorf("connection %d: record pull request %d: %w", c.ID, pr.Body.PullRequestKey, err)
	}
	return nil
}

// incidentState is the last incident state posted on a connection. Payload is kept so a replica
// that lost a race can restore the newest state in DevLake.
type incidentState struct {
	EventID     string          `json:"event_id"`
	ObservedAt  time.Time       `json:"observed_at"`
	UpdatedAt   time.Time       `json:"updated_at,omitzero"`
	Resolved    bool            `json:"resolved"`
	Fingerprint string          `json:"fingerprint"`
	PostedAt    time.Time       `json:"posted_at"`
	Payload     json.RawMessage `json:"payload"`
	// Restore marks that DevLake may hold an older state than this one (a restore is owed): the
	// next delivery of any state of the incident posts this one again.
	Restore bool `json:"restore,omitempty"`
}

// newer reports whether a is a later observation than b: by ObservedAt, then the source's
// UpdatedAt, then resolved over unresolved. Equal states are not newer.
func newer(a, b incidentState) bool {
	if !a.ObservedAt.Equal(b.ObservedAt) {
		return a.ObservedAt.After(b.ObservedAt)
	}
	if !a.UpdatedAt.Equal(b.UpdatedAt) {
		return a.UpdatedAt.After(b.UpdatedAt)
	}
	return a.Resolved && !b.Resolved
}

// maxRaces bounds compare-and-set rounds against other replicas within one delivery; running out
// is a retryable error (the redelivery starts over).
const maxRaces = 16

// Incident posts an incident state to every connection it is routed to, unless the connection
// already has this state or a newer one. States only move forward, also across replicas: the
// last posted state per (incident, connection) is written with compare-and-set, and a replica
// that posted an older state than the one that won restores the winner. Within a replica, the
// states of one incident on one connection are handled one at a time, so no state is posted twice.
func (s *Sink) Incident(ctx context.Context, ev events.IncidentEnriched) (Result, error) {
	conns, errs := s.targets(ev.Routing.Targets)
	if len(conns) == 0 && len(errs) == 0 {
		s.obs.Skipped(devlake.KindIssues, SkipNoTargets)
		return Result{Skipped: SkipNoTargets}, nil
	}
	body, err := json.Marshal(BuildIssue(ev))
	if err != nil {
		return Result{}, permanentError{fmt.Errorf("encode incident: %w", err)}
	}
	mine := incidentState{EventID: ev.ID, ObservedAt: ev.ObservedAt.UTC(), UpdatedAt: ev.UpdatedAt.UTC(),
		Resolved: ev.Resolved, Fingerprint: ev.Fingerprint, Payload: body}
	return s.each(ctx, conns, errs, func(ctx context.Context, c Connection) targetOutcome {
		return s.incidentOn(ctx, c, ev, mine)
	})
}

func (s *Sink) incidentOn(ctx context.Context, c Connection, ev events.IncidentEnriched, mine incidentState) targetOutcome {
	key := LedgerKey("incident", c.ID, ev.IncidentID)
	// Every post precedes the compare-and-set that records it, so deliveries of states of one
	// incident that overlap (concurrent handlers) would all read the same revision and post, and
	// every one that lost the compare-and-set would post again: its own state when it is newer, the
	// winner's as a restore otherwise (measured: 13 posts for 7 states). Within this replica the
	// states of an incident therefore go one at a time; compare-and-set and restores remain for
	// races between replicas.
	unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return targetOutcome{err: err}
	}
	defer unlock()
	posted := false
	for round := range maxRaces {
		if round > 0 {
			// Lost a race: let the winner finish before reading again.
			t := time.NewTimer(time.Duration(s.opts.Rand() * float64(time.Duration(round)*time.Millisecond)))
			select {
			case <-ctx.Done():
				t.Stop()
				return targetOutcome{err: ctx.Err()}
			case <-t.C:
			}
		}
		raw, rev, err := s.store.Get(ctx, key)
		var cur incidentState
		found := err == nil
		switch {
		case found:
			if err := json.Unmarshal(raw, &cur); err != nil {
				return targetOutcome{err: fmt.Errorf("connection %d: decode incident state %s: %w", c.ID, key, err)}
			}
		case !errors.Is(err, ErrNotFound):
			return targetOutcome{err: fmt.Errorf("connection %d: read incident state: %w", c.ID, err)}
		}
		if found && !newer(mine, cur) {
			if !posted && !cur.Restore {
				reason := LedgerStale
				if cur.EventID == mine.EventID || cur.Fingerprint == mine.Fingerprint && !newer(cur, mine) {
					reason = LedgerDuplicate
				}
				s.obs.LedgerSkip(devlake.KindIssues, reason)
				return targetOutcome{}
			}
			// DevLake may hold an older state than the ledger's: this delivery posted one after a
			// newer state won the compare-and-set, or an earlier restore failed. Record that first,
			// so a restore that fails now is repeated by the next delivery of any state of the
			// incident instead of being forgotten; then post the newest state again and clear the
			// mark with a compare-and-set, so a post racing with the restore is detected by one of
			// the two and repeated: the last successful compare-and-set is always of the state
			// DevLake received last.
			if !cur.Restore {
				cur.Restore = true
				marked, _ := json.Marshal(cur)
				switch rev, err = s.store.Update(ctx, key, marked, rev); {
				case errors.Is(err, ErrConflict):
					continue
				case err != nil:
					return targetOutcome{err: fmt.Errorf("connection %d: mark incident %s for restore: %w", c.ID, ev.Key, err)}
				}
			}
			if err := s.post(ctx, c, devlake.KindIssues, cur.Payload); err != nil {
				return targetOutcome{err: targetError(c, "incident "+ev.Key+" (restoring newer state)", err)}
			}
			cur.Restore = false
			restored, _ := json.Marshal(cur)
			_, err := s.store.Update(ctx, key, restored, rev)
			switch {
			case err == nil:
				return targetOutcome{posted: true}
			case errors.Is(err, ErrConflict):
				continue
			default:
				return targetOutcome{err: fmt.Errorf("connection %d: record incident %s: %w", c.ID, ev.Key, err)}
			}
		}
		if err := s.post(ctx, c, devlake.KindIssues, mine.Payload); err != nil {
			return targetOutcome{err: targetError(c, "incident "+ev.Key, err)}
		}
		posted = true
		mine.PostedAt = s.opts.Now().UTC()
		val, _ := json.Marshal(mine)
		if found {
			_, err = s.store.Update(ctx, key, val, rev)
		} else {
			_, err = s.store.Create(ctx, key, val)
		}
		switch {
		case err == nil:
			return targetOutcome{posted: true}
		case errors.Is(err, ErrConflict), errors.Is(err, ErrExists):
			continue // another replica wrote meanwhile: compare again
		default:
			return targetOutcome{err: fmt.Errorf("connection %d: record incident %s: %w", c.ID, ev.Key, err)}
		}
	}
	return targetOutcome{err: fmt.Errorf("connection %d: incident %s: state kept changing under %d compare-and-set rounds", c.ID, ev.Key, maxRaces)}
}

func targetError(c Connection, what string, err error) error {
	e := fmt.Errorf("connection %d (project %s): post %s: %w", c.ID, c.ProjectID, what, err)
	if devlake.ClassOf(err) == devlake.ClassPermanent {
		return permanentError{e}
	}
	return e
}

func (s *Sink) breaker(conn uint64) *breaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.breakers[conn]
	if !ok {
		b = newBreaker(s.opts.Breaker)
		s.breakers[conn] = b
	}
	return b
}

// post sends body to a connection through its circuit breaker, retrying retryable failures with
// exponential backoff and jitter while the circuit stays closed and the delivery has time left.
// Until a post of its kind to the connection succeeded, posts go out one at a time (firstTurn).
func (s *Sink) post(ctx context.Context, c Connection, kind devlake.Kind, body []byte) error {
	b := s.breaker(c.ID)
	for attempt := 1; ; attempt++ {
		probe, tr, err := b.allow(s.opts.Now())
		s.report(c.ID, tr)
		if err != nil {
			s.obs.Posted(c.ID, kind, "circuit_open", err)
			return err
		}
		if dl, ok := ctx.Deadline(); ok && s.opts.RequestTimeout > 0 && time.Until(dl) < s.opts.RequestTimeout {
			b.record(s.opts.Now(), probe, nil, true)
			return fmt.Errorf("no time left in this delivery for another post: %w", context.DeadlineExceeded)
		}
		release, err := s.firstTurn(ctx, c.ID, kind)
		if err != nil {
			b.record(s.opts.Now(), probe, nil, true)
			return err
		}
		err = s.poster.Post(ctx, kind, c.ID, c.Key, body)
		release(err == nil)
		s.report(c.ID, b.record(s.opts.Now(), probe, err, err != nil && ctx.Err() != nil))
		if err == nil {
			s.obs.Posted(c.ID, kind, "ok", nil)
			return nil
		}
		class := devlake.ClassOf(err)
		s.obs.Posted(c.ID, kind, class.String(), err)
		if class != devlake.ClassRetryable || attempt >= s.opts.Attempts || ctx.Err() != nil {
			return err
		}
		delay := s.backoff(attempt)
		var de *devlake.Error
		if errors.As(err, &de) && de.RetryAfter > delay {
			if de.RetryAfter > s.opts.MaxBackoff {
				// Longer than this delivery waits between posts: the redelivery waits for it (RetryAfter).
				return err
			}
			delay = de.RetryAfter
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// RetryAfter returns the longest Retry-After of DevLake's answers in err, or 0: the delivery
// must not be repeated sooner.
func RetryAfter(err error) time.Duration {
	var d time.Duration
	var walk func(error)
	// The tree of joined and wrapped errors is walked by hand, not with errors.As, which stops at
	// the first match: every answer's Retry-After counts.
	walk = func(err error) {
		if de, ok := err.(*devlake.Error); ok { //nolint:errorlint // walks the tree itself (above)
			d = max(d, de.RetryAfter)
		}
		switch u := err.(type) { //nolint:errorlint // walks the tree itself (above)
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	walk(err)
	return d
}

// backoff is Backoff·2^(attempt−1) capped at MaxBackoff, with "equal jitter": half fixed, half random.
func (s *Sink) backoff(attempt int) time.Duration {
	d := s.opts.Backoff
	for i := 1; i < attempt && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.MaxBackoff)
	return d/2 + time.Duration(s.opts.Rand()*float64(d/2))
}

func (s *Sink) report(conn uint64, tr *transition) {
	if tr != nil && tr.from != tr.to {
		s.obs.CircuitChanged(conn, tr.from, tr.to, tr.cause)
	}
}

// CircuitStates returns the state of every connection's circuit that has seen a post.
func (s *Sink) CircuitStates() map[uint64]State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64]State, len(s.breakers))
	for id, b := range s.breakers {
		b.mu.Lock()
		out[id] = b.state
		b.mu.Unlock()
	}
	return out
}

// ConfigFaults returns the connections paused by a configuration fault, by connection id.
func (s *Sink) ConfigFaults() []ConfigFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ConfigFault
	for id, b := range s.breakers {
		b.mu.Lock()
		if b.fault != nil {
			f := *b.fault
			f.Connection = id
			out = append(out, f)
		}
		b.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Connection < out[j].Connection })
	return out
}

// Ready is the sink's readiness: an error naming every connection paused by a configuration
// fault, with DevLake's answer and what to check, or nil.
func (s *Sink) Ready() error {
	var errs []error
	for _, f := range s.ConfigFaults() {
		project := "?"
		for _, c := range s.opts.Connections {
			if c.ID == f.Connection {
				project = c.ProjectID
				break
			}
		}
		errs = append(errs, fmt.Errorf("connection %d (project %s) paused by a configuration fault since %s, next probe %s: %w; %s",
			f.Connection, project, f.Since.UTC().Format(time.RFC3339), f.NextProbe.UTC().Format(time.RFC3339), f.Cause, f.Hint()))
	}
	return errors.Join(errs...)
}

// Hint says what to check for the fault's answer.
func (f ConfigFault) Hint() string {
	var de *devlake.Error
	errors.As(f.Cause, &de)
	switch {
	case de == nil:
		return "check integration.devlake.base_url"
	case de.Status == 401 || de.Status == 403:
		return fmt.Sprintf("check the API key of connection %d (devlake_sink.connections[].token_env) and that it is the key of that connection", f.Connection)
	case de.Kind == devlake.KindPullRequests && de.Status == 404 && !strings.HasPrefix(de.Message, devlake.NotDevLake):
		return "DevLake before v1.0.3 has no pull_requests endpoint: upgrade it or set devlake_sink.pull_requests: false"
	case de.Status == 404 && !strings.HasPrefix(de.Message, devlake.NotDevLake):
		return fmt.Sprintf("DevLake has no webhook connection %d: check devlake_sink.connections", f.Connection)
	}
	return "the answer is not DevLake's: check integration.devlake.base_url (DevLake's backend, http://<lake>:8080, or config-ui's https://<host>/api) and the ingress in front of it"
}

// LedgerKey is the key-value key of an entity on a connection: <kind>.<connection>.<id>, with ids
// outside the key alphabet hashed.
func LedgerKey(kind string, conn uint64, id string) string {
	if !safeID(id) || len(id) > 200 {
		sum := sha256.Sum256([]byte(id))
		id = "h-" + hex.EncodeToString(sum[:16])
	}
	return fmt.Sprintf("%s.%d.%s", kind, conn, id)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
