package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/messaging"
	"github.com/doraflow/doraflow/internal/natstest"
)

var deployDir = filepath.Join("..", "..", "deploy")

// kustomizations are every kustomize root under deploy/ that must build on its own.
var kustomizations = []string{
	"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter", "nats", "monitoring",
	"overlays/local", "overlays/production", "overlays/tls",
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

// Rules every NetworkPolicy line below uses, as policyRules writes them.
const (
	opsFromMonitoring = "ingress from namespace{kubernetes.io/metadata.name=monitoring} on TCP/8081"
	egressNATS        = "egress to pods{app.kubernetes.io/name in (nats)} on TCP/4222"
	egressDNS         = "egress to namespace{kubernetes.io/metadata.name=kube-system}+pods{k8s-app in (kube-dns)} on UDP/53 TCP/53"
	egressPublicHTTPS = "egress to ipBlock{0.0.0.0/0 except 10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,192.168.0.0/16} ipBlock{::/0 except fc00::/7,fe80::/10} on TCP/443"
)

// wantPolicies is each part's NetworkPolicy: the ops port only from the monitoring namespace, and out
// only to NATS, DNS and the part's own external API.
var wantPolicies = map[string][]string{
	"argocd-watcher":   {opsFromMonitoring, egressNATS, egressDNS, "egress to anywhere on TCP/443 TCP/6443"}, // the API server is no pod
	"enricher":         {opsFromMonitoring, egressNATS, egressDNS, egressPublicHTTPS},                        // GitHub
	"webrca-poller":    {opsFromMonitoring, egressNATS, egressDNS, egressPublicHTTPS},                        // WebRCA and SSO
	"devlake-sink":     {opsFromMonitoring, egressNATS, egressDNS, "egress to namespace{*} on TCP/8080"},     // DevLake's backend
	"metrics-exporter": {opsFromMonitoring, egressNATS, egressDNS},
	"nats": {
		"ingress from namespace{kubernetes.io/metadata.name=monitoring} on TCP/8222",
		"ingress from pods{app.kubernetes.io/part-of in (doraflow)} on TCP/4222",
		"ingress from pods{app.kubernetes.io/name in (nats)} on TCP/6222",
		"egress to pods{app.kubernetes.io/name in (nats)} on TCP/6222",
		egressDNS,
	},
}

// networkPolicy is the part of a NetworkPolicy the checks read.
type networkPolicy struct {
	PodSelector metav1.LabelSelector `json:"podSelector"`
	PolicyTypes []string             `json:"policyTypes"`
	Ingress     []struct {
		From  []policyPeer `json:"from"`
		Ports []policyPort `json:"ports"`
	} `json:"ingress"`
	Egress []struct {
		To    []policyPeer `json:"to"`
		Ports []policyPort `json:"ports"`
	} `json:"egress"`
}

type policyPeer struct {
	PodSelector       *metav1.LabelSelector `json:"podSelector"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`
	IPBlock           *struct {
		CIDR   string   `json:"cidr"`
		Except []string `json:"except"`
	} `json:"ipBlock"`
}

type policyPort struct {
	Protocol string `json:"protocol"`
	Port     any    `json:"port"`
}

func decodePolicy(t *testing.T, o *unstructured.Unstructured) networkPolicy {
	t.Helper()
	b, err := json.Marshal(o.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	var np networkPolicy
	if err := json.Unmarshal(b, &np); err != nil {
		t.Fatalf("NetworkPolicy %s: %v", o.GetName(), err)
	}
	return np
}

// policyRules writes a policy's rules one line each, selectors as kubectl prints them.
func policyRules(t *testing.T, np networkPolicy) []string {
	t.Helper()
	selector := func(s *metav1.LabelSelector) string {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Empty() {
			return "*"
		}
		return sel.String()
	}
	peers := func(ps []policyPeer) string {
		if len(ps) == 0 {
			return "anywhere"
		}
		var out []string
		for _, p := range ps {
			var parts []string
			if p.NamespaceSelector != nil {
				parts = append(parts, "namespace{"+selector(p.NamespaceSelector)+"}")
			}
			if p.PodSelector != nil {
				parts = append(parts, "pods{"+selector(p.PodSelector)+"}")
			}
			if p.IPBlock != nil {
				parts = append(parts, "ipBlock{"+p.IPBlock.CIDR+" except "+strings.Join(p.IPBlock.Except, ",")+"}")
			}
			out = append(out, strings.Join(parts, "+"))
		}
		return strings.Join(out, " ")
	}
	ports := func(ps []policyPort) string {
		if len(ps) == 0 {
			return "any port"
		}
		var out []string
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s/%v", p.Protocol, p.Port))
		}
		return strings.Join(out, " ")
	}
	var lines []string
	for _, r := range np.Ingress {
		lines = append(lines, "ingress from "+peers(r.From)+" on "+ports(r.Ports))
	}
	for _, r := range np.Egress {
		lines = append(lines, "egress to "+peers(r.To)+" on "+ports(r.Ports))
	}
	return lines
}

// TestKustomizeNetworkPolicies requires every part's NetworkPolicy, with exactly its rules, in its own
// base and unchanged in every overlay; in an overlay, each policy selects its part's pods, and its
// NATS and kube-dns peers select NATS and DNS pods, not the part itself (kustomize's selector labels
// would do that to a matchLabels peer).
func TestKustomizeNetworkPolicies(t *testing.T) {
	check := func(t *testing.T, objs []*unstructured.Unstructured, parts []string) {
		t.Helper()
		policies := map[string]networkPolicy{}
		pods := map[string]labels.Set{} // part → its pod template labels
		for _, o := range objs {
			switch o.GetKind() {
			case "NetworkPolicy":
				policies[o.GetName()] = decodePolicy(t, o)
			case "Deployment", "StatefulSet":
				l, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
				pods[o.GetName()] = l
			}
		}
		for _, part := range parts {
			np, ok := policies[part]
			if !ok {
				t.Errorf("no NetworkPolicy %s", part)
				continue
			}
			if got := policyRules(t, np); !slices.Equal(got, wantPolicies[part]) {
				t.Errorf("NetworkPolicy %s rules:\n  %s\nwant:\n  %s", part, strings.Join(got, "\n  "), strings.Join(wantPolicies[part], "\n  "))
			}
			if !slices.Equal(np.PolicyTypes, []string{"Ingress", "Egress"}) {
				t.Errorf("NetworkPolicy %s policyTypes %v, want [Ingress Egress]", part, np.PolicyTypes)
			}
			own, err := metav1.LabelSelectorAsSelector(&np.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			if own.Empty() || own.String() == "" {
				t.Errorf("NetworkPolicy %s selects every pod", part)
			}
			for name, l := range pods {
				if own.Matches(l) != (name == part) {
					t.Errorf("NetworkPolicy %s selects pods of %s: %v (want only %s's)", part, name, own.Matches(l), part)
				}
			}
			for _, r := range np.Egress {
				for _, p := range r.To {
					if p.PodSelector == nil || p.NamespaceSelector != nil {
						continue
					}
					sel, _ := metav1.LabelSelectorAsSelector(p.PodSelector)
					if nats, ok := pods["nats"]; ok && !sel.Matches(nats) {
						t.Errorf("NetworkPolicy %s: egress peer %s does not select the NATS pods %v", part, sel, nats)
					}
				}
			}
		}
	}
	for _, part := range []string{"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter", "nats"} {
		t.Run(part, func(t *testing.T) { check(t, build(t, part), []string{part}) })
	}
	for _, overlay := range []string{"overlays/local", "overlays/production", "overlays/tls"} {
		t.Run(overlay, func(t *testing.T) {
			check(t, build(t, overlay), []string{"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter", "nats"})
		})
	}
}

// monitoringNamespacePatch is the overlay patch docs/deployment.md gives for a Prometheus that runs
// in another namespace than "monitoring"; every policy keeps that peer as its first ingress rule.
const monitoringNamespacePatch = `patches:
  - target:
      kind: NetworkPolicy
      name: argocd-watcher|webrca-poller|enricher|devlake-sink|metrics-exporter|nats
    patch: |
      - op: replace
        path: /spec/ingress/0/from/0/namespaceSelector
        value:
          matchLabels:
            kubernetes.io/metadata.name: observability
`

// TestKustomizeMonitoringNamespaceIsPatchable applies the documented patch in an overlay of the
// production overlay and requires every ops (and NATS monitor) port open to the new namespace only.
func TestKustomizeMonitoringNamespaceIsPatchable(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), monitoringNamespacePatch) {
		t.Errorf("docs/deployment.md does not give the patch verbatim:\n%s", monitoringNamespacePatch)
	}
	production, err := filepath.Abs(filepath.Join(deployDir, "overlays", "production"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, production) // kustomize takes no absolute resource paths
	if err != nil {
		t.Fatal(err)
	}
	kustomization := "resources:\n  - " + rel + "\n" + monitoringNamespacePatch
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o600); err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build with the patch: %v", err)
	}
	patched := 0
	for _, r := range m.Resources() {
		if r.GetKind() != "NetworkPolicy" || r.GetName() == "default-deny" {
			continue
		}
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		for _, line := range policyRules(t, decodePolicy(t, u)) {
			if strings.Contains(line, "kubernetes.io/metadata.name=monitoring") {
				t.Errorf("NetworkPolicy %s still opens to monitoring: %s", r.GetName(), line)
			}
			if strings.HasPrefix(line, "ingress from namespace{kubernetes.io/metadata.name=observability}") {
				patched++
			}
		}
	}
	if patched != 6 {
		t.Errorf("%d policies open to the observability namespace, want 6 (five services and NATS)", patched)
	}
}

