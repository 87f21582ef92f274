package e2e

import (
	"context"
	"crypto/sha1" //nolint:gosec // a GitOps revision is a SHA-1, as Git's are
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/doraflow/doraflow/internal/argocdtest"
)

// argoWorld is a real kube-apiserver and etcd with Argo CD's Application CRD, whose Applications
// the test changes the way Argo CD does, for argocd-watcher to watch.
type argoWorld struct {
	t          *testing.T
	namespace  string
	kubeconfig string
	apps       dynamic.ResourceInterface
	uids       map[string]string
	history    map[string][]any // per Application, its status.history as last written
}

// historyLimit is how many status.history entries Argo CD keeps (revisionHistoryLimit's default).
const historyLimit = 10

// startArgoWorld starts the API server (binaries from KUBEBUILDER_ASSETS, which make test-chaos
// sets) with the CRD installed and the namespace created.
func startArgoWorld(t *testing.T, namespace string) *argoWorld {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is unset: run make test-chaos, which builds kube-apiserver and etcd (hack/tools.sh kube)")
	}
	crd, err := argocdtest.ApplicationCRD(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{crd}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": namespace}}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
		Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &argoWorld{t: t, namespace: namespace, kubeconfig: path, uids: map[string]string{}, history: map[string][]any{},
		apps: dyn.Resource(schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}).
			Namespace(namespace)}
}

func appSource(component string) map[string]any {
	return map[string]any{"repoURL": "https://github.com/acme/gitops.git", "targetRevision": "main",
		"path": "components/" + component + "/overlays/production"}
}

// create adds the Application <component>-<cluster> with no history yet, and returns its UID.
func (w *argoWorld) create(component, cluster string) string {
	w.t.Helper()
	name := component + "-" + cluster
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": name, "namespace": w.namespace},
		"spec": map[string]any{"project": "default", "source": appSource(component),
			"destination": map[string]any{"name": cluster, "namespace": component}},
	}}
	got, err := w.apps.Create(w.t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("create Application %s: %v", name, err)
	}
	w.uids[name] = string(got.GetUID())
	return w.uids[name]
}

// deploy records a successful sync of the image built from sha as history entry id, finished at
// at, the way Argo CD writes it: history appended (and trimmed), sync and operation state, the
// live images, healthy.
func (w *argoWorld) deploy(ctx context.Context, component, cluster string, id int64, sha string, at time.Time) error {
	name := component + "-" + cluster
	sum := sha1.Sum([]byte(name + "/" + strconv.FormatInt(id, 10) + "/" + sha)) //nolint:gosec // see the import
	revision := hex.EncodeToString(sum[:])
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	started := at.Add(-time.Minute)
	src := appSource(component)
	h := append(w.history[name], map[string]any{"id": id, "revision": revision, "deployStartedAt": ts(started),
		"deployedAt": ts(at), "source": src, "initiatedBy": map[string]any{"automated": true}})
	if len(h) > historyLimit {
		h = h[len(h)-historyLimit:]
	}
	u, err := w.apps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	status := map[string]any{
		"history": h,
		"sync":    map[string]any{"status": "Synced", "revision": revision},
		"operationState": map[string]any{"phase": "Succeeded", "message": "successfully synced (all tasks run)",
			"startedAt": ts(started), "finishedAt": ts(at),
			"operation":  map[string]any{"sync": map[string]any{"revision": revision}, "initiatedBy": map[string]any{"automated": true}},
			"syncResult": map[string]any{"revision": revision, "source": src}},
		"summary": map[string]any{"images": []any{"quay.io/acme/" + component + ":" + sha}},
		"health":  map[string]any{"status": "Healthy", "lastTransitionTime": ts(at.Add(time.Minute))},
	}
	if err := unstructured.SetNestedMap(u.Object, status, "status"); err != nil {
		return err
	}
	// A plain update, as Argo CD does: the CRD has no status subresource.
	if _, err := w.apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update Application %s: %w", name, err)
	}
	w.history[name] = h
	return nil
}
