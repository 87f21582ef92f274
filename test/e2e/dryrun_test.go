package e2e

import (
	"os"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// prometheusOperator is the module whose CRDs (ServiceMonitor, PrometheusRule) the dry run installs.
const prometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// TestOverlaysServerSideDryRun applies every object of each overlay to a real
// kube-apiserver + etcd with server-side apply, dry-run and strict field validation: the API server
// must accept each one. The ServiceMonitor and PrometheusRule kinds are checked against the
// Prometheus Operator's own CRDs, installed first.
func TestOverlaysServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	assets := kubeAssets(t)
	crdDir := t.TempDir()
	src := filepath.Join(moduleDir(t, prometheusOperator), "example", "prometheus-operator-crd")
	for _, f := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crdDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{crdDir}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	for _, tc := range []struct {
		overlay string
		kinds   []string // kinds that must be among the accepted objects
	}{
		{"overlays/local", []string{"Deployment", "StatefulSet", "ClusterRole"}},
		{"overlays/production", []string{"ServiceMonitor", "PrometheusRule", "Deployment", "StatefulSet", "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget"}},
		{"overlays/tls", []string{"Deployment", "StatefulSet", "NetworkPolicy", "Secret"}},
	} {
		t.Run(tc.overlay, func(t *testing.T) { dryRunApply(t, dyn, mapper, build(t, tc.overlay), tc.kinds) })
	}
}

// dryRunApply creates the overlay's namespace for real, then server-side applies every other object
// with dry-run and strict field validation.
func dryRunApply(t *testing.T, dyn *dynamic.DynamicClient, mapper meta.RESTMapper, objs []*unstructured.Unstructured, kinds []string) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			_, err := dyn.Resource(namespacesGVR).Create(t.Context(), o, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create namespace: %v", err)
			}
		}
	}
	force := true
	applied := map[string]int{}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		gvk := o.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s %s: the API server does not serve this kind: %v", gvk, o.GetName(), err)
			continue
		}
		ri := dynamic.ResourceInterface(dyn.Resource(mapping.Resource))
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
		}
		body, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ri.Patch(t.Context(), o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager: "doraflow-dry-run", Force: &force, DryRun: []string{metav1.DryRunAll},
			FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			t.Errorf("server-side apply (dry run) of %s %s/%s: %v", gvk.Kind, o.GetNamespace(), o.GetName(), err)
			continue
		}
		applied[gvk.Kind]++
	}
	t.Logf("accepted: %v", applied)
	if total := sum(applied); total != len(objs)-1 {
		t.Errorf("accepted %d of %d objects", total, len(objs)-1)
	}
	for _, kind := range kinds {
		if applied[kind] == 0 {
			t.Errorf("no %s was dry-run applied", kind)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
