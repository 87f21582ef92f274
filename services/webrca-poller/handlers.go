package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/poll"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/sso"
	"github.com/doraflow/doraflow/services/webrca-poller/internal/webrca"
)

// start wires the poller: SSO token source → WebRCA client → poll core on a KV store and the
// publisher, run by a loop on the service's errgroup.
func start(ctx context.Context, d *service.Deps[rules], creds credentials) error {
	cfg := d.Config.Webrca
	if !cfg.Enabled {
		d.Log.Info().Msg("WebRCA polling is disabled (webrca.enabled: false); nothing to do")
		d.Checks.Disable("webrca", "webrca.enabled: false")
		return nil
	}
	httpClient := &http.Client{} // per-request timeouts come from contexts
	var tokens *sso.Source
	m := newMetrics(d.Registry, func() bool { return tokens != nil && tokens.Err() != nil })
	tokens, err := sso.New(sso.Config{
		TokenURL: cfg.TokenURL, ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, Scope: cfg.Scope,
		OfflineToken: creds.OfflineToken, OfflineClientID: cfg.OfflineClientID,
		HTTPClient: httpClient, Timeout: cfg.RequestTimeout,
		Observe: m.tokenExchange,
	})
	if err != nil {
		return err
	}
	client, err := webrca.New(cfg.BaseURL, tokens, webrca.Options{PageSize: cfg.PageSize, MaxPages: cfg.MaxPages,
		OrderBy: cfg.OrderBy, RequestTimeout: cfg.RequestTimeout, HTTPClient: httpClient,
		UserAgent: "doraflow-webrca-poller/" + version})
	if err != nil {
		return err
	}
	kv, err := d.Topology.EnsureKV(ctx, d.JS, stateBucket)
	if err != nil {
		return err
	}
	lister := listerFunc(func(ctx context.Context) ([]webrca.Incident, error) { return client.List(ctx, cfg.ProductIDs) })
	l := &pollLoop{
		poller: poll.New(poll.Config{Products: cfg.Products, UIBase: cfg.IncidentURL}, lister,
			kvStore{kv: kv}, eventPublisher{pub: d.Publisher}, time.Now),
		schedule: poll.Schedule{Interval: cfg.Interval,
			Jitter: time.Duration(cfg.JitterRatio * float64(cfg.Interval)), Backoff: cfg.RetryBackoff},
		unreadyAfter: cfg.UnreadyAfter,
		tokens:       tokens,
		m:            m,
		log:          d.Log,
		now:          time.Now,
	}
	d.Checks.Add("webrca", l.ready)
	d.Go(l.run)
	d.Log.Info().Str("base_url", logging.RedactURL(cfg.BaseURL)).Str("grant", string(tokens.Grant())).Strs("products", cfg.Products).
		Strs("product_ids", cfg.ProductIDs).Dur("interval", cfg.Interval).Msg("polling WebRCA")
	return nil
}

type listerFunc func(ctx context.Context) ([]webrca.Incident, error)

func (f listerFunc) List(ctx context.Context) ([]webrca.Incident, error) { return f(ctx) }

// pollLoop polls on a schedule, counts and logs what each poll did, and tracks readiness.
type pollLoop struct {
	poller       *poll.Poller
	schedule     poll.Schedule
	unreadyAfter time.Duration
	tokens       interface{ Err() error }
	m            *metrics
	log          zerolog.Logger
	now          func() time.Time

	mu           sync.Mutex
	failures     int
	failingSince time.Time
	lastErr      error
	// faulty is set while the last poll failed with a configuration fault (configFault).
	faulty bool
}

