package detect

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

var update = flag.Bool("update", false, "rewrite golden files")

func testConfig() *Config {
	return &Config{
		Instance:      "hub",
		KnownClusters: []string{"prd-1", "east-prd-1", "stg-1"},
		Clusters:      map[string]string{"https://api.stg-1.example.com:6443": "stg-1"},
		Environments:  DefaultEnvironmentRules(),
		ProjectTeams:  map[string]string{"shop": "team-shop"},
		ComponentRepos: map[string]string{
			"checkout": "https://github.com/acme/checkout",
		},
		ImageRepos: []ImageRepo{
			{Prefix: "quay.io/acme/checkout", RepoURL: "https://github.com/acme/checkout"},
			{Prefix: "registry.local:5000/acme", RepoURL: "https://github.com/acme/platform"},
		},
		TagPatterns:        DefaultTagPatterns(),
		ComponentsToIgnore: []string{"monitoring"},
		DegradedWindow:     30 * time.Minute,
		DegradedGrace:      time.Minute,
		ImageSettleTimeout: 10 * time.Minute,
		WatchingSince:      t0.Add(-24 * time.Hour),
	}
}

// step is one observation of an Application: the object as the informer's cache holds it at time now,
// or its deletion.
type step struct {
	name    string
	now     time.Time
	app     func() obj // nil with deleted
	deleted bool
}

type scenario struct {
	name  string
	cfg   func(*Config)
	steps []step
}

const prodPath = "components/checkout/overlays/production"

func checkout(uid string) *appBuilder {
	return newApp("checkout-prd-1", uid, t0.Add(-48*time.Hour), prodPath)
}

