// Package argocd watches Argo CD Applications (argoproj.io/v1alpha1) through a client-go dynamic
// shared informer and decodes them into a small typed view. It never imports the argo-cd module
// (docs/adr/0005-dynamic-informer-and-typed-view.md): that would pin every module of the workspace to client-go v0.31 and
// triple the binary.
//
// Event handlers only enqueue namespace/name keys into a rate-limited workqueue; workers read the
// latest object from the informer's cache and hand it to a Processor, which compares it with
// persisted state. Relists, resyncs and restarts are therefore harmless.
package argocd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Kind is the Application kind.
const Kind = "Application"

// GVR is the Application resource.
var GVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// Processor handles one Application key. app is the cached object (already stripped by the cache
// transform), or nil when the Application no longer exists. A non-nil error requeues the key with
// rate-limited backoff; a positive duration asks to see the key again after it (a health window).
// Process must not modify app: it is shared with the cache.
type Processor interface {
	Process(ctx context.Context, key string, app *unstructured.Unstructured) (time.Duration, error)
}

// Observer receives the watcher's telemetry. Its methods must be cheap and safe for concurrent use.
type Observer interface {
	// InformerEvent counts an informer notification: add, update or delete.
	InformerEvent(kind string)
	// WatchError reports a failed list or watch; the reflector retries it with backoff.
	WatchError(err error)
}

// Options configure a Watcher.
type Options struct {
	Client dynamic.Interface
	// Namespaces to watch; empty watches all namespaces with one informer.
	Namespaces []string
	// LabelSelector restricts the watch, such as "doraflow.io/watch=true".
	LabelSelector string
	// Resync re-delivers every cached Application this often, so health windows are re-evaluated
	// without a change; zero disables it.
	Resync time.Duration
	// Workers process keys in parallel (one key is never processed by two workers at once).
	Workers int
	// Observer receives telemetry; nil discards it.
	Observer Observer
	// MaxBackoff bounds the requeue delay of a key whose processing keeps failing (default 5m).
	MaxBackoff time.Duration
}

// Watcher is a set of Application informers (one per namespace, or one for all) and the work queue.
type Watcher struct {
	opts      Options
	informers []cache.SharedIndexInformer
	queue     workqueue.TypedRateLimitingInterface[string]
	synced    atomic.Bool

	mu        sync.Mutex
	lastWatch error // last list/watch error, cleared by the next successful probe
}

// New builds the informers and sets their cache transform; nothing runs until Run.
func New(opts Options) (*Watcher, error) {
	if opts.Client == nil {
		return nil, errors.New("argocd watcher: no Kubernetes client")
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	w := &Watcher{
		opts: opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, opts.MaxBackoff),
			workqueue.TypedRateLimitingQueueConfig[string]{}),
	}
	namespaces := opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var tweak dynamicinformer.TweakListOptionsFunc
	if opts.LabelSelector != "" {
		tweak = func(o *metav1.ListOptions) { o.LabelSelector = opts.LabelSelector }
	}
	for _, ns := range namespaces {
		inf := dynamicinformer.NewFilteredDynamicInformer(opts.Client, GVR, ns, opts.Resync,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, tweak).Informer()
		// The transform must be set before the informer starts; it runs before objects are stored.
		if err := inf.SetTransform(Strip); err != nil {
			return nil, fmt.Errorf("set cache transform: %w", err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(w.watchError); err != nil {
			return nil, fmt.Errorf("set watch error handler: %w", err)
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.enqueue("add", obj) },
			UpdateFunc: func(_, obj any) { w.enqueue("update", obj) },
			DeleteFunc: func(obj any) { w.enqueue("delete", obj) },
		}); err != nil {
			return nil, fmt.Errorf("add event handler: %w", err)
		}
		w.informers = append(w.informers, inf)
	}
	return w, nil
}

func (w *Watcher) enqueue(kind string, obj any) {
	if w.opts.Observer != nil {
		w.opts.Observer.InformerEvent(kind)
	}
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return // not an object with metadata; nothing to look up later
	}
	w.queue.Add(key)
}

// Requeue asks for the Application with key namespace/name to be processed again.
func (w *Watcher) Requeue(key string) { w.queue.Add(key) }

