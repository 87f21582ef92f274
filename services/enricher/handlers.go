package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/enricher/internal/enrich"
	"github.com/doraflow/doraflow/services/enricher/internal/github"
)

// KV buckets.
const (
	// bucketProcessed holds one key per enriched event ID, written after the enriched event was
	// published; it outlives the raw stream's retention, so no redelivery is enriched twice.
	bucketProcessed = "enricher-processed"
	// bucketState holds deployment baselines, recent logical deployments and per-component
	// production history.
	bucketState = "enricher-state"
	// bucketCache holds GitHub answers that are immutable by SHA.
	bucketCache = "enricher-github-cache"
)

// Handler settings.
const (
	// deploymentAckWait covers a large first comparison with its pull-request batches. Work done
	// before a timeout is cached, so a redelivery continues where the last attempt stopped.
	deploymentAckWait = 2 * time.Minute
	// stateCacheEntries bounds the deployment handler's copy of state keys (a baseline per
	// component, environment and repository, logical deployments per component and environment, a
	// history per component).
	stateCacheEntries = 20000
)

func start(ctx context.Context, d *service.Deps[rules], creds credentials) error {
	m := newMetrics(d.Registry)
	processed, err := d.Topology.EnsureKV(ctx, d.JS, messaging.KV{Bucket: bucketProcessed,
		Description: "enricher: IDs of observed events already enriched", TTL: d.Topology.MaxAge})
	if err != nil {
		return err
	}
	state, err := d.Topology.EnsureKV(ctx, d.JS, messaging.KV{Bucket: bucketState,
		Description: "enricher: deployment baselines and production history per component"})
	if err != nil {
		return err
	}
	cache, err := d.Topology.EnsureKV(ctx, d.JS, messaging.KV{Bucket: bucketCache,
		Description: "enricher: GitHub answers, immutable by SHA", TTL: d.Config.Github.CacheTTL})
	if err != nil {
		return err
	}
	opts := github.Options{BaseURL: d.Config.Github.BaseURL, Token: creds.token.Reveal(),
		Timeout: d.Config.Github.Timeout, Observer: m}
	if creds.appID > 0 {
		opts.App = &github.AppCredentials{AppID: creds.appID, InstallationID: creds.installationID,
			PrivateKey: []byte(creds.appKey.Reveal())}
	}
	client, err := github.New(opts)
	if err != nil {
		return err
	}
	// A configuration fault pauses every GitHub request: logged once when it starts and once when
	// it ends; /readyz names it meanwhile; deployments wait in the stream (classify).
	m.onConfigFault = func(cause *github.ConfigError) {
		if cause != nil {
			d.Log.Error().Str("error", cause.Error()).Int("status", cause.Status).Time("next_probe", cause.NextProbe).
				Msg("GitHub configuration fault: every GitHub request is paused until a probe succeeds (see /readyz)")
			return
		}
		d.Log.Info().Msg("GitHub configuration fault cleared: a probe succeeded, enrichment resumes")
	}
	d.Checks.Add("github", func(context.Context) error { return client.Ready() })
	ghCache := newAsyncCache(d.JS, cache, github.ErrCacheMiss, func(error) { m.cacheWriteErrs.Inc() })
	d.Go(ghCache.drain)
	gh := github.NewCached(client, ghCache, m)
	cfg := d.Config.enrichConfig()
	h := &handlers{
		// Deployments read state through a revision-checked copy (no round trip per read); incident
		// linking, which cannot detect a stale copy, reads the bucket.
		enr:       enrich.New(cfg, gh, newCASStore(state, enrich.ErrNotFound, stateCacheEntries), nil),
		incidents: enrich.New(cfg, gh, kvStore{kv: state, miss: enrich.ErrNotFound}, nil),
		pub:       d.Publisher,
		seen:      processed,
		m:         m,
	}
	// One deployment at a time, in stream order, across all replicas (MaxAckPending 1): each
	// commit range starts where the previous deployment of the component ended, and while GitHub is
	// down or the quota is spent, consumption pauses instead of reordering. Unlimited deliveries: an
	// event is never dead-lettered because GitHub said no; only permanent errors are.
	d.Router.Add(messaging.Handler{Name: handlerDeployment, Stream: events.StreamRaw,
		Subject: events.SubjectDeploymentObserved, AckWait: deploymentAckWait, MaxDeliver: -1, MaxAckPending: 1},
		messaging.Handle(h.enrichDeployment))
	d.Router.Add(messaging.Handler{Name: handlerIncident, Stream: events.StreamRaw,
		Subject: events.SubjectIncidentObserved}, messaging.Handle(h.enrichIncident))

	ev := d.Log.Info().Str("github_base_url", logging.RedactURL(d.Config.Github.BaseURL)).Str("github_auth", creds.mode()).
		Str("global_project", d.Config.Integration.Devlake.ProjectID).
		Int("teams", len(d.Config.Integration.Devlake.Teams)).Int("products", len(d.Config.Enricher.Products)).
		Str("rollout_policy", d.Config.Enricher.Rollout.Policy).Int("rollout_overrides", len(d.Config.Enricher.Rollout.Components))
	ev.Msg("enrichment configured")
	if creds.mode() == "anonymous" {
		d.Log.Warn().Msg("no GitHub credentials: anonymous requests are limited to 60 per hour")
	}
	return nil
}

// Handler names.
const (
	handlerDeployment = "enrich-deployment-on-observed"
	handlerIncident   = "enrich-incident-on-observed"
)

type handlers struct {
	enr       *enrich.Enricher // deployments
	incidents *enrich.Enricher
	pub       *messaging.Publisher
	seen      jetstream.KeyValue
	m         *metrics
}

