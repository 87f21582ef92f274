package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/events"
)

// watcherBucket is argocd-watcher's checkpoint bucket; a backfill request is its key
// backfill.<instance> (see services/argocd-watcher/backfill.go).
const watcherBucket = "argocd-watcher-checkpoints"

var backfillCommand = command{name: "doraflow backfill", args: "--instance NAME [flags]",
	about: `Asks the running argocd-watcher of an Argo CD instance to emit again the whole history of the
matching Applications. Events keep their deterministic IDs, so only what is missing downstream has an
effect. It waits until the watcher is done (--wait) and prints what was re-emitted, per Application.`,
	examples: []string{
		"doraflow backfill --instance hub",
		"doraflow backfill --instance hub --namespace argocd --application checkout-prod",
		"doraflow backfill --instance hub --wait 0      # request only; the watcher logs \"backfill finished\"",
	}}

// backfill asks the running argocd-watcher of an Argo CD instance to emit again the whole history
// of the matching Applications, and reports the re-emitted deployments it saw on NATS.
func backfill(ctx context.Context, args []string, p pipeline, out io.Writer) error {
	fs := backfillCommand.flags()
	instance := fs.String("instance", "", "the Argo CD `name` (argocd.instance of its watcher); required")
	namespace := fs.String("namespace", "", "only Applications in this `namespace`")
	app := fs.String("application", "", "only the Application with this `name`")
	waitFor := fs.Duration("wait", 2*time.Minute, "how long to wait for the watcher to finish, as a Go `duration` (0: do not wait)")
	if err := backfillCommand.parse(fs, args, out, 0); err != nil {
		return err
	}
	if *instance == "" {
		return errors.New("--instance is required (the watcher's argocd.instance; see doraflow backfill --help)")
	}
	return p.withNATS(ctx, func(nc *nats.Conn, js jetstream.JetStream) error {
		kv, err := js.KeyValue(ctx, watcherBucket)
		if err != nil {
			return fmt.Errorf("open %s (has argocd-watcher ever run?): %w", watcherBucket, err)
		}
		// Subscribe before the request, so no re-emitted event is missed. A core subscription sees
		// every publish, also those JetStream drops as duplicates (the usual case of a backfill).
		var em emitted
		if *waitFor > 0 {
			sub, err := nc.Subscribe(events.SubjectDeploymentObserved, func(m *nats.Msg) { em.add(m.Data, *instance) })
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := nc.Flush(); err != nil {
				return err
			}
		}
		body, _ := json.Marshal(struct {
			Namespace   string    `json:"namespace,omitempty"`
			Application string    `json:"application,omitempty"`
			RequestedAt time.Time `json:"requested_at"`
		}{*namespace, *app, time.Now().UTC()})
		key := "backfill." + *instance
		if _, err := kv.Put(ctx, key, body); err != nil {
			return fmt.Errorf("write the backfill request: %w", err)
		}
		fmt.Fprintf(out, "backfill requested for instance %s (namespace %q, application %q)\n", *instance, *namespace, *app)
		if *waitFor <= 0 {
			fmt.Fprintln(out, "the watcher removes the request when it is done; follow it in its log (\"backfill finished\")")
			return nil
		}
		deadline := time.Now().Add(*waitFor)
		for {
			if _, err := kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
				break
			}
			if time.Now().After(deadline) {
				em.print(out)
				return fmt.Errorf("the watcher did not finish the backfill within %s (is argocd-watcher for %s running?)", *waitFor, *instance)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		// The watcher publishes before it deletes the request; a flush round trip lets the last
		// messages reach the subscription.
		_ = nc.Flush()
		fmt.Fprintln(out, "backfill finished")
		em.print(out)
		return nil
	})
}

// emitted counts the backfilled deployments seen per Application.
type emitted struct {
	mu     sync.Mutex
	byApp  map[string]int
	oldest time.Time
	newest time.Time
}

func (e *emitted) add(data []byte, instance string) {
	var d events.DeploymentObserved
	if json.Unmarshal(data, &d) != nil || !d.Backfill || d.Instance != instance {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byApp == nil {
		e.byApp = map[string]int{}
	}
	e.byApp[d.Namespace+"/"+d.Application]++
	if e.oldest.IsZero() || d.FinishedAt.Before(e.oldest) {
		e.oldest = d.FinishedAt
	}
	if d.FinishedAt.After(e.newest) {
		e.newest = d.FinishedAt
	}
}

func (e *emitted) print(out io.Writer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	total := 0
	apps := make([]string, 0, len(e.byApp))
	for a, n := range e.byApp {
		apps = append(apps, a)
		total += n
	}
	if total == 0 {
		fmt.Fprintln(out, "re-emitted no deployments (no matching Application has history)")
		return
	}
	sort.Strings(apps)
	fmt.Fprintf(out, "re-emitted %d deployments of %d Applications, finished %s to %s:\n", total, len(apps), stamp(e.oldest), stamp(e.newest))
	tw := table(out)
	fmt.Fprintln(tw, "  APPLICATION\tDEPLOYMENTS")
	for _, a := range apps {
		fmt.Fprintf(tw, "  %s\t%d\n", a, e.byApp[a])
	}
	_ = tw.Flush()
}