func scenarios() []scenario {
	e0 := entry(0, revA, prodPath, at(-time.Hour))
	return []scenario{
		{name: "first_deploy", steps: []step{
			{name: "created, not synced yet", now: at(0), app: func() obj {
				return newApp("checkout-prd-1", "uid-new", at(0), prodPath).build()
			}},
			{name: "first sync adds history entry 0", now: at(2 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-new", at(0), prodPath).
					history(entry(0, revA, prodPath, at(time.Minute))).
					images(
						"quay.io/acme/checkout:"+appSHA1,
						"registry.local:5000/acme/worker:build-"+appSHA2,
						"quay.io/acme/checkout:"+appSHA1+"@"+digest64,
						"docker.io/istio/proxyv2:1.22.0",
						"nginx",
						"Not A Valid Ref",
					).health("Progressing", at(time.Minute)).build()
			}},
			{name: "reconciliation: nothing new", now: at(5 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-new", at(0), prodPath).
					history(entry(0, revA, prodPath, at(time.Minute))).
					images(
						"quay.io/acme/checkout:"+appSHA1+"@"+digest64,
						"registry.local:5000/acme/worker:build-"+appSHA2,
						"docker.io/istio/proxyv2:1.22.0",
						"nginx",
					).health("Healthy", at(3*time.Minute)).set([]string{"status", "reconciledAt"}, ts(at(5*time.Minute))).build()
			}},
		}},
		{name: "new_revision", steps: []step{
			{name: "first sight of an existing app: baseline, no event", now: at(0), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(-30*time.Minute))).health("Healthy", at(-29*time.Minute)).build()
			}},
			{name: "entry 2 with a new revision", now: at(10 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(-30*time.Minute)),
					entry(2, revC, prodPath, at(9*time.Minute))).images("quay.io/acme/checkout:sha-1234abc").build()
			}},
			{name: "relist (ADDED again) of the same state", now: at(11 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(-30*time.Minute)),
					entry(2, revC, prodPath, at(9*time.Minute))).images("quay.io/acme/checkout:sha-1234abc").build()
			}},
		}},
		{name: "same_revision_redeployed", steps: []step{
			{name: "baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).build() }},
			{name: "manual re-sync of the unchanged app: redeploy", now: at(5 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revA, prodPath, at(4*time.Minute))).build()
			}},
			{name: "same revision, new helm parameter: a change", now: at(10 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revA, prodPath, at(4*time.Minute)),
					withHelmParam(entry(2, revA, prodPath, at(9*time.Minute)), "image.tag", appSHA2)).build()
			}},
		}},
		{name: "failed_sync", steps: []step{
			{name: "baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).build() }},
			{name: "sync to B running", now: at(time.Minute), app: func() obj {
				return checkout("uid-1").history(e0).op("Running", "", revB, at(time.Minute), time.Time{}, 0).build()
			}},
			{name: "retrying attempt 1: not terminal", now: at(2 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0).op("Running", "Retrying attempt #1", revB, at(time.Minute), time.Time{}, 1).build()
			}},
			{name: "sync to B failed: failed deployment", now: at(3 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0).op("Failed", "one or more objects failed to apply", revB, at(time.Minute), at(3*time.Minute), 2).build()
			}},
			{name: "seen again: nothing", now: at(4 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0).op("Failed", "one or more objects failed to apply", revB, at(time.Minute), at(3*time.Minute), 2).build()
			}},
			{name: "failed re-sync of the deployed revision: skipped", now: at(6 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0).op("Failed", "hook failed", revA, at(5*time.Minute), at(6*time.Minute), 0).build()
			}},
			{name: "terminated by a user: cancelled, skipped", now: at(8 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0).op("Failed", "Operation terminated", revC, at(7*time.Minute), at(8*time.Minute), 0).build()
			}},
		}},
		{name: "error_operation", steps: []step{
			{name: "baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).build() }},
			{name: "error before manifests were generated: revision from operation.sync", now: at(2 * time.Minute), app: func() obj {
				b := checkout("uid-1").history(e0).op("Error", "rpc error: ComparisonError: failed to generate manifests", revC, at(time.Minute), at(2*time.Minute), 0)
				b.set([]string{"status", "operationState", "syncResult"}, nil)
				return b.build()
			}},
		}},
		{name: "degraded_after_deploy", steps: []step{
			{name: "baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).health("Healthy", at(-time.Hour)).build() }},
			{name: "entry 1 deployed, progressing", now: at(time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).build()
			}},
			{name: "degraded 5m after deploy, within grace: recheck", now: at(6*time.Minute + 30*time.Second), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Degraded", at(6*time.Minute)).build()
			}},
			{name: "still degraded after grace: change failure", now: at(7*time.Minute + 30*time.Second), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Degraded", at(6*time.Minute)).build()
			}},
			{name: "healthy again: recovery", now: at(20 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Healthy", at(19*time.Minute)).build()
			}},
		}},
		{name: "degraded_blip_and_outside_window", steps: []step{
			{name: "baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).health("Healthy", at(-time.Hour)).build() }},
			{name: "entry 1 deployed", now: at(time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Healthy", at(2*time.Minute)).build()
			}},
			{name: "missing, within grace", now: at(10 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Missing", at(10*time.Minute)).build()
			}},
			{name: "healthy before grace ended: a blip, nothing", now: at(10*time.Minute + 20*time.Second), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Healthy", at(10*time.Minute+15*time.Second)).build()
			}},
			{name: "degraded 45m after deploy: outside the window", now: at(47 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Degraded", at(46*time.Minute)).build()
			}},
		}},
		{name: "degraded_without_transition_time", steps: []step{
			{name: "baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).build() }},
			{name: "entry 1 deployed", now: at(time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", time.Time{}).build()
			}},
			{name: "degraded first seen", now: at(3 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Degraded", time.Time{}).build()
			}},
			{name: "still degraded a grace later: detected at first sight", now: at(4 * time.Minute), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Degraded", time.Time{}).build()
			}},
		}},
		{name: "rollback", steps: []step{
			{name: "created after watching began, synced A", now: at(time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-rb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute))).build()
			}},
			{name: "deploy B", now: at(10 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-rb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute)),
					entry(1, revB, prodPath, at(10*time.Minute))).health("Healthy", at(9*time.Minute)).build()
			}},
			{name: "argocd app rollback to entry 0: rollback + change failure of entry 1, healthy: recovered", now: at(20 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-rb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute)),
					entry(1, revB, prodPath, at(10*time.Minute)), entry(2, revA, prodPath, at(20*time.Minute))).
					health("Healthy", at(9*time.Minute)).sync("OutOfSync", revB).build()
			}},
			{name: "roll-forward to B: a deploy, not a rollback", now: at(40 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-rb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute)),
					entry(1, revB, prodPath, at(10*time.Minute)), entry(2, revA, prodPath, at(20*time.Minute)),
					entry(3, revB, prodPath, at(40*time.Minute))).health("Healthy", at(9*time.Minute)).build()
			}},
			{name: "deploy C then back to B: rollback of C", now: at(60 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-rb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute)),
					entry(1, revB, prodPath, at(10*time.Minute)), entry(2, revA, prodPath, at(20*time.Minute)),
					entry(3, revB, prodPath, at(40*time.Minute)), entry(4, revC, prodPath, at(50*time.Minute)),
					entry(5, revB, prodPath, at(59*time.Minute))).health("Progressing", at(59*time.Minute)).build()
			}},
			{name: "healthy: the held rollback, then its change failure of C, then the recovery", now: at(62 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-rb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute)),
					entry(1, revB, prodPath, at(10*time.Minute)), entry(2, revA, prodPath, at(20*time.Minute)),
					entry(3, revB, prodPath, at(40*time.Minute)), entry(4, revC, prodPath, at(50*time.Minute)),
					entry(5, revB, prodPath, at(59*time.Minute))).health("Healthy", at(61*time.Minute)).build()
			}},
		}},
		{name: "multi_source", steps: []step{
			{name: "baseline of a multi-source app", now: at(0), app: func() obj { return multi("uid-ms", "1.4.0", revA, at(-time.Hour)).build() }},
			{name: "chart bump: new entry with revisions and sources", now: at(5 * time.Minute), app: func() obj {
				return multi("uid-ms", "1.5.0", revB, at(4*time.Minute)).
					history(multiEntry(0, "1.4.0", revA, at(-time.Hour)), multiEntry(1, "1.5.0", revB, at(4*time.Minute))).
					images("quay.io/acme/checkout@" + digest64).build()
			}},
		}},
		{name: "ignored_component", steps: []step{
			{name: "baseline", now: at(0), app: func() obj {
				return newApp("monitoring-prd-1", "uid-mon", at(-48*time.Hour), "monitoring/prod").history(entry(0, revA, "monitoring/prod", at(-time.Hour))).build()
			}},
			{name: "new entry of an ignored component: no event, state advances", now: at(5 * time.Minute), app: func() obj {
				return newApp("monitoring-prd-1", "uid-mon", at(-48*time.Hour), "monitoring/prod").history(entry(0, revA, "monitoring/prod", at(-time.Hour)),
					entry(1, revB, "monitoring/prod", at(4*time.Minute))).health("Degraded", at(4*time.Minute+30*time.Second)).build()
			}},
		}},
		{name: "unknown_cluster", steps: []step{
			{name: "name without a known cluster, unmapped server, path without environment", now: at(time.Minute), app: func() obj {
				return newApp("payments-eu", "uid-pay", at(0), "apps/payments/overlays/eu").
					destination("https://10.0.0.1:6443", "").
					history(entry(0, revA, "apps/payments/overlays/eu", at(time.Minute))).build()
			}},
			{name: "in-cluster destination is qualified by the instance", now: at(2 * time.Minute), app: func() obj {
				return newApp("billing", "uid-bill", at(0), "apps/billing/staging").
					destination("https://kubernetes.default.svc", "").
					history(entry(0, revA, "apps/billing/staging", at(2*time.Minute))).build()
			}},
			{name: "longest known-cluster suffix wins", now: at(3 * time.Minute), app: func() obj {
				return newApp("cart-east-prd-1", "uid-cart", at(0), "apps/cart/dev").
					history(entry(0, revA, "apps/cart/dev", at(3*time.Minute))).build()
			}},
			{name: "server mapped in config, environment from a path segment", now: at(4 * time.Minute), app: func() obj {
				return newApp("search", "uid-search", at(0), "search/stage/eu").
					destination("https://api.stg-1.example.com:6443", "").
					history(entry(0, revA, "search/stage/eu", at(4*time.Minute))).build()
			}},
		}},
		{name: "labels_override_rules", steps: []step{
			{name: "labels and annotations name component, environment, team, repo", now: at(time.Minute), app: func() obj {
				return newApp("svc-a-prd-1", "uid-lab", at(0), "anything/prod").
					label(LabelComponent, "storefront").label(LabelEnvironment, "Stage").label(LabelTeam, "team-web").
					annotation(LabelSourceRepo, "git@github.com:acme/storefront.git").
					annotation(argocd.LastAppliedAnnotation, `{"huge":"object"}`).
					history(entry(0, revA, "anything/prod", at(time.Minute))).
					images("ghcr.io/acme/storefront:v1.2.3-"+appSHA1, "ghcr.io/acme/storefront-migrations:20240101").build()
			}},
		}},
		{name: "app_deleted_and_recreated", steps: []step{
			{name: "baseline of uid-old", now: at(0), app: func() obj { return checkout("uid-old").history(e0).build() }},
			{name: "deleted", now: at(time.Minute), deleted: true},
			{name: "recreated with a new UID; history restarts at 0 and is emitted", now: at(5 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-new", at(2*time.Minute), prodPath).history(entry(0, revB, prodPath, at(4*time.Minute))).build()
			}},
		}},
		{name: "malformed_objects", steps: []step{
			{name: "history is not a list", now: at(0), app: func() obj {
				return checkout("uid-1").set([]string{"status", "history"}, "oops").build()
			}},
			{name: "no uid", now: at(0), app: func() obj {
				return checkout("").history(e0).build()
			}},
			{name: "history entry without id", now: at(0), app: func() obj {
				e := entry(0, revA, prodPath, at(-time.Hour))
				delete(e, "id")
				return checkout("uid-1").history(e).build()
			}},
			{name: "unparsable deployedAt", now: at(0), app: func() obj {
				e := entry(0, revA, prodPath, at(-time.Hour))
				e["deployedAt"] = "yesterday"
				return checkout("uid-1").history(e).build()
			}},
			{name: "duplicate history id", now: at(0), app: func() obj {
				return checkout("uid-1").history(e0, entry(0, revB, prodPath, at(-time.Minute))).build()
			}},
			{name: "labels of the wrong type", now: at(0), app: func() obj {
				return checkout("uid-1").set([]string{"metadata", "labels"}, []any{"a"}).history(e0).build()
			}},
			{name: "valid again: baseline", now: at(0), app: func() obj { return checkout("uid-1").history(e0).build() }},
			{name: "old entry without deployStartedAt, new entry without deployedAt: start used as finish", now: at(5 * time.Minute), app: func() obj {
				e1 := entry(1, revB, prodPath, at(4*time.Minute))
				delete(e1, "deployedAt")
				e0 := entry(0, revA, prodPath, at(-time.Hour))
				delete(e0, "deployStartedAt")
				return checkout("uid-1").history(e0, e1).build()
			}},
			{name: "entry with no time at all: skipped, marker advances", now: at(6 * time.Minute), app: func() obj {
				e2 := entry(2, revC, prodPath, at(5*time.Minute))
				delete(e2, "deployedAt")
				delete(e2, "deployStartedAt")
				return checkout("uid-1").history(entry(1, revB, prodPath, at(4*time.Minute)), e2).build()
			}},
		}},
		{name: "history_truncation_gap", steps: []step{
			{name: "baseline at entry 1", now: at(0), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(-30*time.Minute))).build()
			}},
			{name: "watcher was down: entries 2-4 truncated away, 5-14 present", now: at(3 * time.Hour), app: func() obj {
				var es []obj
				for id := int64(5); id <= 14; id++ {
					rev := revA
					if id%2 == 1 {
						rev = revB
					}
					es = append(es, entry(id, rev, prodPath, at(time.Duration(id)*10*time.Minute)))
				}
				return checkout("uid-1").history(es...).build()
			}},
		}},
		{name: "rolling_update", steps: []step{
			{name: "baseline: the old image runs", now: at(0), app: func() obj {
				return checkout("uid-ru").history(e0).health("Healthy", at(-time.Hour)).
					images(checkoutImage(appSHA2), istio122).build()
			}},
			{name: "entry 1 while old and new pods coexist: held", now: at(2 * time.Minute), app: func() obj {
				return checkout("uid-ru").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).
					images(checkoutImage(appSHA2), checkoutImage(appSHA1), istio122).build()
			}},
			{name: "still rolling: still held", now: at(5 * time.Minute), app: func() obj {
				return checkout("uid-ru").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).
					images(checkoutImage(appSHA1), checkoutImage(appSHA2), istio122).build()
			}},
			{name: "healthy: published with the new image's commit only", now: at(7 * time.Minute), app: func() obj {
				return checkout("uid-ru").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Healthy", at(6*time.Minute)).
					images(checkoutImage(appSHA1), istio122).build()
			}},
			{name: "entry 2 while the images are still entry 1's although the revision changed: held", now: at(20 * time.Minute), app: func() obj {
				return checkout("uid-ru").history(e0, entry(1, revB, prodPath, at(time.Minute)), entry(2, revC, prodPath, at(19*time.Minute))).
					health("Healthy", at(6*time.Minute)).images(checkoutImage(appSHA1), istio122).build()
			}},
			{name: "the new pods run: published with their commit", now: at(22 * time.Minute), app: func() obj {
				return checkout("uid-ru").history(e0, entry(1, revB, prodPath, at(time.Minute)), entry(2, revC, prodPath, at(19*time.Minute))).
					health("Healthy", at(21*time.Minute)).images(checkoutImage(appSHA3), istio122).build()
			}},
		}},
		{name: "rolling_update_timeout", steps: []step{
			{name: "baseline: the old image and sidecar run", now: at(0), app: func() obj {
				return checkout("uid-rt").history(e0).health("Healthy", at(-time.Hour)).
					images(checkoutImage(appSHA2), istio122).build()
			}},
			{name: "entry 1 while old and new pods coexist: held", now: at(2 * time.Minute), app: func() obj {
				return checkout("uid-rt").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).
					images(checkoutImage(appSHA2), checkoutImage(appSHA1), istio122, istio123).build()
			}},
			{name: "bound passed, still rolling: the previous deployment's images are discarded", now: at(11 * time.Minute), app: func() obj {
				return checkout("uid-rt").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).
					images(checkoutImage(appSHA2), checkoutImage(appSHA1), istio122, istio123).build()
			}},
		}},
		{name: "rolling_update_ambiguous", steps: []step{
			{name: "created after watching began, first sync over pods of two commits: held", now: at(2 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-amb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute))).
					health("Progressing", at(time.Minute)).images(checkoutImage(appSHA1), checkoutImage(appSHA2), workerImage(appSHA1)).build()
			}},
			{name: "bound passed, still two commits and no previous deployment: ambiguous", now: at(11 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-amb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute))).
					health("Progressing", at(time.Minute)).images(checkoutImage(appSHA2), checkoutImage(appSHA1), workerImage(appSHA1)).build()
			}},
			{name: "healthy later: nothing more", now: at(12 * time.Minute), app: func() obj {
				return newApp("checkout-prd-1", "uid-amb", at(0), prodPath).history(entry(0, revA, prodPath, at(time.Minute))).
					health("Healthy", at(12*time.Minute)).images(checkoutImage(appSHA2), workerImage(appSHA1)).build()
			}},
		}},
		{name: "rolling_update_superseded", steps: []step{
			{name: "baseline: the old image runs", now: at(0), app: func() obj {
				return checkout("uid-rs").history(e0).health("Healthy", at(-time.Hour)).images(checkoutImage(appSHA2)).build()
			}},
			{name: "entry 1 while old and new pods coexist: held", now: at(2 * time.Minute), app: func() obj {
				return checkout("uid-rs").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).
					images(checkoutImage(appSHA2), checkoutImage(appSHA1)).build()
			}},
			{name: "entry 2 arrives: entry 1 first, with the images seen while it was held; entry 2 held", now: at(5 * time.Minute), app: func() obj {
				return checkout("uid-rs").history(e0, entry(1, revB, prodPath, at(time.Minute)), entry(2, revC, prodPath, at(4*time.Minute))).
					health("Progressing", at(time.Minute)).images(checkoutImage(appSHA1), checkoutImage(appSHA3)).build()
			}},
			{name: "degraded: entry 2 published, its degraded window counts from deployedAt (grace: recheck)", now: at(6*time.Minute + 30*time.Second), app: func() obj {
				return checkout("uid-rs").history(e0, entry(1, revB, prodPath, at(time.Minute)), entry(2, revC, prodPath, at(4*time.Minute))).
					health("Degraded", at(6*time.Minute)).images(checkoutImage(appSHA3)).build()
			}},
			{name: "still degraded after grace: change failure of entry 2", now: at(7*time.Minute + 30*time.Second), app: func() obj {
				return checkout("uid-rs").history(e0, entry(1, revB, prodPath, at(time.Minute)), entry(2, revC, prodPath, at(4*time.Minute))).
					health("Degraded", at(6*time.Minute)).images(checkoutImage(appSHA3)).build()
			}},
		}},
		{name: "rolling_update_no_wait", cfg: func(c *Config) { c.ImageSettleTimeout = 0 }, steps: []step{
			{name: "baseline: the old image runs", now: at(0), app: func() obj {
				return checkout("uid-nw").history(e0).health("Healthy", at(-time.Hour)).images(checkoutImage(appSHA2)).build()
			}},
			{name: "image_settle_timeout 0: published at once, the previous deployment's image discarded", now: at(2 * time.Minute), app: func() obj {
				return checkout("uid-nw").history(e0, entry(1, revB, prodPath, at(time.Minute))).health("Progressing", at(time.Minute)).
					images(checkoutImage(appSHA2), checkoutImage(appSHA1)).build()
			}},
		}},
		{name: "backfill", cfg: func(c *Config) { c.Backfill = true }, steps: []step{
			{name: "first sight with --backfill: existing entries emitted, marked backfill", now: at(0), app: func() obj {
				return checkout("uid-1").history(e0, entry(1, revB, prodPath, at(-50*time.Minute)),
					entry(2, revB, prodPath, at(-40*time.Minute))).op("Failed", "sync failed", revC, at(-20*time.Minute), at(-19*time.Minute), 0).build()
			}},
		}},
	}
}