// enrichDeployment publishes the DeploymentEnriched of one DeploymentObserved, once. The order is
// what makes it exactly-once in effect: skip if the ID was processed; compute; commit the
// baselines and history with compare-and-set (a baseline remembers the state before the deployment
// that wrote it, so a redelivery recomputes the same event); publish (with the same ID as
// Nats-Msg-Id, so a republish after a crash is dropped by JetStream), then the change failures it
// reveals (GitOps reverts) on their own subject; mark the ID processed. State
// is committed before the event is published, so an event is never published from state another
// replica had already moved: the compare-and-set fails, and the retry recomputes.
func (h *handlers) enrichDeployment(ctx context.Context, in events.DeploymentObserved) error {
	log := zerolog.Ctx(ctx)
	if done, err := h.processed(ctx, in.ID); err != nil || done {
		if done {
			h.m.duplicate(kindDeployment)
			log.Warn().Str(logging.FieldApplication, in.Application).Msg("deployment already enriched; skipped")
		}
		return err
	}
	plan, err := h.plan(ctx, in)
	if err != nil {
		return err
	}
	if err := h.pub.Publish(ctx, plan.Event); err != nil {
		return err
	}
	// The change failures a revert reveals follow the revert's event; a crash in between
	// recomputes both, and JetStream drops what it already has (Nats-Msg-Id is each event's ID).
	for _, cf := range plan.Inferred {
		if err := h.pub.Publish(ctx, cf); err != nil {
			return err
		}
	}
	if err := h.markProcessed(ctx, in.ID); err != nil {
		return err
	}
	h.m.deploymentEnriched(plan.Event)
	h.m.inferred.Add(float64(len(plan.Inferred)))
	log.Debug().Str(logging.FieldApplication, in.Application).Int("commits", len(plan.Event.Commits)).
		Strs("quality", flagStrings(plan.Event.Quality)).Msg("deployment enriched")
	return nil
}

// plan computes the enriched deployment and commits its state. When another replica moved the
// state since this one read it, the commit fails before anything is published and the deployment
// is recomputed from fresh state at once (a few times; then the delivery is retried).
func (h *handlers) plan(ctx context.Context, in events.DeploymentObserved) (enrich.Plan, error) {
	const attempts = 4
	for attempt := 1; ; attempt++ {
		plan, err := h.enr.Deployment(ctx, in)
		if err != nil {
			return enrich.Plan{}, classify(err)
		}
		// An invalid event is a bug, not a condition that passes: dead-letter it rather than block
		// the ordered consumer.
		if err := plan.Event.Validate(); err != nil {
			return enrich.Plan{}, messaging.Permanent(err)
		}
		for _, cf := range plan.Inferred {
			if err := cf.Validate(); err != nil {
				return enrich.Plan{}, messaging.Permanent(err)
			}
		}
		err = h.enr.Apply(ctx, plan)
		if errors.Is(err, errStateMoved) {
			h.m.stateMoved.Inc()
			if attempt < attempts {
				continue
			}
		}
		return plan, err
	}
}

// enrichIncident publishes the IncidentEnriched of one IncidentObserved, once.
func (h *handlers) enrichIncident(ctx context.Context, in events.IncidentObserved) error {
	log := zerolog.Ctx(ctx)
	if done, err := h.processed(ctx, in.ID); err != nil || done {
		if done {
			h.m.duplicate(kindIncident)
			log.Warn().Str(logging.FieldIncidentID, in.IncidentID).Msg("incident already enriched; skipped")
		}
		return err
	}
	out, err := h.incidents.Incident(ctx, in)
	if err != nil {
		return classify(err)
	}
	if err := out.Validate(); err != nil {
		return messaging.Permanent(err)
	}
	if err := h.pub.Publish(ctx, out); err != nil {
		return err
	}
	if err := h.markProcessed(ctx, in.ID); err != nil {
		return err
	}
	h.m.incidentEnriched(out)
	log.Debug().Str(logging.FieldIncidentID, in.IncidentID).Strs("quality", flagStrings(out.Quality)).Msg("incident enriched")
	return nil
}

// classify marks errors that retrying cannot fix as permanent (dead-lettered with the reason).
// GitHub outages, rate limits and configuration faults stay retryable: the event waits, it is never
// dropped. A spent GitHub quota is retried when it resets, and a configuration fault at the
// client's next probe, not on the generic backoff.
func classify(err error) error {
	if enrich.IsPermanent(err) {
		return messaging.Permanent(err)
	}
	var ce *github.ConfigError
	if errors.As(err, &ce) {
		return messaging.RetryAfter(err, min(max(time.Until(ce.NextProbe), 0)+100*time.Millisecond, time.Hour))
	}
	var rl *github.RateLimitedError
	if errors.As(err, &rl) {
		// A second past the reset, so the first retry does not meet the old limit; at most an hour.
		return messaging.RetryAfter(err, min(rl.RetryAfter(time.Now())+time.Second, time.Hour))
	}
	return err
}

func (h *handlers) processed(ctx context.Context, id string) (bool, error) {
	_, err := h.seen.Get(ctx, processedKey(id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("check %s processed: %w", id, err)
	}
	return true, nil
}

// markProcessed records id with an atomic create; losing the race to another replica is fine.
func (h *handlers) markProcessed(ctx context.Context, id string) error {
	_, err := h.seen.Create(ctx, processedKey(id), []byte(time.Now().UTC().Format(time.RFC3339)))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("mark %s processed: %w", id, err)
	}
	return nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// processedKey is the event ID when it is a valid KV key (doraflow's IDs are), else its hash.
func processedKey(id string) string {
	if plainKey.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256-" + hex.EncodeToString(sum[:])
}

func flagStrings(fs []events.QualityFlag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}
