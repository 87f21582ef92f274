package argocd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/doraflow/doraflow/internal/wait"
)

// fakeClient returns the fake dynamic client with the Application list kind registered (the plain
// NewSimpleDynamicClient panics on List for unregistered kinds).
func fakeClient(objs ...kruntime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(kruntime.NewScheme(),
		map[schema.GroupVersionResource]string{GVR: "ApplicationList"}, objs...)
}

// seen records what the processor was given, per key.
type seen struct {
	mu    sync.Mutex
	calls map[string][]*unstructured.Unstructured
	fail  map[string]int // fail the first n calls of a key
}

func (s *seen) Process(_ context.Context, key string, u *unstructured.Unstructured) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[key] = append(s.calls[key], u)
	if s.fail[key] > 0 {
		s.fail[key]--
		return 0, fmt.Errorf("transient")
	}
	return 0, nil
}

func (s *seen) last(key string) (*unstructured.Unstructured, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[key]
	if len(c) == 0 {
		return nil, 0
	}
	return c[len(c)-1], len(c)
}

type counter struct {
	mu     sync.Mutex
	events map[string]int
}

func (c *counter) InformerEvent(kind string) { c.mu.Lock(); c.events[kind]++; c.mu.Unlock() }
func (c *counter) WatchError(error)          {}

