package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/doraflow/doraflow/internal/argocdtest"
	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

// startKube starts a real kube-apiserver and etcd (envtest, binaries from KUBEBUILDER_ASSETS) with
// Argo CD's Application CRD installed. Without the binaries it skips locally and fails in CI.
func startKube(t *testing.T) *rest.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("kube-apiserver integration test skipped in -short mode")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set in CI: run hack/tools.sh kube and export its output")
		}
		t.Skip("KUBEBUILDER_ASSETS not set (hack/tools.sh kube prints the directory)")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{applicationCRD(t)},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	return cfg
}

func applicationCRD(t *testing.T) string {
	t.Helper()
	path, err := argocdtest.ApplicationCRD(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKubeconfig writes a kubeconfig for cfg with the context "envtest".
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.Contexts["other"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: "admin"}
	kc.CurrentContext = "other" // the test selects "envtest" with --context
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// startArgo starts a kube-apiserver with the Application CRD and the namespace argocd, and returns
// the Argo CD stand-in and a kubeconfig for it (context "envtest").
func startArgo(t *testing.T) (argo, string) {
	t.Helper()
	cfg := startKube(t)
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "argocd"}}}
	if _, err := client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return argo{t: t, client: client}, writeKubeconfig(t, cfg)
}

// watcher writes the watcher's configuration (instance test, namespace argocd, cluster prd-1, no
// resync, plus extra YAML lines of the argocd section) and starts JetStream. It returns run's
// environment and arguments and a JetStream client to read what the watcher published.
func watcher(t *testing.T, kubeconfig string, extra ...string) (map[string]string, []string, jetstream.JetStream) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "config.yaml")
	yaml := "argocd:\n  enabled: true\n  instance: test\n  namespaces: [argocd]\n  known_clusters: [prd-1]\n  resync: 0s\n"
	for _, l := range extra {
		yaml += "  " + l + "\n"
	}
	writeFile(t, conf, yaml)
	srv := natstest.Start(t)
	_, js := srv.Connect()
	return map[string]string{"NATS_URL": srv.URL(), "KUBECONFIG": kubeconfig}, []string{"--config", conf, "--context", "envtest"}, js
}

// argo updates Applications the way Argo CD's controller does: status written with a plain update
// (the CRD has no status subresource), history entries appended with increasing ids.
type argo struct {
	t      *testing.T
	client dynamic.Interface
}

func (a argo) apps() dynamic.ResourceInterface {
	return a.client.Resource(argocd.GVR).Namespace("argocd")
}

func (a argo) create(name string) string {
	a.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": name, "namespace": "argocd"},
		"spec": map[string]any{"project": "default",
			"source":      map[string]any{"repoURL": "https://github.com/acme/gitops.git", "path": "apps/" + name + "/overlays/production", "targetRevision": "main"},
			"destination": map[string]any{"server": "https://api.prd-1.example.com:6443", "namespace": name}},
	}}
	got, err := a.apps().Create(a.t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create %s: %v", name, err)
	}
	return string(got.GetUID())
}