// run polls at once, then after each wait, until ctx is done.
func (l *pollLoop) run(ctx context.Context) error {
	for {
		wait := l.once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// once runs one poll and returns the wait before the next.
func (l *pollLoop) once(ctx context.Context) time.Duration {
	started := l.now()
	res, err := l.poller.Poll(ctx)
	took := l.now().Sub(started)
	// What was published before a failure is counted and logged like any other.
	for _, p := range res.Published {
		l.m.eventPublished(p.Event.Change)
		if p.UnknownStatus {
			l.m.statusSeen(p.Event.Status)
		}
		if p.NewlyInferred {
			l.m.inferred.Inc()
		}
		if p.Clamped {
			l.m.clamped.Inc()
			l.log.Warn().Str("incident_id", p.Event.IncidentID).Str("key", p.Event.Key).
				Msg("incident resolved before it was created (data error); resolution time set to created_at")
		}
		l.log.Debug().Str("incident_id", p.Event.IncidentID).Str("key", p.Event.Key).Str("event_id", p.Event.ID).
			Str("change", string(p.Event.Change)).Str("status", p.Event.Status).Msg("published incident")
	}
	for _, id := range res.NewlyInvalid {
		l.m.invalidated.Inc()
		l.log.Warn().Str("incident_id", id).
			Msg("published incident is now marked invalid; it is no longer updated and DevLake has no delete: remove it by hand")
	}
	for _, r := range res.Rejected {
		l.m.rejected.Inc()
		l.log.Warn().Str("incident_id", r.IncidentID).Err(r.Err).Msg("incident skipped: its event is invalid")
	}
	if err != nil && ctx.Err() != nil {
		return 0 // shutting down: an interrupted poll is not a failure
	}
	l.m.poll(outcome(err), took.Seconds())
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.failures, l.failingSince, l.lastErr, l.faulty = 0, time.Time{}, nil, false
		l.m.configFault.Set(0)
		l.m.succeeded(float64(l.now().UnixMilli())/1000, res.Matched, res.OtherProduct, res.Invalid, res.InvalidPublished)
		ev := l.log.Debug()
		if len(res.Published) > 0 {
			ev = l.log.Info()
		}
		ev.Int("listed", res.Listed).Int("matched", res.Matched).Int("published", len(res.Published)).
			Dur("took", took).Msg("polled WebRCA")
		return l.schedule.Next(0, false, 0, rand.Float64())
	}
	l.failures++
	if l.failingSince.IsZero() {
		l.failingSince = started
	}
	l.lastErr = err
	l.m.failed(l.failures)
	source, status, faulty := configFault(err)
	l.m.configFaulty(faulty, source, status)
	retryable, retryAfter := classify(err)
	wait := l.schedule.Next(l.failures, retryable || faulty, retryAfter, rand.Float64())
	ev := l.log.Warn()
	msg := "poll failed"
	if faulty && !l.faulty {
		// Logged as an error once per fault; the retries are warnings.
		ev, msg = l.log.Error(), "poll failed: "+source+" configuration fault; retried with backoff until it is fixed (see /readyz)"
	}
	l.faulty = faulty
	ev.Err(err).Str("outcome", outcome(err)).Int("consecutive_failures", l.failures).
		Int("published", len(res.Published)).Dur("retry_in", wait).Msg(msg)
	return wait
}

// configFault says whether a failed poll is a configuration fault, and of which system: SSO
// rejecting the credentials, or WebRCA answering 401/403, 404 or another 4xx, or a web page.
// Every poll fails the same way until the configuration changes.
func configFault(err error) (source string, status int, ok bool) {
	var rej *sso.RejectedError
	var we *webrca.Error
	switch {
	case errors.As(err, &rej):
		return "sso", rej.Status, true
	case errors.As(err, &we) && we.ConfigFault():
		return "webrca", we.Status, true
	}
	return "", 0, false
}

// hint says what to check for a configuration fault of source with status.
func hint(source string, status int) string {
	switch {
	case source == "sso":
		return "check OFFLINE_TOKEN (an offline token expires after 30 days unused, or when revoked) or " +
			"WEBRCA_CLIENT_ID and WEBRCA_CLIENT_SECRET, and webrca.token_url"
	case status == 401 || status == 403:
		return "SSO issued a token that WebRCA refuses: check the account's access to WebRCA and webrca.scope"
	}
	return "check webrca.base_url: the API host (such as https://api.openshift.com), not the WebRCA web page"
}

// ready fails while SSO rejects the credentials or the last poll failed with a configuration
// fault, and when polling has failed for unreadyAfter.
func (l *pollLoop) ready(context.Context) error {
	if err := l.tokens.Err(); err != nil {
		return fmt.Errorf("SSO credentials rejected: %w; %s", err, hint("sso", 0))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if source, status, ok := configFault(l.lastErr); ok {
		return fmt.Errorf("WebRCA configuration fault since %s (%d polls): %w; %s",
			l.failingSince.UTC().Format(time.RFC3339), l.failures, l.lastErr, hint(source, status))
	}
	if !l.failingSince.IsZero() && l.now().Sub(l.failingSince) >= l.unreadyAfter {
		return fmt.Errorf("polling WebRCA has failed for %s (%d attempts): %w",
			l.now().Sub(l.failingSince).Round(time.Second), l.failures, l.lastErr)
	}
	return nil
}

// outcome is the bounded polls_total label of a poll's result.
func outcome(err error) string {
	var we *webrca.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, sso.ErrRejected):
		return "token_rejected"
	case errors.As(err, &we):
		return string(we.Kind)
	case errors.Is(err, poll.ErrPublish):
		return "publish_error"
	case errors.Is(err, poll.ErrState):
		return "state_error"
	}
	return "error"
}

// classify says whether a failed poll is worth retrying before the full interval, and the
// server's Retry-After.
func classify(err error) (retryable bool, retryAfter time.Duration) {
	var we *webrca.Error
	if errors.As(err, &we) {
		return we.Retryable(), we.RetryAfter
	}
	// NATS trouble (publish, KV) passes; retry soon.
	return true, 0
}