func multiSources(chart string) []obj {
	return []obj{
		{"repoURL": "https://github.com/acme/values.git", "targetRevision": "main", "ref": "values"},
		{"repoURL": "https://charts.acme.io", "chart": "checkout", "targetRevision": chart,
			"helm": obj{"valueFiles": []any{"$values/checkout/production/values.yaml"}}},
		{"repoURL": "https://github.com/acme/checkout.git", "path": "deploy/overlays/prod", "targetRevision": "main"},
	}
}

func multiEntry(id int64, chart, values string, deployed time.Time) obj {
	var srcs []any
	for _, s := range multiSources(chart) {
		srcs = append(srcs, s)
	}
	return obj{
		"id": id, "revisions": []any{values, chart, revC},
		"deployStartedAt": ts(deployed.Add(-time.Minute)), "deployedAt": ts(deployed),
		"sources": srcs,
	}
}

func multi(uid, chart, values string, deployed time.Time) *appBuilder {
	return newApp("checkout-east-prd-1", uid, t0.Add(-48*time.Hour), "").
		sources(multiSources(chart)...).history(multiEntry(0, chart, values, deployed))
}

type stepOutput struct {
	Step         string          `json:"step"`
	Now          time.Time       `json:"now"`
	Deleted      bool            `json:"deleted,omitempty"`
	Malformed    string          `json:"malformed,omitempty"`
	Problems     []string        `json:"problems,omitempty"`
	FirstSight   bool            `json:"first_sight,omitempty"`
	Events       []publishedJSON `json:"events"`
	Gap          int64           `json:"gap,omitempty"`
	Skipped      []string        `json:"skipped,omitempty"`
	Unresolved   []string        `json:"unresolved,omitempty"`
	RecheckAfter string          `json:"recheck_after,omitempty"`
	State        *State          `json:"state,omitempty"`
}

