package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var deployDir = filepath.Join("..", "..", "deploy")

// kustomizations are every kustomize root under deploy/ that must build on its own.
var kustomizations = []string{
	"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter", "nats", "monitoring",
	"overlays/local", "overlays/production",
}

// build renders a kustomization with the kustomize library, offline, as `kubectl kustomize` would.
func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(deployDir, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		// Through JSON, so numbers become int64 as client-go's decoders make them.
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, u)
	}
	return out
}

func TestKustomizeBuildsWithInvariants(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
			for _, o := range objs {
				id := o.GetKind() + "/" + o.GetName()
				if o.GetLabels()["app.kubernetes.io/part-of"] != "doraflow" {
					t.Errorf("%s lacks label app.kubernetes.io/part-of=doraflow", id)
				}
				switch o.GetKind() {
				case "Deployment", "StatefulSet":
					checkWorkload(t, o)
				case "ClusterRole", "Role":
					checkRole(t, o)
				case "ClusterRoleBinding", "RoleBinding":
					checkBinding(t, o)
				case "ServiceAccount":
					automount, found, _ := unstructured.NestedBool(o.Object, "automountServiceAccountToken")
					if o.GetName() != "argocd-watcher" && (!found || automount) {
						t.Errorf("%s mounts an API token; only argocd-watcher talks to Kubernetes", id)
					}
				}
			}
		})
	}
}

// checkWorkload asserts the hardening and probes every doraflow pod must have.
func checkWorkload(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	id := o.GetKind() + "/" + o.GetName()
	pod, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if v, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !v {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", id)
	}
	if v, _, _ := unstructured.NestedString(pod, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("%s: seccompProfile %q, want RuntimeDefault", id, v)
	}
	if o.GetName() != "argocd-watcher" {
		if v, found, _ := unstructured.NestedBool(pod, "automountServiceAccountToken"); !found || v {
			t.Errorf("%s: automountServiceAccountToken must be false", id)
		}
	}
	selector, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
	podLabels, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
	for k, v := range selector {
		if podLabels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod template labels %v", id, k, v, podLabels)
		}
	}
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	if len(containers) == 0 {
		t.Fatalf("%s has no containers", id)
	}
	for _, item := range containers {
		c, _ := item.(map[string]any)
		cid := fmt.Sprintf("%s container %v", id, c["name"])
		image, _ := c["image"].(string)
		if image == "" || !strings.Contains(image[strings.LastIndex(image, "/")+1:], ":") || strings.HasSuffix(image, ":latest") {
			t.Errorf("%s: image %q must name a tag other than latest", cid, image)
		}
		sc, _ := c["securityContext"].(map[string]any)
		if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true || sc["privileged"] == true {
			t.Errorf("%s: securityContext %v is not hardened", cid, sc)
		}
		drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop")
		if !slices.Contains(drop, "ALL") {
			t.Errorf("%s: capabilities.drop %v lacks ALL", cid, drop)
		}
		if added, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add"); len(added) > 0 {
			t.Errorf("%s adds capabilities %v", cid, added)
		}
		if _, ok, _ := unstructured.NestedString(c, "resources", "limits", "memory"); !ok {
			t.Errorf("%s has no memory limit", cid)
		}
		if o.GetKind() == "Deployment" {
			if p, _, _ := unstructured.NestedString(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
				t.Errorf("%s: liveness probe %q, want /healthz", cid, p)
			}
			if p, _, _ := unstructured.NestedString(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
				t.Errorf("%s: readiness probe %q, want /readyz", cid, p)
			}
		}
	}
}

// checkRole allows exactly one role: read-only access to Argo CD Applications for the watcher.
func checkRole(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	if o.GetName() != "doraflow-argocd-watcher" {
		t.Errorf("%s %s: only argocd-watcher may have Kubernetes permissions", o.GetKind(), o.GetName())
		return
	}
	rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
	b, _ := json.Marshal(rules)
	want := `[{"apiGroups":["argoproj.io"],"resources":["applications"],"verbs":["get","list","watch"]}]`
	if string(b) != want {
		t.Errorf("%s rules = %s, want %s", o.GetName(), b, want)
	}
}

func checkBinding(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	role, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
	subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
	if role != "doraflow-argocd-watcher" || len(subjects) != 1 {
		t.Errorf("%s %s binds %s to %v; only the watcher's role to its account is allowed", o.GetKind(), o.GetName(), role, subjects)
		return
	}
	s, _ := subjects[0].(map[string]any)
	if s["kind"] != "ServiceAccount" || s["name"] != "argocd-watcher" {
		t.Errorf("%s binds to %v, want ServiceAccount argocd-watcher", o.GetName(), s)
	}
}