func (w *Watcher) watchError(ctx context.Context, r *cache.Reflector, err error) {
	w.mu.Lock()
	w.lastWatch = err
	w.mu.Unlock()
	if w.opts.Observer != nil {
		w.opts.Observer.WatchError(err)
	}
	// Keep client-go's own handling (it logs and classifies expired resource versions).
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// Run starts the informers, waits for their caches, calls afterSync (for example to drop state of
// Applications deleted while the watcher was down), then processes keys with the configured number of
// workers until ctx is cancelled. It returns nil on cancellation.
func (w *Watcher) Run(ctx context.Context, p Processor, afterSync func(context.Context) error) error {
	defer w.queue.ShutDown()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range w.informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	syncs := make([]cache.InformerSynced, len(w.informers))
	for i, inf := range w.informers {
		syncs[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return nil // cancelled before the caches synced
	}
	w.synced.Store(true)
	if afterSync != nil {
		if err := afterSync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for range w.opts.Workers {
		wg.Go(func() {
			for w.next(ctx, p) {
			}
		})
	}
	<-ctx.Done()
	return nil
}

// next processes one key; it returns false when the queue is shut down.
func (w *Watcher) next(ctx context.Context, p Processor) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	app, err := w.Get(key)
	if err != nil {
		w.queue.Forget(key) // a key we cannot parse will not parse later
		return true
	}
	after, err := p.Process(ctx, key, app)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			w.queue.AddRateLimited(key)
		}
	case after > 0:
		w.queue.Forget(key)
		w.queue.AddAfter(key, after)
	default:
		w.queue.Forget(key)
	}
	return true
}

// Get returns the cached Application with the namespace/name key, or nil when it does not exist.
func (w *Watcher) Get(key string) (*unstructured.Unstructured, error) {
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, err
	}
	for i, inf := range w.informers {
		if len(w.opts.Namespaces) > 0 && w.opts.Namespaces[i] != ns {
			continue
		}
		obj, exists, err := inf.GetIndexer().GetByKey(key)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, nil
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil, fmt.Errorf("cached %s is %T", key, obj)
		}
		return u, nil
	}
	return nil, nil
}

// List returns every cached Application, sorted by key.
func (w *Watcher) List() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, inf := range w.informers {
		for _, obj := range inf.GetStore().List() {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				out = append(out, u)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out
}

// Len returns the number of cached Applications.
func (w *Watcher) Len() int {
	n := 0
	for _, inf := range w.informers {
		n += len(inf.GetStore().ListKeys())
	}
	return n
}

// QueueDepth returns the number of keys waiting to be processed.
func (w *Watcher) QueueDepth() int { return w.queue.Len() }

// Synced reports whether every informer's cache has synced.
func (w *Watcher) Synced() bool { return w.synced.Load() }

// Ready is the readiness check: the caches have synced and the API server answers a minimal list of
// Applications (the same permission the watch needs). While the API server is unreachable the
// reflectors retry with backoff and Ready reports the error.
func (w *Watcher) Ready(ctx context.Context) error {
	if !w.Synced() {
		return errors.New("Application cache not synced yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := Probe(ctx, w.opts.Client, w.opts.Namespaces); err != nil {
		return err
	}
	w.mu.Lock()
	w.lastWatch = nil
	w.mu.Unlock()
	return nil
}

// LastWatchError returns the last list/watch error since the API server last answered a probe.
func (w *Watcher) LastWatchError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastWatch
}

// Probe lists at most one Application in the first watched namespace (or in all) to check that the
// API server is reachable, serves the Application CRD, and lets us list it. Errors say which.
func Probe(ctx context.Context, client dynamic.Interface, namespaces []string) error {
	ns := metav1.NamespaceAll
	if len(namespaces) > 0 {
		ns = namespaces[0]
	}
	_, err := client.Resource(GVR).Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1})
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("list %s: the API server does not serve it; is Argo CD's Application CRD installed? %w", GVR.GroupResource(), err)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("list %s in %q: not allowed; grant get/list/watch on applications (see README RBAC): %w", GVR.GroupResource(), ns, err)
	default:
		return fmt.Errorf("list %s: Kubernetes API unreachable: %w", GVR.GroupResource(), err)
	}
}
