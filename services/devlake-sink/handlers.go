package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/logging"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/devlake"
	"github.com/doraflow/doraflow/services/devlake-sink/internal/sink"
)

// Handler names; the durable consumers are devlake-sink-<name>, shared by every replica.
const (
	handlerDeployment = "post-deployment-on-enriched"
	handlerIncident   = "post-incident-on-enriched"
)

// documentEnv lists the seed's token for --help; the keys are read in start, once the YAML says
// which variables hold them.
func documentEnv(env *config.Env) {
	env.Secret(defaultTokenEnv, false, "DevLake API key of the connections without their own token_env (required when one uses it)")
}

// starter returns the Start hook. It closes over getenv because the variables holding the API keys
// are named in the YAML, which is loaded after the standard environment is read.
func starter(getenv func(string) string) func(context.Context, *service.Deps[rules]) error {
	return func(ctx context.Context, d *service.Deps[rules]) error {
		cfg := d.Config
		if !cfg.Integration.Devlake.Enabled {
			d.Log.Info().Msg("DevLake posting is disabled (integration.devlake.enabled: false); nothing to do")
			d.Checks.Disable("devlake", "integration.devlake.enabled: false")
			return nil
		}
		conns, err := readConnections(cfg.connectionPlans(), getenv)
		if err != nil {
			return err
		}
		s := cfg.Sink
		client, err := devlake.New(cfg.Integration.Devlake.BaseURL, s.Timeout, "doraflow-devlake-sink/"+version)
		if err != nil {
			return err
		}
		kv, err := d.Topology.EnsureKV(ctx, d.JS, ledgerBucket(d.Topology))
		if err != nil {
			return err
		}
		m := newMetrics(d.Registry, d.Log)
		for _, c := range conns {
			m.connection(c)
			d.Log.Info().Str("project_id", c.ProjectID).Uint64("connection", c.ID).Msg("posting to DevLake connection")
		}
		sk := sink.New(client, kvStore{kv: kv}, m, sink.Options{
			Connections: conns, Attempts: s.Attempts, Backoff: s.Backoff, MaxBackoff: s.MaxBackoff,
			RequestTimeout: s.Timeout, GitOpsFallback: s.GitOpsCommitFallback,
			PullRequests: s.PullRequests, PRCreatedFromFirstCommit: s.PullRequestCreatedFromFirstCommit,
			Breaker: sink.BreakerConfig{Failures: s.Breaker.Failures, OpenFor: s.Breaker.OpenFor,
				MaxOpenFor: s.Breaker.MaxOpenFor, ConfigOpenFor: s.Breaker.ConfigErrorOpenFor},
		})
		// Not ready while a connection is paused by a configuration fault: /readyz names it, with
		// DevLake's answer and what to check. An outage (5xx, timeouts) is not the sink's fault.
		d.Checks.Add("devlake", func(context.Context) error { return sk.Ready() })
		d.Registry.MustRegister(newFaultCollector(conns, sk.ConfigFaults))
		d.Log.Info().Str("base_url", logging.RedactURL(cfg.Integration.Devlake.BaseURL)).Int("connections", len(conns)).
			Msg("DevLake posting enabled")

		// MaxDeliver -1: a DevLake outage or misconfiguration never exhausts deliveries. Only
		// permanent errors (a 400 of DevLake's JSON about the message, no connection for a project,
		// undecodable events) are dead-lettered; everything else is
		// naked with a growing delay while the connection's circuit is open. Retries are the sink's
		// own (per post, with jitter), so the router adds none. Events are posted Concurrency at a
		// time: each is independent, and the ledger settles races as it does between replicas.
		handler := func(name, subject string) messaging.Handler {
			return messaging.Handler{Name: name, Stream: events.StreamEnriched, Subject: subject,
				AckWait: s.AckWait, MaxDeliver: -1, Retries: -1, Concurrency: s.Concurrency}
		}
		d.Router.Add(handler(handlerDeployment, events.SubjectDeploymentEnriched),
			messaging.Handle(func(ctx context.Context, in events.DeploymentEnriched) error {
				log := zerolog.Ctx(ctx).With().Str(logging.FieldApplication, in.Application).Logger()
				res, err := sk.Deployment(ctx, in)
				return settle(&log, "deployment", res, err)
			}))
		d.Router.Add(handler(handlerIncident, events.SubjectIncidentEnriched),
			messaging.Handle(func(ctx context.Context, in events.IncidentEnriched) error {
				log := zerolog.Ctx(ctx).With().Str(logging.FieldIncidentID, in.Key).Logger()
				res, err := sk.Incident(ctx, in)
				return settle(&log, "incident", res, err)
			}))
		return nil
	}
}

// settle logs a delivery's result once and turns the sink's error into the router's: permanent
// errors are dead-lettered with the reason, the rest are retried. Failures are logged by the router.
func settle(log *zerolog.Logger, what string, res sink.Result, err error) error {
	switch {
	case err != nil && sink.IsPermanent(err):
		return messaging.Permanent(err)
	case err != nil:
		err = fmt.Errorf("%d of %d DevLake connections failed: %w", res.Failed, res.Failed+res.Posted+res.Done, err)
		if d := sink.RetryAfter(err); d > 0 {
			return messaging.RetryAfter(err, d) // DevLake said when to come back
		}
		return err
	case res.Skipped != "":
		log.Warn().Str("reason", res.Skipped).Msg(what + " not posted to DevLake")
	case res.Changed > 0:
		log.Warn().Int("connections", res.Changed).
			Msg(what + " changed after it was posted; DevLake keeps the first version (its commit rows cannot be replaced)")
	default:
		log.Debug().Int("posted", res.Posted).Int("already_done", res.Done).Msg(what + " delivered")
	}
	return nil
}