type publishedJSON struct {
	Subject string       `json:"subject"`
	Event   events.Event `json:"event"`
}

// run feeds the steps through Decode (after the cache transform) and Detect, persisting the state
// through JSON between steps as the KV checkpoint does.
func run(t *testing.T, sc scenario, opts ...func(*Config)) []stepOutput {
	t.Helper()
	cfg := testConfig()
	if sc.cfg != nil {
		sc.cfg(cfg)
	}
	for _, o := range opts {
		o(cfg)
	}
	var st *State
	var out []stepOutput
	for _, s := range sc.steps {
		o := stepOutput{Step: s.name, Now: s.now, Events: []publishedJSON{}}
		if s.deleted {
			st = nil
			o.Deleted = true
			out = append(out, o)
			continue
		}
		raw := s.app()
		argocd.StripObject(raw)
		app, err := argocd.Decode(raw)
		if err != nil {
			var m *argocd.MalformedError
			if !errors.As(err, &m) {
				t.Fatalf("%s: Decode error %v is not a MalformedError", s.name, err)
			}
			o.Malformed = err.Error()
			out = append(out, o)
			continue
		}
		for _, p := range app.Problems {
			o.Problems = append(o.Problems, string(p.Reason)+": "+p.Detail)
		}
		res := cfg.Detect(st, app, s.now)
		for _, p := range res.Problems {
			o.Problems = append(o.Problems, string(p.Reason)+": "+p.Detail)
		}
		o.FirstSight, o.Gap, o.Skipped, o.Unresolved = res.FirstSight, res.Gap, res.Skipped, res.Unresolved
		if res.RecheckAfter > 0 {
			o.RecheckAfter = res.RecheckAfter.String()
		}
		for _, ev := range res.Events {
			if err := ev.Validate(); err != nil {
				t.Errorf("%s: emitted invalid event: %v", s.name, err)
			}
			o.Events = append(o.Events, publishedJSON{Subject: ev.Meta().Subject, Event: ev})
		}
		b, err := json.Marshal(res.State)
		if err != nil {
			t.Fatal(err)
		}
		var persisted State
		if err := json.Unmarshal(b, &persisted); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(res.State, persisted); diff != "" {
			t.Errorf("%s: state does not survive JSON (-want +got):\n%s", s.name, diff)
		}
		st = &persisted
		o.State = st
		out = append(out, o)
	}
	return out
}