// status applies fn to the Application's status and writes it back.
func (a argo) status(name string, fn func(status map[string]any)) {
	a.t.Helper()
	u, err := a.apps().Get(a.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatal(err)
	}
	st, _, _ := unstructured.NestedMap(u.Object, "status")
	if st == nil {
		st = map[string]any{}
	}
	fn(st)
	if err := unstructured.SetNestedMap(u.Object, st, "status"); err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.apps().Update(a.t.Context(), u, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update %s status: %v", name, err)
	}
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// deploy appends history entry id (revision rev) as a successful sync does, with operationState, while
// the rollout runs: health Progressing, and the pods of the previous and the new image (tagged with the
// revision) both live. healthy finishes the rollout.
func (a argo) deploy(name string, id int64, rev string) time.Time {
	a.t.Helper()
	done := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	a.status(name, func(st map[string]any) {
		src := map[string]any{"repoURL": "https://github.com/acme/gitops.git", "path": "apps/" + name + "/overlays/production", "targetRevision": "main"}
		h, _ := st["history"].([]any)
		h = append(h, map[string]any{"id": id, "revision": rev, "deployStartedAt": ts(done.Add(-5 * time.Second)),
			"deployedAt": ts(done), "source": src, "initiatedBy": map[string]any{"automated": true}})
		if len(h) > 10 { // revisionHistoryLimit
			h = h[len(h)-10:]
		}
		st["history"] = h
		st["sync"] = map[string]any{"status": "Synced", "revision": rev}
		st["operationState"] = map[string]any{"phase": "Succeeded", "message": "successfully synced (all tasks run)",
			"startedAt": ts(done.Add(-5 * time.Second)), "finishedAt": ts(done),
			"operation":  map[string]any{"sync": map[string]any{"revision": rev}, "initiatedBy": map[string]any{"automated": true}},
			"syncResult": map[string]any{"revision": rev, "source": src}}
		images := []any{"quay.io/acme/" + name + ":" + rev}
		if old, _ := st["summary"].(map[string]any); old != nil {
			if prev, _ := old["images"].([]any); len(prev) > 0 && prev[len(prev)-1] != images[0] {
				images = []any{prev[len(prev)-1], images[0]}
			}
		}
		st["summary"] = map[string]any{"images": images}
		st["health"] = map[string]any{"status": "Progressing", "lastTransitionTime": ts(done)}
	})
	return done
}

// healthy ends the rollout of the latest entry: only its image is live and health is Healthy.
func (a argo) healthy(name string) {
	a.status(name, func(st map[string]any) {
		if sum, _ := st["summary"].(map[string]any); sum != nil {
			if imgs, _ := sum["images"].([]any); len(imgs) > 1 {
				sum["images"] = imgs[len(imgs)-1:]
			}
		}
		st["health"] = map[string]any{"status": "Healthy", "lastTransitionTime": ts(time.Now().Add(-time.Second))}
	})
}

func (a argo) health(name, status string, at time.Time) {
	a.status(name, func(st map[string]any) {
		st["health"] = map[string]any{"status": status, "lastTransitionTime": ts(at)}
	})
}

func (a argo) failSync(name, rev string) time.Time {
	started := time.Now().Add(-3 * time.Second).Truncate(time.Second)
	a.status(name, func(st map[string]any) {
		st["operationState"] = map[string]any{"phase": "Failed", "message": "one or more objects failed to apply",
			"startedAt": ts(started), "finishedAt": ts(started.Add(2 * time.Second)),
			"operation":  map[string]any{"sync": map[string]any{"revision": rev}, "initiatedBy": map[string]any{"automated": true}},
			"syncResult": map[string]any{"revision": rev}}
	})
	return started
}

// stream reads every message of the raw stream: ID → body.
func stream(t *testing.T, js jetstream.JetStream) (map[string]json.RawMessage, []string) {
	t.Helper()
	s, err := js.Stream(t.Context(), events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]json.RawMessage{}
	var dups []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(events.HeaderMsgID)
		if _, ok := byID[id]; ok {
			dups = append(dups, id)
		}
		byID[id] = m.Data
	}
	return byID, dups
}

func waitFor(t *testing.T, js jetstream.JetStream, ids ...string) map[string]json.RawMessage {
	t.Helper()
	var got map[string]json.RawMessage
	wait.For(t, 30*time.Second, func() error {
		got, _ = stream(t, js)
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				return fmt.Errorf("event %s not in the stream (have %d events)", id, len(got))
			}
		}
		return nil
	})
	return got
}

var publishedLine = regexp.MustCompile(`(?m)^doraflow_argocd_watcher_(?:deployments|change_failures)_published_total\{[^}]*\} (\d+)$`)

