package argocd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// LastAppliedAnnotation is kubectl's copy of the whole applied object: large and never read.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// strippedPaths are removed from every cached Application (argocd.md §7).
var strippedPaths = [][]string{
	{"metadata", "managedFields"},
	{"metadata", "annotations", LastAppliedAnnotation},
	{"status", "resources"},
	{"status", "operationState", "syncResult", "resources"},
}

// sourceHolders are the places an Application keeps application sources whose inline Helm values
// can be large: each is a map holding "source" and/or "sources".
var sourceHolders = [][]string{
	{"spec"},
	{"status", "sync", "comparedTo"},
	{"status", "operationState", "syncResult"},
	{"status", "operationState", "operation", "sync"},
}

// Strip is the informer's cache transform: it removes the heavy parts of an Application that
// detection never reads (managed fields, the last-applied annotation, per-resource status and sync
// results) and replaces inline Helm values by their hash (helm.valuesHash), so overrides still count
// in a deployment's fingerprint at a fraction of the memory. It is pure and idempotent; objects that
// are not *unstructured.Unstructured (tombstones) pass through untouched.
func Strip(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u == nil {
		return obj, nil
	}
	StripObject(u.Object)
	return u, nil
}

// StripObject applies Strip to an object's content map in place.
func StripObject(o map[string]any) {
	for _, p := range strippedPaths {
		unstructured.RemoveNestedField(o, p...)
	}
	if a, ok := nestedMap(o, "metadata", "annotations"); ok && len(a) == 0 {
		unstructured.RemoveNestedField(o, "metadata", "annotations")
	}
	for _, p := range sourceHolders {
		if m, ok := nestedMap(o, p...); ok {
			hashSources(m)
		}
	}
	if h, ok := nestedSlice(o, "status", "history"); ok {
		for _, e := range h {
			if m, ok := e.(map[string]any); ok {
				hashSources(m)
			}
		}
	}
}

func hashSources(holder map[string]any) {
	if s, ok := holder["source"].(map[string]any); ok {
		hashHelmValues(s)
	}
	if l, ok := holder["sources"].([]any); ok {
		for _, s := range l {
			if m, ok := s.(map[string]any); ok {
				hashHelmValues(m)
			}
		}
	}
}

// hashHelmValues replaces helm.values and helm.valuesObject with helm.valuesHash.
func hashHelmValues(source map[string]any) {
	helm, ok := source["helm"].(map[string]any)
	if !ok {
		return
	}
	values, hasValues := helm["values"]
	object, hasObject := helm["valuesObject"]
	if !hasValues && !hasObject {
		return
	}
	b, err := json.Marshal([]any{values, object})
	if err != nil {
		return // cannot happen for decoded JSON; keep the values rather than lose them
	}
	sum := sha256.Sum256(b)
	delete(helm, "values")
	delete(helm, "valuesObject")
	helm["valuesHash"] = hex.EncodeToString(sum[:12])
}

func nestedMap(o map[string]any, path ...string) (map[string]any, bool) {
	cur := o
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

func nestedSlice(o map[string]any, path ...string) ([]any, bool) {
	m, ok := nestedMap(o, path[:len(path)-1]...)
	if !ok {
		return nil, false
	}
	s, ok := m[path[len(path)-1]].([]any)
	return s, ok
}
