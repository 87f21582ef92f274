package argocd

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

func TestStrip(t *testing.T) {
	u := loadApp(t, "single-source-helm.json")
	before, _ := json.Marshal(u.Object)
	beforeApp, err := Decode(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Strip(u)
	if err != nil || out != u {
		t.Fatalf("Strip = %v, %v; want the same object", out, err)
	}
	for _, p := range strippedPaths {
		if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, p...); found {
			t.Errorf("%v still present", p)
		}
	}
	if a := u.GetAnnotations(); a["notified.notifications.argoproj.io"] == "" {
		t.Errorf("other annotations were dropped: %v", a)
	}
	for _, p := range [][]string{
		{"spec", "source", "helm"},
		{"status", "sync", "comparedTo", "source", "helm"},
		{"status", "operationState", "syncResult", "source", "helm"},
	} {
		h, _, _ := unstructured.NestedMap(u.Object, p...)
		if _, ok := h["values"]; ok || h["valuesHash"] == nil {
			t.Errorf("%v = %v, want values replaced by valuesHash", p, h)
		}
	}
	after, _ := json.Marshal(u.Object)
	if len(after) >= len(before) {
		t.Errorf("stripped object is %d bytes, original %d", len(after), len(before))
	}
	// What detection reads is unchanged, except that overrides are now fingerprinted by hash.
	afterApp, err := Decode(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	delete(beforeApp.Annotations, LastAppliedAnnotation)
	ignoreOverrides := cmp.Transformer("", func(s Source) Source { s.Overrides = ""; return s })
	if diff := cmp.Diff(beforeApp, afterApp, ignoreOverrides); diff != "" {
		t.Errorf("Strip changed the typed view (-before +after):\n%s", diff)
	}
	if afterApp.History[0].Source.Overrides == afterApp.History[1].Source.Overrides {
		t.Error("different helm values hash the same")
	}
	// Idempotent.
	StripObject(u.Object)
	again, _ := json.Marshal(u.Object)
	if string(again) != string(after) {
		t.Error("Strip is not idempotent")
	}
}

func TestStripLeavesTombstonesAlone(t *testing.T) {
	ts := cache.DeletedFinalStateUnknown{Key: "argocd/a", Obj: &unstructured.Unstructured{}}
	out, err := Strip(ts)
	if err != nil || out != ts {
		t.Fatalf("Strip(tombstone) = %v, %v", out, err)
	}
	if out, err := Strip((*unstructured.Unstructured)(nil)); err != nil || out != (*unstructured.Unstructured)(nil) {
		t.Fatalf("Strip(nil) = %v, %v", out, err)
	}
}
