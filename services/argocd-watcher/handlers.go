package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/doraflow/doraflow/internal/service"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/detect"
)

// startupProbeTimeout bounds the first call to the API server; without an answer the service fails
// fast with the reason instead of starting unready.
const startupProbeTimeout = 15 * time.Second

// start wires the watcher: Kubernetes client, checkpoint bucket, informer, processor.
func start(ctx context.Context, d *service.Deps[rules], f *watcherFlags) error {
	a := d.Config.Argocd
	if !a.Enabled {
		d.Log.Info().Msg("Argo CD watching is disabled (argocd.enabled: false); nothing to do")
		d.Checks.Disable("argocd", "argocd.enabled: false")
		return nil
	}
	if f.namespaces != "" {
		a.Namespaces = nil
		for ns := range strings.SplitSeq(f.namespaces, ",") {
			if ns = strings.TrimSpace(ns); !dnsLabel.MatchString(ns) {
				return fmt.Errorf("--namespace: %q is not a namespace name", ns)
			}
			a.Namespaces = append(a.Namespaces, strings.TrimSpace(ns))
		}
	}
	kubeconfig := f.kubeconfig
	if kubeconfig == "" {
		kubeconfig = f.envKubeconfig
	}
	restCfg, err := argocd.RESTConfig(kubeconfig, f.context)
	if err != nil {
		return fmt.Errorf("argocd: %w", err)
	}
	client, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("argocd: Kubernetes client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, startupProbeTimeout)
	err = argocd.Probe(pctx, client, a.Namespaces)
	cancel()
	if err != nil {
		return fmt.Errorf("argocd: %s: %w", restCfg.Host, err)
	}

	kv, err := d.Topology.EnsureKV(ctx, d.JS, checkpointBucket)
	if err != nil {
		return err
	}
	store := &checkpoints{kv: kv, instance: a.Instance}
	since, err := store.watchingSince(ctx, time.Now())
	if err != nil {
		return err
	}
	m := newMetrics(d.Registry)
	w, err := argocd.New(argocd.Options{Client: client, Namespaces: a.Namespaces, LabelSelector: a.LabelSelector,
		Resync: a.Resync, Workers: a.Workers, Observer: m})
	if err != nil {
		return fmt.Errorf("argocd: %w", err)
	}
	m.watcherGauges(d.Registry, w)
	d.Checks.Add("argocd", w.Ready)
	p := &processor{cfg: a.detectConfig(since, f.backfill), store: store, pub: d.Publisher, m: m, log: d.Log,
		now: time.Now, namespaces: a.Namespaces}
	d.Go(func(ctx context.Context) error { return p.watchBackfillRequests(ctx, w) })
	d.Go(func(ctx context.Context) error {
		return w.Run(ctx, p, func(ctx context.Context) error {
			// Collection is housekeeping: a failure leaves stale keys behind, never wrong events.
			if err := p.collect(ctx, w); err != nil && ctx.Err() == nil {
				d.Log.Warn().Err(err).Msg("collect checkpoints of deleted Applications")
			}
			return nil
		})
	})
	d.Log.Info().Str("instance", a.Instance).Str("api_server", restCfg.Host).Strs("namespaces", a.Namespaces).
		Time("watching_since", since).Bool("backfill", p.cfg.Backfill).Msg("watching Argo CD Applications")
	return nil
}

// publisher is what the processor needs from messaging.Publisher.
type publisher interface {
	Publish(ctx context.Context, ev events.Event) error
}

// processor handles one Application key: load its checkpoint, detect, publish, then checkpoint.
// The checkpoint is written only after every event was published; a crash in between republishes
// the same deterministic IDs, which JetStream drops as duplicates (Nats-Msg-Id).
type processor struct {
	cfg        *detect.Config
	store      *checkpoints
	pub        publisher
	m          *metrics
	log        zerolog.Logger
	now        func() time.Time
	namespaces []string

	mu     sync.Mutex
	uids   map[string]string          // key → UID of the incarnation last processed
	logged map[string]map[string]bool // key → malformed reasons already counted and logged
	// backfill are the keys of a backfill request still to re-process (see backfill.go).
	backfill map[string]bool
}

// Process implements argocd.Processor.
func (p *processor) Process(ctx context.Context, key string, u *unstructured.Unstructured) (time.Duration, error) {
	if u == nil {
		return 0, p.deleted(ctx, key)
	}
	app, err := argocd.Decode(u.Object)
	if err != nil {
		var me *argocd.MalformedError
		if errors.As(err, &me) {
			p.malformed(key, []argocd.Problem{me.Problem})
			return 0, nil // retrying cannot fix the object; the next change to it will be seen
		}
		return 0, err
	}
	log := p.log.With().Str("namespace", app.Namespace).Str("application", app.Name).Logger()
	if old := p.swapUID(key, app.UID); old != "" && old != app.UID {
		// Deleted and recreated between two looks: the old incarnation's checkpoint is obsolete,
		// once an entry it still held is published.
		if err := p.flushHeld(ctx, app.Namespace, old); err != nil {
			p.swapUID(key, old) // retried as the old incarnation's successor
			return 0, err
		}
		if err := p.store.delete(ctx, app.Namespace, old); err != nil {
			log.Warn().Err(err).Msg("drop checkpoint of the previous incarnation")
		}
	}
	prev, rev, err := p.store.get(ctx, app.Namespace, app.UID)
	if errors.Is(err, errCorruptCheckpoint) {
		log.Error().Err(err).Msg("checkpoint unreadable; treating the application as seen for the first time")
	} else if err != nil {
		p.m.processError("checkpoint_read")
		return 0, err
	}
	cfg := p.cfg
	backfilling := prev == nil && p.backfilling(key)
	if backfilling {
		bf := *p.cfg
		bf.Backfill = true
		cfg = &bf
	}
	res := cfg.Detect(prev, app, p.now())
	p.malformed(key, append(slices.Clone(app.Problems), res.Problems...))
	for _, ev := range res.Events {
		if err := p.pub.Publish(ctx, ev); err != nil {
			p.m.processError("publish")
			return 0, err
		}
		p.m.published(ev)
		log.Debug().Str("event_id", ev.Meta().ID).Str("subject", ev.Meta().Subject).Msg("published")
	}
	if changed(prev, res.State) {
		if err := p.store.put(ctx, res.State, rev); err != nil {
			p.m.processError("checkpoint_write")
			return 0, err
		}
		p.m.checkpoint("write")
	}
	// Counted after the checkpoint, so a retried attempt does not count twice.
	if res.Gap > 0 {
		p.m.gap(res.Gap)
		log.Warn().Int64("lost_entries", res.Gap).Msg("history entries were truncated before the watcher saw them")
	}
	for _, s := range res.Skipped {
		p.m.skip(s)
	}
	p.m.settled(res.Held, res.Released, res.Events)
	for _, f := range res.Unresolved {
		p.m.unresolvedField(f)
	}
	if res.FirstSight {
		log.Debug().Int64("last_history_id", res.State.LastHistoryID).Int("events", len(res.Events)).Msg("first sight")
	}
	if backfilling {
		p.backfilled(ctx, key, len(res.Events))
	}
	return res.RecheckAfter, nil
}

func changed(prev *detect.State, st detect.State) bool {
	if prev == nil {
		return true
	}
	a, errA := json.Marshal(prev)
	b, errB := json.Marshal(st)
	return errA != nil || errB != nil || !bytes.Equal(a, b)
}

func (p *processor) swapUID(key, uid string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.uids == nil {
		p.uids = map[string]string{}
	}
	old := p.uids[key]
	p.uids[key] = uid
	return old
}

// deleted drops the checkpoint of a deleted Application. Nothing is published: the deployments it
// made stay facts. A deletion the watcher did not see (it was down) is collected after the next sync.
func (p *processor) deleted(ctx context.Context, key string) error {
	p.mu.Lock()
	uid := p.uids[key]
	p.mu.Unlock()
	if uid == "" {
		return nil
	}
	ns, _, _ := strings.Cut(key, "/")
	if err := p.flushHeld(ctx, ns, uid); err != nil {
		return err
	}
	if err := p.store.delete(ctx, ns, uid); err != nil {
		p.m.processError("checkpoint_write")
		return err
	}
	p.m.checkpoint("delete")
	p.mu.Lock()
	delete(p.uids, key)
	delete(p.logged, key)
	p.mu.Unlock()
	return nil
}

// flushHeld publishes the entry still held in the checkpoint of an Application incarnation that is
// gone (deleted, or recreated with a new UID): it was deployed, so it is published with the images
// seen while it was held. The caller deletes the checkpoint afterwards; a crash in between
// republishes the same ID, which JetStream drops.
func (p *processor) flushHeld(ctx context.Context, namespace, uid string) error {
	st, _, err := p.store.get(ctx, namespace, uid)
	switch {
	case errors.Is(err, errCorruptCheckpoint):
		return nil // nothing readable to flush; the checkpoint is dropped
	case err != nil:
		p.m.processError("checkpoint_read")
		return err
	case st == nil || st.Held == nil:
		return nil
	}
	evs := p.cfg.Flush(*st)
	for _, ev := range evs {
		if err := p.pub.Publish(ctx, ev); err != nil {
			p.m.processError("publish")
			return err
		}
		p.m.published(ev)
	}
	p.m.settled(nil, []string{detect.ReleaseRecreated}, evs)
	return nil
}

// malformed counts and logs each problem once per application and reason, not on every resync; when
// an application has no problems any more, it is forgotten, so a relapse is reported again.
func (p *processor) malformed(key string, problems []argocd.Problem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(problems) == 0 {
		delete(p.logged, key)
		return
	}
	if p.logged == nil {
		p.logged = map[string]map[string]bool{}
	}
	seen := p.logged[key]
	if seen == nil {
		seen = map[string]bool{}
		p.logged[key] = seen
	}
	for _, pr := range problems {
		if seen[string(pr.Reason)] {
			continue
		}
		seen[string(pr.Reason)] = true
		p.m.malformedApp(pr.Reason)
		ns, name, _ := strings.Cut(key, "/")
		p.log.Warn().Str("namespace", ns).Str("application", name).Str("reason", string(pr.Reason)).
			Str("detail", pr.Detail).Msg("malformed Application")
	}
}

// collect runs once the cache has synced: it drops checkpoints of Applications in the watched
// namespaces that no longer exist (deleted while the watcher was down).
func (p *processor) collect(ctx context.Context, w *argocd.Watcher) error {
	live := map[string]bool{}
	for _, u := range w.List() {
		live[string(u.GetUID())] = true
	}
	refs, err := p.store.list(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, r := range refs {
		if live[r.UID] || (len(p.namespaces) > 0 && !slices.Contains(p.namespaces, r.Namespace)) {
			continue
		}
		if err := p.flushHeld(ctx, r.Namespace, r.UID); err != nil {
			return err
		}
		if err := p.store.delete(ctx, r.Namespace, r.UID); err != nil {
			return err
		}
		p.m.checkpoint("collect")
		n++
	}
	p.log.Info().Int("applications", len(live)).Int("checkpoints", len(refs)).Int("collected", n).Msg("Application cache synced")
	return nil
}