// TestKustomizeTLSOverlay checks the TLS-only, credentialed overlay: the shared environment names
// files that every service mounts from its own placeholder Secrets, and the NATS servers mount their
// certificate and the operator's JWTs. Then it runs the rendered nats.conf in an embedded server (its
// paths moved to a temporary directory, the cluster block dropped, test certificates and an operator
// in place of the placeholders) and connects with the rendered environment through messaging.Connect.
func TestKustomizeTLSOverlay(t *testing.T) {
	objs := build(t, "overlays/tls")
	find := func(kind, name string) *unstructured.Unstructured {
		t.Helper()
		for _, o := range objs {
			if o.GetKind() == kind && (o.GetName() == name || strings.HasPrefix(o.GetName(), name+"-") && kind == "ConfigMap") {
				return o
			}
		}
		t.Fatalf("no %s %s in the tls overlay", kind, name)
		return nil
	}
	env, _, _ := unstructured.NestedStringMap(find("ConfigMap", "doraflow-env").Object, "data")
	if !strings.HasPrefix(env["NATS_URL"], "tls://") {
		t.Errorf("NATS_URL = %q, want a tls:// URL", env["NATS_URL"])
	}
	files := []string{"NATS_TLS_CA_FILE", "NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE", "NATS_CREDS_FILE"}
	for _, k := range append(files, "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY_SEED_FILE") {
		if _, set := env[k]; set != slices.Contains(files, k) {
			t.Errorf("doraflow-env: %s set = %v", k, set)
		}
	}

	// Every Secret holds placeholders, never a key, a certificate, a JWT or an nkey seed.
	secrets := map[string]map[string]string{}
	for _, o := range objs {
		if o.GetKind() != "Secret" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(o.Object, "stringData")
		if b64, found, _ := unstructured.NestedStringMap(o.Object, "data"); found && len(b64) > 0 {
			t.Errorf("Secret %s has data %v; placeholders belong in stringData", o.GetName(), slices.Collect(maps.Keys(b64)))
		}
		for k, v := range data {
			if !strings.Contains(v, "REPLACE") || strings.Contains(v, "-----BEGIN") || strings.Contains(v, "eyJ") || nkeySeed.MatchString(v) {
				t.Errorf("Secret %s key %s is not a placeholder: %q", o.GetName(), k, v)
			}
		}
		secrets[o.GetName()] = data
	}

	// Each service mounts its own certificate and creds at the paths of the shared environment.
	for _, svc := range []string{"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter"} {
		d := find("Deployment", svc)
		pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
		provided := map[string]string{} // mounted path → secret/key
		containers, _, _ := unstructured.NestedSlice(pod, "containers")
		c, _ := containers[0].(map[string]any)
		mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
		vols, _, _ := unstructured.NestedSlice(pod, "volumes")
		for _, m := range mounts {
			mount, _ := m.(map[string]any)
			for _, v := range vols {
				vol, _ := v.(map[string]any)
				if vol["name"] != mount["name"] {
					continue
				}
				sources, _, _ := unstructured.NestedSlice(vol, "projected", "sources")
				for _, s := range sources {
					src, _ := s.(map[string]any)
					secret, _, _ := unstructured.NestedMap(src, "secret")
					items, _, _ := unstructured.NestedSlice(secret, "items")
					for _, it := range items {
						item, _ := it.(map[string]any)
						provided[fmt.Sprint(mount["mountPath"], "/", item["path"])] = fmt.Sprint(secret["name"], "/", item["key"])
					}
				}
			}
		}
		for _, k := range files {
			src, ok := provided[env[k]]
			if !ok {
				t.Errorf("%s does not mount %s=%s (mounted: %v)", svc, k, env[k], provided)
				continue
			}
			name, key, _ := strings.Cut(src, "/")
			if !strings.HasPrefix(name, svc+"-nats-") {
				t.Errorf("%s takes %s from Secret %s, not from its own", svc, k, name)
			}
			if _, ok := secrets[name][key]; !ok {
				t.Errorf("%s: %s comes from %s, which the overlay does not define", svc, k, src)
			}
		}
	}

	// The NATS servers mount their certificate and the resolver where nats.conf reads them.
	sts := find("StatefulSet", "nats")
	mounts := map[string]string{}
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	c, _ := containers[0].(map[string]any)
	ms, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	vols, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "volumes")
	for _, m := range ms {
		mount, _ := m.(map[string]any)
		for _, v := range vols {
			vol, _ := v.(map[string]any)
			if vol["name"] == mount["name"] {
				if s, ok, _ := unstructured.NestedString(vol, "secret", "secretName"); ok {
					mounts[fmt.Sprint(mount["mountPath"])] = "secret " + s
				}
				if s, ok, _ := unstructured.NestedString(vol, "configMap", "name"); ok {
					mounts[fmt.Sprint(mount["mountPath"])] = "configMap " + s
				}
			}
		}
	}
	resolver := find("ConfigMap", "nats-resolver")
	if mounts["/etc/nats-tls"] != "secret nats-server-tls" || mounts["/etc/nats-auth"] != "configMap "+resolver.GetName() {
		t.Errorf("NATS mounts %v, want /etc/nats-tls from Secret nats-server-tls and /etc/nats-auth from %s", mounts, resolver.GetName())
	}
	if _, ok := secrets["nats-server-tls"]["tls.key"]; !ok {
		t.Error("no placeholder Secret nats-server-tls with tls.key")
	}

	// Run the rendered nats.conf with real test material in place of the placeholders.
	conf, _, _ := unstructured.NestedString(find("ConfigMap", "nats-config").Object, "data", "nats.conf")
	root := t.TempDir()
	pki, op := natstest.NewPKI(t), natstest.NewOperator(t)
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		write(to, b)
	}
	copyFile(pki.ServerCertFile, filepath.Join(root, "etc/nats-tls/tls.crt"))
	copyFile(pki.ServerKeyFile, filepath.Join(root, "etc/nats-tls/tls.key"))
	copyFile(pki.CAFile, filepath.Join(root, "etc/nats-tls/ca.crt"))
	write(filepath.Join(root, "etc/nats-auth/resolver.conf"), op.ResolverConfig())
	write(filepath.Join(root, "etc/nats/nats.conf"), []byte(strings.ReplaceAll(conf, "/etc/nats-tls/", root+"/etc/nats-tls/")))
	t.Setenv("SERVER_NAME", "nats-0")
	parsed, err := server.ProcessConfigFile(filepath.Join(root, "etc/nats/nats.conf"))
	if err != nil {
		t.Fatalf("rendered nats.conf: %v", err)
	}
	if parsed.TLSConfig == nil || parsed.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Error("nats.conf does not require mutual TLS of its clients")
	}
	if parsed.Cluster.TLSConfig == nil || parsed.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Error("nats.conf does not require mutual TLS of its routes")
	}
	if len(parsed.TrustedOperators) != 1 || parsed.Username != "" || parsed.Authorization != "" || len(parsed.Users) > 0 || len(parsed.Nkeys) > 0 {
		t.Error("nats.conf does not trust exactly one operator, or accepts other authentication")
	}
	srv := natstest.Start(t, func(o *server.Options) {
		storeDir := o.StoreDir
		*o = *parsed
		// One server of the cluster, on a random loopback port, without its routes and pid file.
		o.Host, o.Port, o.HTTPPort, o.PidFile, o.StoreDir = "127.0.0.1", -1, 0, "", storeDir
		o.Cluster, o.Routes = server.ClusterOpts{}, nil
		o.NoLog, o.NoSigs = true, true
	})
	clientDir := t.TempDir()
	copyFile(pki.CAFile, filepath.Join(clientDir, "ca.crt"))
	copyFile(pki.ClientCertFile, filepath.Join(clientDir, "tls.crt"))
	copyFile(pki.ClientKeyFile, filepath.Join(clientDir, "tls.key"))
	copyFile(op.UserCreds("enricher"), filepath.Join(clientDir, "nats.creds"))
	connect := func(unset ...string) error {
		t.Helper()
		e := config.NewEnv(func(k string) string {
			switch {
			case slices.Contains(unset, k):
				return ""
			case k == "NATS_URL":
				return srv.URL() // tls://127.0.0.1:port
			}
			return strings.Replace(env[k], "/var/run/secrets/doraflow/nats", clientDir, 1)
		})
		s := messaging.SettingsFromEnv(e, "enricher")
		if err := e.Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		nc, err := messaging.Connect(ctx, s, zerolog.Nop())
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		_, err = js.AccountInfo(ctx)
		return err
	}
	if err := connect(); err != nil {
		t.Fatalf("connect with the overlay's environment: %v", err)
	}
	for _, unset := range [][]string{{"NATS_CREDS_FILE"}, {"NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE"}} {
		if err := connect(unset...); err == nil {
			t.Errorf("connected without %v", unset)
		}
	}
	if nc, err := nats.Connect(srv.URL(), nats.UserCredentials(filepath.Join(clientDir, "nats.creds"))); err == nil {
		nc.Close()
		t.Error("a plain connection without TLS was accepted")
	}
}

// nkeySeed matches an nkey seed (user, account or operator) as nsc prints it.
var nkeySeed = regexp.MustCompile(`S[UAO][A-Z2-7]{50,}`)