func TestDetectGolden(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(run(t, sc), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", sc.name+".golden.json")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestDetectIsDeterministic replays every scenario twice: the same inputs give the same outputs, so
// a restart that replays state cannot produce different IDs.
func TestDetectIsDeterministic(t *testing.T) {
	for _, sc := range scenarios() {
		a, _ := json.Marshal(run(t, sc))
		b, _ := json.Marshal(run(t, sc))
		if string(a) != string(b) {
			t.Errorf("%s: two runs differ", sc.name)
		}
	}
}

// TestReplayEmitsNothing: after any step, detecting again on the same object with the persisted state
// emits nothing new, whatever time it is (a restart or a resync is harmless).
func TestReplayEmitsNothing(t *testing.T) {
	cfg := testConfig()
	for _, sc := range scenarios() {
		var st *State
		for _, s := range sc.steps {
			if s.deleted {
				st = nil
				continue
			}
			raw := s.app()
			argocd.StripObject(raw)
			app, err := argocd.Decode(raw)
			if err != nil {
				continue
			}
			if sc.cfg != nil {
				c := *cfg
				sc.cfg(&c)
				cfg = &c
			}
			res := cfg.Detect(st, app, s.now)
			st = &res.State
			again := cfg.Detect(st, app, s.now.Add(time.Second))
			for _, ev := range again.Events {
				if cf, ok := ev.(*events.ChangeFailureSignal); ok && cf.RecoveredAt.IsZero() && res.RecheckAfter > 0 {
					continue // the grace period ended: a new fact, not a replay
				}
				t.Errorf("%s/%s: replay emitted %s %s", sc.name, s.name, ev.Meta().Subject, ev.Meta().ID)
			}
		}
	}
}

// TestRollingUpdateImages: while old and new pods coexist (status.summary.images holds both), the
// deployment carries the new revision's commit, never whichever SHA sorts first: the entry is held
// until health leaves Progressing or image_settle_timeout passes, the previous deployment's images
// are discarded, and what still cannot be told is flagged ambiguous_image without a commit. The
// held entry keeps its ID and finished_at, and events keep their order.
func TestRollingUpdateImages(t *testing.T) {
	short := func(sha string) string { return sha[:7] }
	summarize := func(o stepOutput) []string {
		var out []string
		for _, p := range o.Events {
			switch e := p.Event.(type) {
			case *events.DeploymentObserved:
				var commits []string
				for _, c := range e.AppCommits {
					commits = append(commits, strings.TrimPrefix(c.RepoURL, "https://github.com/")+"@"+short(c.SHA))
				}
				s := fmt.Sprintf("deployment %d %s finished=%s commits=%v", e.ArgoCD.HistoryID, e.Kind, e.FinishedAt.Sub(t0), commits)
				if len(e.Flags) > 0 {
					s += fmt.Sprintf(" flags=%v", e.Flags)
				}
				out = append(out, s)
			case *events.ChangeFailureSignal:
				phase := "detected"
				if !e.RecoveredAt.IsZero() {
					phase = "recovered"
				}
				out = append(out, fmt.Sprintf("failure %s %s of %s", e.Detection, phase, e.DeploymentID[len(e.DeploymentID)-6:]))
			}
		}
		if o.RecheckAfter != "" {
			out = append(out, "recheck "+o.RecheckAfter)
		}
		return out
	}
	byName := map[string]scenario{}
	for _, sc := range scenarios() {
		byName[sc.name] = sc
	}
	cfg := testConfig()
	id := func(uid string, h int64) string {
		return events.DeploymentID(cfg.Instance, uid, h)[len(events.DeploymentID(cfg.Instance, uid, h))-6:]
	}
	for _, tc := range []struct {
		scenario string
		want     [][]string // per step
	}{
		{"rolling_update", [][]string{
			nil,
			{"recheck 9m0s"},
			{"recheck 6m0s"},
			{"deployment 1 deploy finished=1m0s commits=[acme/checkout@1111111]"},
			{"recheck 9m0s"},
			{"deployment 2 deploy finished=19m0s commits=[acme/checkout@3333333]"},
		}},
		{"rolling_update_timeout", [][]string{
			nil,
			{"recheck 9m0s"},
			{"deployment 1 deploy finished=1m0s commits=[acme/checkout@1111111]"},
		}},
		{"rolling_update_ambiguous", [][]string{
			{"recheck 9m0s"},
			{"deployment 0 deploy finished=1m0s commits=[acme/platform@1111111] flags=[ambiguous_image]"},
			nil,
		}},
		{"rolling_update_superseded", [][]string{
			nil,
			{"recheck 9m0s"},
			{"deployment 1 deploy finished=1m0s commits=[acme/checkout@1111111]", "recheck 9m0s"},
			{"deployment 2 deploy finished=4m0s commits=[acme/checkout@3333333]", "recheck 30s"},
			{"failure degraded detected of " + id("uid-rs", 2)},
		}},
		{"rolling_update_no_wait", [][]string{
			nil,
			{"deployment 1 deploy finished=1m0s commits=[acme/checkout@1111111]"},
		}},
		{"rollback", [][]string{
			{"deployment 0 deploy finished=1m0s commits=[]"},
			{"deployment 1 deploy finished=10m0s commits=[]"},
			{"deployment 2 rollback finished=20m0s commits=[]", "failure rollback detected of " + id("uid-rb", 1), "failure rollback recovered of " + id("uid-rb", 1)},
			{"deployment 3 deploy finished=40m0s commits=[]"},
			{"deployment 4 deploy finished=50m0s commits=[]", "recheck 9m0s"},
			{"deployment 5 rollback finished=59m0s commits=[]", "failure rollback detected of " + id("uid-rb", 4), "failure rollback recovered of " + id("uid-rb", 4)},
		}},
		{"degraded_after_deploy", [][]string{
			nil,
			{"recheck 10m0s"},
			{"deployment 1 deploy finished=1m0s commits=[]", "recheck 30s"},
			{"failure degraded detected of " + id("uid-1", 1)},
			{"failure degraded recovered of " + id("uid-1", 1)},
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			sc, ok := byName[tc.scenario]
			if !ok {
				t.Fatalf("no scenario %q", tc.scenario)
			}
			var got [][]string
			for _, o := range run(t, sc) {
				got = append(got, summarize(o))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events per step (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHoldKeepsIDsTimesAndOrder: over every scenario, waiting for rollouts to settle changes when
// events come out, never which: the same IDs, deployment times and order as publishing at once
// (image_settle_timeout 0), counting an entry still held at the end as flushed.
func TestHoldKeepsIDsTimesAndOrder(t *testing.T) {
	sequence := func(outs []stepOutput, flush func(State) []events.Event) []string {
		var seq []string
		add := func(ev events.Event) {
			m := ev.Meta()
			seq = append(seq, fmt.Sprintf("%s %s %s", m.Subject, m.ID, m.Time.Format(time.RFC3339)))
		}
		for _, o := range outs {
			for _, p := range o.Events {
				add(p.Event)
			}
		}
		if n := len(outs); n > 0 && outs[n-1].State != nil {
			for _, ev := range flush(*outs[n-1].State) {
				add(ev)
			}
		}
		return seq
	}
	cfg := testConfig()
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			held := sequence(run(t, sc), cfg.Flush)
			atOnce := sequence(run(t, sc, func(c *Config) { c.ImageSettleTimeout = 0 }), cfg.Flush)
			if diff := cmp.Diff(atOnce, held); diff != "" {
				t.Errorf("events (-at once +held):\n%s", diff)
			}
		})
	}
}

func TestSplitName(t *testing.T) {
	known := []string{"prd-1", "east-prd-1", "stg"}
	for _, tc := range []struct{ name, comp, cluster string }{
		{"checkout-prd-1", "checkout", "prd-1"},
		{"checkout-east-prd-1", "checkout", "east-prd-1"},
		{"prd-1", "", ""},
		{"checkout-stg", "checkout", "stg"},
		{"checkoutstg", "", ""},
		{"a-b-stg", "a-b", "stg"},
	} {
		c, cl := splitName(tc.name, known)
		if c != tc.comp || cl != tc.cluster {
			t.Errorf("splitName(%q) = %q, %q; want %q, %q", tc.name, c, cl, tc.comp, tc.cluster)
		}
	}
}

func TestNormalizeRepo(t *testing.T) {
	want := "github.com/acme/app"
	for _, u := range []string{
		"https://github.com/acme/app", "https://github.com/acme/app.git", "git@github.com:acme/app.git",
		"ssh://git@github.com/acme/app", "HTTPS://GitHub.com/Acme/App/", "https://github.com:443/acme/app",
	} {
		if got := NormalizeRepo(u); got != want {
			t.Errorf("NormalizeRepo(%q) = %q, want %q", u, got, want)
		}
	}
}

func TestTagSHA(t *testing.T) {
	c := &Config{TagPatterns: DefaultTagPatterns()}
	short := &Config{TagPatterns: append(DefaultTagPatterns(), ShortSHATagPattern)}
	for _, tc := range []struct {
		tag, want, wantShort string
	}{
		{appSHA1, appSHA1, appSHA1},
		{"v1.4.2-" + appSHA1, appSHA1, appSHA1},
		{"sha-1234abc", "1234abc", "1234abc"},
		{"1234abc", "", "1234abc"},
		{"20240101", "", "20240101"}, // why short SHAs are off by default
		{"latest", "", ""},
		{"v1.2.3", "", ""},
		{appSHA1 + "0", "", ""}, // 41 hex: not a SHA
		{"ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD", "", ""},
	} {
		if got := c.tagSHA(tc.tag); got != tc.want {
			t.Errorf("tagSHA(%q) = %q, want %q", tc.tag, got, tc.want)
		}
		if got := short.tagSHA(tc.tag); got != tc.wantShort {
			t.Errorf("short tagSHA(%q) = %q, want %q", tc.tag, got, tc.wantShort)
		}
	}
	if re := regexp.MustCompile(`x`); re.SubexpIndex("sha") != -1 {
		t.Fatal("pattern without sha group has one")
	}
}

func detectObj(t *testing.T, cfg *Config, prev *State, raw obj, now time.Time) Result {
	t.Helper()
	argocd.StripObject(raw)
	app, err := argocd.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Detect(prev, app, now)
}

// A history entry with neither revision nor revisions is malformed: no event (it is not a
// production deployment of nothing), counted once.
func TestHistoryEntryWithoutRevisionIsMalformed(t *testing.T) {
	cfg := testConfig()
	first := detectObj(t, cfg, nil, checkout("uid-1").history(entry(0, "aaa111", prodPath, at(0))).health("Healthy", at(time.Minute)).build(), at(2*time.Minute))
	res := detectObj(t, cfg, &first.State, checkout("uid-1").history(entry(0, "aaa111", prodPath, at(0)), entry(1, "", prodPath, at(time.Hour))).
		health("Healthy", at(time.Hour)).build(), at(2*time.Hour))
	if len(res.Events) != 0 {
		t.Errorf("events for an entry without revision: %v", res.Events)
	}
	if !slices.Contains(res.Skipped, SkipNoRevision) || len(res.Problems) != 1 || res.Problems[0].Reason != ReasonNoRevision {
		t.Errorf("skipped %v, problems %v; want no_revision once", res.Skipped, res.Problems)
	}
	again := detectObj(t, cfg, &res.State, checkout("uid-1").history(entry(0, "aaa111", prodPath, at(0)), entry(1, "", prodPath, at(time.Hour))).
		health("Healthy", at(time.Hour)).build(), at(3*time.Hour))
	if len(again.Events) != 0 || len(again.Problems) != 0 {
		t.Errorf("second look: %d events, problems %v; want nothing (counted once)", len(again.Events), again.Problems)
	}
}

// A rollback seen only after 32 days of downtime, on an Argo CD that records no health transition
// time: its failure recovered when the rollback was deployed, not when the watcher came back.
func TestRollbackRecoveryAfterDowntimeUsesTheWorldsTime(t *testing.T) {
	cfg := testConfig()
	h := []obj{entry(0, "aaa111", prodPath, at(0)), entry(1, "bbb222", prodPath, at(time.Hour))}
	first := detectObj(t, cfg, nil, checkout("uid-1").history(h...).health("Healthy", time.Time{}).build(), at(time.Hour+time.Minute))
	rollbackAt := at(2 * time.Hour)
	h = append(h, entry(2, "aaa111", prodPath, rollbackAt))
	late := rollbackAt.Add(32 * 24 * time.Hour)
	res := detectObj(t, cfg, &first.State, checkout("uid-1").history(h...).health("Healthy", time.Time{}).build(), late)
	var recovered []time.Time
	for _, ev := range res.Events {
		if s, ok := ev.(*events.ChangeFailureSignal); ok && !s.RecoveredAt.IsZero() {
			recovered = append(recovered, s.RecoveredAt)
		}
	}
	if len(recovered) != 1 || !recovered[0].Equal(rollbackAt) {
		t.Errorf("recovered at %v, want [%v] (the rollback's deployedAt, not %v)", recovered, rollbackAt, late)
	}
}