// publishedCount sums the watcher's own publish counters: how many events this process published.
func publishedCount(t *testing.T, s *servicetest.Service) int {
	t.Helper()
	_, body := s.Get(t, "/metrics")
	n := 0
	for _, m := range publishedLine.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// TestKubeIntegration runs the watcher against a real kube-apiserver with Argo CD's Application CRD:
// Applications are created and their status updated the way Argo CD does; the watcher is stopped
// mid-stream while deployments, a rollback, a new Application and a deletion happen, then restarted.
// Every deployment and change failure lands in JetStream exactly once, none is missed, and neither
// process published anything twice.
func TestKubeIntegration(t *testing.T) {
	a, kubeconfig := startArgo(t)
	client := a.client
	env, args, js := watcher(t, kubeconfig, "degraded_window: 30m", "degraded_grace: 0s")
	rev := func(n int) string { return fmt.Sprintf("%040x", n) }

	// Existing before the watcher ever ran: its history is the baseline, not emitted.
	legacy := a.create("legacy-prd-1")
	a.deploy("legacy-prd-1", 0, rev(100))
	a.deploy("legacy-prd-1", 1, rev(101))
	// creationTimestamp has one-second resolution and an Application created in the same second as
	// the first start counts as new; let that second pass.
	created, err := a.apps().Get(t.Context(), "legacy-prd-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 3*time.Second, func() error {
		if time.Now().Truncate(time.Second).After(created.GetCreationTimestamp().Time) {
			return nil
		}
		return fmt.Errorf("still the creation second of legacy-prd-1")
	})

	w1 := servicetest.Start(t, run, env, args...)
	checkout := a.create("checkout-prd-1") // created after watching began
	a.deploy("checkout-prd-1", 0, rev(1))  // held while Progressing, published when entry 1 comes
	a.deploy("legacy-prd-1", 2, rev(102))
	a.healthy("legacy-prd-1")
	d1 := a.deploy("checkout-prd-1", 1, rev(2)) // held, published when health turns Degraded
	a.health("checkout-prd-1", "Degraded", d1.Add(2*time.Second))
	failedAt := a.failSync("checkout-prd-1", rev(3))
	want := []string{
		events.DeploymentID("test", checkout, 0),
		events.DeploymentID("test", legacy, 2),
		events.DeploymentID("test", checkout, 1),
		events.ChangeFailureID(events.DeploymentID("test", checkout, 1), events.DetectionDegraded, false),
		events.FailedOperationID("test", checkout, failedAt),
	}
	waitFor(t, js, want...)
	n1 := publishedCount(t, w1)
	w1.Stop(t)

	// While the watcher is down: two deployments (the second a rollback), a new Application, and a
	// deletion.
	a.deploy("checkout-prd-1", 2, rev(3))
	a.deploy("checkout-prd-1", 3, rev(1))
	a.healthy("checkout-prd-1")
	cart := a.create("cart-prd-1")
	a.deploy("cart-prd-1", 0, rev(7))
	a.healthy("cart-prd-1")
	if err := a.apps().Delete(t.Context(), "legacy-prd-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	w2 := servicetest.Start(t, run, env, args...)
	caughtUp := []string{
		events.DeploymentID("test", checkout, 2),
		events.DeploymentID("test", checkout, 3),
		events.ChangeFailureID(events.DeploymentID("test", checkout, 2), events.DetectionRollback, false),
		events.DeploymentID("test", cart, 0),
	}
	want = append(want, caughtUp...)
	got := waitFor(t, js, want...)
	var rb events.DeploymentObserved
	if err := json.Unmarshal(got[events.DeploymentID("test", checkout, 3)], &rb); err != nil {
		t.Fatal(err)
	}
	if rb.Kind != events.KindRollback || rb.RollbackOf != events.DeploymentID("test", checkout, 0) {
		t.Errorf("entry 3 = kind %s rollback_of %s; want a rollback to entry 0", rb.Kind, rb.RollbackOf)
	}
	if rb.Component != "checkout" || rb.Cluster != "prd-1" || rb.Environment != events.EnvironmentProduction ||
		len(rb.AppCommits) != 1 || rb.AppCommits[0].SHA != rev(1) {
		t.Errorf("routing or commits wrong: %+v", rb)
	}

	// Healthy since the restart: both open failures (degraded entry 1, rolled-back entry 2) recovered.
	// One more deploy, with the old and the new pods live: held until the rollout ends, then published
	// with the new image's commit only.
	want = append(want,
		events.ChangeFailureID(events.DeploymentID("test", checkout, 1), events.DetectionDegraded, true),
		events.ChangeFailureID(events.DeploymentID("test", checkout, 2), events.DetectionRollback, true),
	)
	waitFor(t, js, want...)
	a.deploy("checkout-prd-1", 4, rev(4))
	wait.For(t, 10*time.Second, func() error {
		if _, body := w2.Get(t, "/metrics"); !strings.Contains(body, `doraflow_argocd_watcher_deployments_held_total{reason="progressing"} 1`) {
			return errors.New("entry 4 not held")
		}
		return nil
	})
	if got, _ := stream(t, js); got[events.DeploymentID("test", checkout, 4)] != nil {
		t.Error("entry 4 published while its pods were still rolling")
	}
	a.healthy("checkout-prd-1")
	want = append(want, events.DeploymentID("test", checkout, 4))
	got = waitFor(t, js, want...)
	var d4 events.DeploymentObserved
	if err := json.Unmarshal(got[events.DeploymentID("test", checkout, 4)], &d4); err != nil {
		t.Fatal(err)
	}
	if len(d4.AppCommits) != 1 || d4.AppCommits[0].SHA != rev(4) || len(d4.Flags) != 0 {
		t.Errorf("entry 4 commits %+v flags %v; want only %s", d4.AppCommits, d4.Flags, rev(4))
	}
	// The legacy Application's checkpoint was collected after the restart.
	wait.For(t, 10*time.Second, func() error {
		kv, err := js.KeyValue(t.Context(), checkpointBucket.Bucket)
		if err != nil {
			return err
		}
		keys, err := kv.Keys(t.Context())
		if err != nil {
			return err
		}
		for _, k := range keys {
			if strings.HasSuffix(k, legacy) {
				return fmt.Errorf("checkpoint %s of the deleted Application remains", k)
			}
		}
		return nil
	})
	n2 := publishedCount(t, w2)
	w2.Stop(t)

	got, dups := stream(t, js)
	if len(dups) > 0 {
		t.Errorf("stored twice: %v", dups)
	}
	gotIDs := make([]string, 0, len(got))
	for id := range got {
		gotIDs = append(gotIDs, id)
	}
	sort.Strings(gotIDs)
	slices.Sort(want)
	for _, id := range gotIDs {
		if !slices.Contains(want, id) {
			t.Errorf("unexpected event %s: %s", id, got[id])
		}
	}
	if strings.Join(gotIDs, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream holds\n%s\nwant\n%s", strings.Join(gotIDs, "\n"), strings.Join(want, "\n"))
	}
	if n1+n2 != len(want) {
		t.Errorf("the two watchers published %d+%d events, want %d: something was re-emitted", n1, n2, len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := argocd.Probe(ctx, client, []string{"argocd"}); err != nil {
		t.Errorf("Probe = %v", err)
	}
}