// TestWatcher runs the informer on the fake dynamic client: the processor sees stripped objects,
// updates and deletions (as nil), failed keys are retried, only watched namespaces are seen, and
// readiness follows the cache.
func TestWatcher(t *testing.T) {
	a := loadApp(t, "single-source-helm.json")
	other := loadApp(t, "minimal.json")
	other.SetNamespace("elsewhere")
	client := fakeClient(a, other)
	obs := &counter{events: map[string]int{}}
	w, err := New(Options{Client: client, Namespaces: []string{"argocd"}, Workers: 2, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(t.Context()); err == nil {
		t.Fatal("ready before the cache synced")
	}
	p := &seen{calls: map[string][]*unstructured.Unstructured{}, fail: map[string]int{"argocd/checkout-stone-prd-rh01": 1}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	synced := make(chan int, 1)
	go func() {
		done <- w.Run(ctx, p, func(context.Context) error { synced <- len(w.List()); return nil })
	}()
	key := "argocd/checkout-stone-prd-rh01"
	wait.For(t, 10*time.Second, func() error {
		if _, n := p.last(key); n < 2 {
			return fmt.Errorf("processed %d times, want a failure and a retry", n)
		}
		return nil
	})
	if n := <-synced; n != 1 {
		t.Errorf("afterSync saw %d cached applications, want 1 (one namespace watched)", n)
	}
	if err := w.Ready(t.Context()); err != nil {
		t.Errorf("Ready = %v after sync", err)
	}
	got, _ := p.last(key)
	if _, found, _ := unstructured.NestedFieldNoCopy(got.Object, "status", "resources"); found {
		t.Error("processor got an object with status.resources: the transform did not run")
	}
	if len(got.GetManagedFields()) > 0 {
		t.Error("managedFields kept in the cache")
	}

	// An update is seen with the new content.
	upd := got.DeepCopy()
	if err := unstructured.SetNestedField(upd.Object, "Degraded", "status", "health", "status"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Resource(GVR).Namespace("argocd").Update(t.Context(), upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, func() error {
		u, _ := p.last(key)
		if h, _, _ := unstructured.NestedString(u.Object, "status", "health", "status"); h != "Degraded" {
			return fmt.Errorf("health %q", h)
		}
		return nil
	})
	// A deletion reaches the processor as nil.
	if err := client.Resource(GVR).Namespace("argocd").Delete(t.Context(), a.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, func() error {
		if u, _ := p.last(key); u != nil {
			return fmt.Errorf("last call still has an object")
		}
		return nil
	})
	if _, n := p.last("elsewhere/bare"); n != 0 {
		t.Error("an Application outside the watched namespaces was processed")
	}
	obs.mu.Lock()
	if obs.events["add"] != 1 || obs.events["update"] < 1 || obs.events["delete"] != 1 {
		t.Errorf("informer events = %v", obs.events)
	}
	obs.mu.Unlock()
	// API server lost: readiness says so (the reflector retries on its own).
	client.PrependReactor("list", "applications", func(k8stesting.Action) (bool, kruntime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if err := w.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "Kubernetes API unreachable") {
		t.Errorf("Ready with the API down = %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// heavyApp is an Application as a busy Argo CD holds it: 10 history entries with inline Helm values,
// 40 managed resources, sync results, managed fields and the last-applied annotation.
func heavyApp(i int) *unstructured.Unstructured {
	values := fmt.Sprintf("replicas: 3\nimage:\n  repository: quay.io/acme/app-%d\n  tag: %040d\nresources:\n  limits: {cpu: 2, memory: 1Gi}\n", i, i)
	src := func(rev int) map[string]any {
		return map[string]any{"repoURL": "https://github.com/acme/gitops.git", "path": fmt.Sprintf("apps/app-%d/overlays/production", i),
			"targetRevision": "main", "helm": map[string]any{"values": values, "parameters": []any{map[string]any{"name": "rev", "value": fmt.Sprint(rev)}}}}
	}
	var hist, resources, results []any
	for h := range 10 {
		hist = append(hist, map[string]any{"id": int64(h), "revision": fmt.Sprintf("%040x", h+i),
			"deployStartedAt": "2025-03-01T10:00:00Z", "deployedAt": "2025-03-01T10:01:00Z", "source": src(h),
			"initiatedBy": map[string]any{"automated": true}})
	}
	for r := range 40 {
		resources = append(resources, map[string]any{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "app",
			"name": fmt.Sprintf("app-%d-component-%d", i, r), "status": "Synced", "health": map[string]any{"status": "Healthy", "message": "Deployment is available"}})
		results = append(results, map[string]any{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "app",
			"name": fmt.Sprintf("app-%d-component-%d", i, r), "status": "Synced", "message": "deployment.apps configured", "syncPhase": "Sync", "hookPhase": "Running"})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": fmt.Sprintf("app-%d-prd-1", i), "namespace": "argocd", "uid": fmt.Sprintf("uid-%d", i),
			"annotations": map[string]any{LastAppliedAnnotation: values + values + values},
			"managedFields": []any{map[string]any{"manager": "argocd-application-controller", "operation": "Update",
				"fieldsV1": map[string]any{"f:status": map[string]any{"f:resources": map[string]any{}, "f:history": map[string]any{}, "f:summary": map[string]any{}}}}}},
		"spec": map[string]any{"project": "default", "source": src(9), "destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "app"}},
		"status": map[string]any{
			"history": hist, "resources": resources,
			"health":  map[string]any{"status": "Healthy"},
			"sync":    map[string]any{"status": "Synced", "revision": fmt.Sprintf("%040x", 9+i), "comparedTo": map[string]any{"source": src(9)}},
			"summary": map[string]any{"images": []any{fmt.Sprintf("quay.io/acme/app-%d:%040d", i, i)}},
			"operationState": map[string]any{"phase": "Succeeded", "startedAt": "2025-03-01T10:00:00Z", "finishedAt": "2025-03-01T10:01:00Z",
				"syncResult": map[string]any{"revision": fmt.Sprintf("%040x", 9+i), "resources": results, "source": src(9)}},
		},
	}}
}

type nop struct{}

func (nop) Process(context.Context, string, *unstructured.Unstructured) (time.Duration, error) {
	return 0, nil
}

// BenchmarkInformerMemory loads 5,000 Applications with 10 history entries each into the informer
// cache through the fake dynamic client, with and without the cache transform, and reports the heap
// the cache holds (heap after sync minus heap with only the fake client's own copies).
func BenchmarkInformerMemory(b *testing.B) {
	const apps = 5000
	for _, strip := range []bool{true, false} {
		b.Run(fmt.Sprintf("strip=%v", strip), func(b *testing.B) {
			for range b.N {
				objs := make([]kruntime.Object, apps)
				for i := range objs {
					objs[i] = heavyApp(i)
				}
				client := fakeClient(objs...)
				clear(objs) // only the fake client's copies stay in the baseline
				base := heapInUse()
				w, err := New(Options{Client: client, Workers: 1})
				if err != nil {
					b.Fatal(err)
				}
				if !strip {
					// Before the informers start, the transform can still be replaced.
					for _, inf := range w.informers {
						if err := inf.SetTransform(nil); err != nil {
							b.Fatal(err)
						}
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { _ = w.Run(ctx, nop{}, nil); close(done) }()
				for !w.Synced() || w.Len() < apps {
					time.Sleep(10 * time.Millisecond)
				}
				heap := heapInUse() - base
				b.ReportMetric(float64(heap)/(1<<20), "cache-MiB")
				b.ReportMetric(float64(heap)/apps, "bytes/app")
				b.ReportMetric(float64(rssBytes())/(1<<20), "process-RSS-MiB")
				cancel()
				<-done
				runtime.KeepAlive(client)
			}
		})
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rssBytes returns the process's resident set size from /proc/self/status (0 where unavailable).
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
