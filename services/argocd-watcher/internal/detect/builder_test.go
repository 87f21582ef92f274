package detect

import (
	"maps"
	"time"
)

// Builders of literal Application objects, shaped as the API server returns them (JSON decoded into
// map[string]any, with int64 numbers as client-go gives them). Each call returns a fresh object.

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

const (
	gitops   = "https://github.com/acme/gitops.git"
	revA     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	revB     = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	revC     = "cccccccccccccccccccccccccccccccccccccccc"
	appSHA1  = "1111111111111111111111111111111111111111"
	appSHA2  = "2222222222222222222222222222222222222222"
	appSHA3  = "3333333333333333333333333333333333333333"
	digest64 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

type obj = map[string]any

type appBuilder struct{ o obj }

// newApp is a single-source Application named name with UID uid, created at created, deploying
// components/<path> of the GitOps repo to a remote cluster.
func newApp(name, uid string, created time.Time, path string) *appBuilder {
	return &appBuilder{o: obj{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": obj{
			"name": name, "namespace": "argocd", "uid": uid,
			"creationTimestamp": ts(created),
			"managedFields":     []any{obj{"manager": "argocd-server", "operation": "Update"}},
		},
		"spec": obj{
			"project":     "shop",
			"source":      obj{"repoURL": gitops, "path": path, "targetRevision": "main"},
			"destination": obj{"server": "https://api.prd-1.example.com:6443", "namespace": "shop"},
		},
		"status": obj{},
	}}
}

func (b *appBuilder) build() obj { return b.o }

func (b *appBuilder) section(k string) obj { return child(b.o, k) }

// child returns the nested object o[k] of a test-built object.
func child(o obj, k string) obj {
	m, ok := o[k].(obj)
	if !ok {
		panic("test object has no " + k)
	}
	return m
}

func (b *appBuilder) label(k, v string) *appBuilder {
	m := b.section("metadata")
	l, _ := m["labels"].(obj)
	if l == nil {
		l = obj{}
		m["labels"] = l
	}
	l[k] = v
	return b
}

func (b *appBuilder) annotation(k, v string) *appBuilder {
	m := b.section("metadata")
	a, _ := m["annotations"].(obj)
	if a == nil {
		a = obj{}
		m["annotations"] = a
	}
	a[k] = v
	return b
}

func (b *appBuilder) destination(server, name string) *appBuilder {
	d := obj{"namespace": "shop"}
	if server != "" {
		d["server"] = server
	}
	if name != "" {
		d["name"] = name
	}
	b.section("spec")["destination"] = d
	return b
}

func (b *appBuilder) sources(srcs ...obj) *appBuilder {
	spec := b.section("spec")
	delete(spec, "source")
	l := make([]any, len(srcs))
	for i, s := range srcs {
		l[i] = maps.Clone(s)
	}
	spec["sources"] = l
	return b
}

func (b *appBuilder) history(entries ...obj) *appBuilder {
	l := make([]any, len(entries))
	for i, e := range entries {
		l[i] = e
	}
	b.section("status")["history"] = l
	return b
}

func (b *appBuilder) health(status string, changed time.Time) *appBuilder {
	h := obj{"status": status}
	if !changed.IsZero() {
		h["lastTransitionTime"] = ts(changed)
	}
	b.section("status")["health"] = h
	return b
}

func (b *appBuilder) images(refs ...string) *appBuilder {
	l := make([]any, len(refs))
	for i, r := range refs {
		l[i] = r
	}
	b.section("status")["summary"] = obj{"images": l}
	return b
}

func (b *appBuilder) sync(status, revision string) *appBuilder {
	b.section("status")["sync"] = obj{"status": status, "revision": revision}
	return b
}

// op sets status.operationState. finished zero means still running.
func (b *appBuilder) op(phase, message, revision string, started, finished time.Time, retry int64) *appBuilder {
	o := obj{
		"phase": phase, "message": message, "startedAt": ts(started),
		"operation": obj{
			"sync":        obj{"revision": revision},
			"initiatedBy": obj{"automated": true},
		},
		"syncResult": obj{"revision": revision, "resources": []any{obj{"kind": "Deployment", "name": "x", "status": "Synced"}}},
	}
	if !finished.IsZero() {
		o["finishedAt"] = ts(finished)
	}
	if retry > 0 {
		o["retryCount"] = retry
	}
	b.section("status")["operationState"] = o
	return b
}

func (b *appBuilder) set(path []string, v any) *appBuilder {
	cur := b.o
	for _, k := range path[:len(path)-1] {
		next, ok := cur[k].(obj)
		if !ok {
			next = obj{}
			cur[k] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = v
	return b
}

// entry is a single-source history entry deployed d after t0, started 30s earlier.
func entry(id int64, rev, path string, deployed time.Time) obj {
	return obj{
		"id": id, "revision": rev,
		"deployStartedAt": ts(deployed.Add(-30 * time.Second)), "deployedAt": ts(deployed),
		"source":      obj{"repoURL": gitops, "path": path, "targetRevision": "main"},
		"initiatedBy": obj{"automated": true},
	}
}

func withHelmParam(e obj, name, value string) obj {
	src := maps.Clone(child(e, "source"))
	src["helm"] = obj{"parameters": []any{obj{"name": name, "value": value}}, "values": "replicas: 3\n"}
	e["source"] = src
	return e
}

// Images of the live pods in the rolling-update scenarios: the checkout image (tag = application
// commit), a worker image of another repository and an injected sidecar without a commit.
func checkoutImage(sha string) string { return "quay.io/acme/checkout:" + sha }

func workerImage(sha string) string { return "registry.local:5000/acme/worker:build-" + sha }

const (
	istio122 = "docker.io/istio/proxyv2:1.22.0"
	istio123 = "docker.io/istio/proxyv2:1.23.0"
)
