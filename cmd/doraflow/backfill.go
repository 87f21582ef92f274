package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watcherBucket is argocd-watcher's checkpoint bucket; a backfill request is its key
// backfill.<instance> (see services/argocd-watcher/backfill.go).
const watcherBucket = "argocd-watcher-checkpoints"

// backfill asks the running argocd-watcher of an Argo CD instance to emit again the whole history
// of the matching Applications. Events keep their deterministic IDs, so only what is missing
// downstream has an effect.
func backfill(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("doraflow backfill", flag.ContinueOnError)
	fs.SetOutput(out)
	instance := fs.String("instance", "", "the Argo CD `instance` (argocd.instance of its watcher); required")
	namespace := fs.String("namespace", "", "only Applications in this `namespace`")
	app := fs.String("application", "", "only the Application with this `name`")
	waitFor := fs.Duration("wait", 0, "wait up to this `long` for the watcher to finish (0: return at once)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *instance == "" {
		return errors.New("--instance is required (the watcher's argocd.instance)")
	}
	return withNATS(ctx, getenv, func(js jetstream.JetStream) error {
		kv, err := js.KeyValue(ctx, watcherBucket)
		if err != nil {
			return fmt.Errorf("open %s (has argocd-watcher ever run?): %w", watcherBucket, err)
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
		for time.Now().Before(deadline) {
			if _, err := kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
				fmt.Fprintln(out, "backfill finished")
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		return fmt.Errorf("the watcher did not finish the backfill within %s (is argocd-watcher for %s running?)", *waitFor, *instance)
	})
}