func TestKustomizeProductionOverlay(t *testing.T) {
	objs := build(t, "overlays/production")
	byKind := map[string][]*unstructured.Unstructured{}
	for _, o := range objs {
		byKind[o.GetKind()] = append(byKind[o.GetKind()], o)
		if o.GetKind() != "Namespace" && o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != "doraflow" {
			t.Errorf("%s/%s is in namespace %q, want doraflow", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	find := func(kind, name string) *unstructured.Unstructured {
		for _, o := range byKind[kind] {
			if o.GetName() == name || strings.HasPrefix(o.GetName(), name+"-") {
				return o
			}
		}
		t.Fatalf("no %s %s in the production overlay", kind, name)
		return nil
	}
	if r, _, _ := unstructured.NestedInt64(find("StatefulSet", "nats").Object, "spec", "replicas"); r != 3 {
		t.Errorf("NATS replicas = %d, want 3", r)
	}
	if conf, _, _ := unstructured.NestedString(find("ConfigMap", "nats-config").Object, "data", "nats.conf"); !strings.Contains(conf, "cluster {") ||
		!strings.Contains(conf, "nats://nats-2.nats-headless:6222") {
		t.Errorf("production nats.conf is not a 3-node cluster:\n%s", conf)
	}
	if v, _, _ := unstructured.NestedString(find("ConfigMap", "doraflow-env").Object, "data", "JETSTREAM_REPLICAS"); v != "3" {
		t.Errorf("JETSTREAM_REPLICAS = %q, want 3 (R3 streams and buckets)", v)
	}
	if r, _, _ := unstructured.NestedInt64(find("Deployment", "argocd-watcher").Object, "spec", "replicas"); r != 1 {
		t.Errorf("argocd-watcher replicas = %d, want 1 per Argo CD instance", r)
	}
	if target, _, _ := unstructured.NestedString(find("HorizontalPodAutoscaler", "devlake-sink").Object, "spec", "scaleTargetRef", "name"); target != "devlake-sink" {
		t.Errorf("HPA targets %q", target)
	}
	find("PrometheusRule", "doraflow")
	dashboard := find("ConfigMap", "doraflow-grafana-dashboard")
	if dashboard.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard=1 (the sidecar would not load it)", dashboard.GetLabels())
	}
	services := []string{"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter"}
	for _, s := range services {
		find("ServiceMonitor", s)
		find("Service", s)
	}
	for _, pdb := range byKind["PodDisruptionBudget"] {
		sel, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
		matched := false
		for _, kind := range []string{"Deployment", "StatefulSet"} {
			for _, w := range byKind[kind] {
				labels, _, _ := unstructured.NestedStringMap(w.Object, "spec", "template", "metadata", "labels")
				all := true
				for k, v := range sel {
					all = all && labels[k] == v
				}
				matched = matched || all
			}
		}
		if !matched {
			t.Errorf("PodDisruptionBudget %s selects no pods (%v)", pdb.GetName(), sel)
		}
	}
	if find("NetworkPolicy", "default-deny") == nil {
		t.Error("no default-deny NetworkPolicy")
	}
	// Generated ConfigMaps are referenced by their hashed names, so a config change rolls pods.
	for _, d := range byKind["Deployment"] {
		vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
		for _, v := range vols {
			vol, _ := v.(map[string]any)
			if name, ok, _ := unstructured.NestedString(vol, "configMap", "name"); ok && name == d.GetName()+"-config" {
				t.Errorf("%s mounts %s without the generated hash suffix", d.GetName(), name)
			}
		}
	}
}

// moduleDir returns the directory of a Go module version in the module cache, downloading it
// through the module proxy if needed. Nothing imports the module; tests read files from it.
func moduleDir(t *testing.T, modVersion string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", modVersion).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", modVersion, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %s %v", modVersion, info.Error, err)
	}
	return info.Dir
}

// kubeAssets returns KUBEBUILDER_ASSETS, skipping locally and failing in CI when it is unset.
func kubeAssets(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is unset in CI; run through `make test`, which builds kube-apiserver and etcd")
		}
		t.Skip("KUBEBUILDER_ASSETS unset: run `make test` (or export KUBEBUILDER_ASSETS=$(hack/tools.sh kube | tail -1))")
	}
	return dir
}
