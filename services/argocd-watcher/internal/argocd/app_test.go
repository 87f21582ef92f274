package argocd

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

var update = flag.Bool("update", false, "rewrite golden files")

func loadApp(t testing.TB, name string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "apps", name))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestDecodeGolden decodes each fixture as the informer's cache holds it (after Strip) and compares
// the typed view with testdata/apps/<name>.golden.json.
func TestDecodeGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "apps", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.json") {
			continue
		}
		n++
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			u := loadApp(t, name)
			StripObject(u.Object)
			app, err := Decode(u.Object)
			out := map[string]any{"application": app}
			if err != nil {
				out = map[string]any{"error": err.Error()}
			}
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
	if n < 3 {
		t.Fatalf("only %d fixtures", n)
	}
}

// sub returns the nested object o[k], which the test built.
func sub(o map[string]any, k string) map[string]any {
	m, ok := o[k].(map[string]any)
	if !ok {
		panic("test object has no " + k)
	}
	return m
}

func TestDecodeMalformed(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"kind":     "Application",
			"metadata": map[string]any{"name": "a", "namespace": "argocd", "uid": "u-1"},
			"status":   map[string]any{"history": []any{map[string]any{"id": int64(1), "deployedAt": "2025-03-01T10:00:00Z"}}},
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(o map[string]any)
		want   Reason
	}{
		{"nil object", func(o map[string]any) { clear(o) }, ReasonNotApplication},
		{"other kind", func(o map[string]any) { o["kind"] = "Deployment" }, ReasonNotApplication},
		{"no uid", func(o map[string]any) { delete(sub(o, "metadata"), "uid") }, ReasonMissingUID},
		{"uid with spaces", func(o map[string]any) { sub(o, "metadata")["uid"] = "a b" }, ReasonBadUID},
		{"no name", func(o map[string]any) { delete(sub(o, "metadata"), "name") }, ReasonMissingName},
		{"metadata not an object", func(o map[string]any) { o["metadata"] = "x" }, ReasonWrongType},
		{"status a list", func(o map[string]any) { o["status"] = []any{} }, ReasonWrongType},
		{"history id a string", func(o map[string]any) {
			sub(o, "status")["history"] = []any{map[string]any{"id": "1"}}
		}, ReasonWrongType},
		{"history id fractional", func(o map[string]any) {
			sub(o, "status")["history"] = []any{map[string]any{"id": 1.5}}
		}, ReasonWrongType},
		{"history entry not an object", func(o map[string]any) {
			sub(o, "status")["history"] = []any{"x"}
		}, ReasonWrongType},
		{"bad operation time", func(o map[string]any) {
			sub(o, "status")["operationState"] = map[string]any{"phase": "Failed", "startedAt": "soon"}
		}, ReasonBadTime},
		{"revisions not strings", func(o map[string]any) {
			sub(o, "status")["history"] = []any{map[string]any{"id": int64(1), "revisions": []any{int64(1)}}}
		}, ReasonWrongType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.mutate(o)
			if len(o) == 0 {
				o = nil
			}
			_, err := Decode(o)
			var me *MalformedError
			if !errors.As(err, &me) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want a MalformedError", err)
			}
			if me.Reason != tc.want {
				t.Errorf("reason = %s (%s), want %s", me.Reason, me.Detail, tc.want)
			}
		})
	}
}

// TestDecodeNumbers: ids decoded by client-go (int64) and by encoding/json (float64) are the same.
func TestDecodeNumbers(t *testing.T) {
	var o map[string]any
	if err := json.Unmarshal([]byte(`{"metadata":{"name":"a","uid":"u"},"status":{"history":[{"id":3,"deployedAt":"2025-03-01T10:00:00Z"}]}}`), &o); err != nil {
		t.Fatal(err)
	}
	app, err := Decode(o)
	if err != nil || len(app.History) != 1 || app.History[0].ID != 3 {
		t.Fatalf("Decode = %+v, %v", app.History, err)
	}
}

// FuzzDecode: no input crashes the decoder or the transform; the transform is idempotent; a decoded
// application has an identity and an ascending history.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "apps", "*.json"))
	for _, p := range files {
		if strings.HasSuffix(p, ".golden.json") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"metadata":{"uid":"u","name":"n"},"status":{"history":[{"id":1},{"id":0}]}}`))
	f.Add([]byte(`{"spec":{"sources":[null,{"helm":{"values":1}}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var o map[string]any
		if err := utiljson.Unmarshal(b, &o); err != nil {
			return
		}
		u := &unstructured.Unstructured{Object: o}
		if _, err := Strip(u); err != nil {
			t.Fatal(err)
		}
		once, err1 := json.Marshal(o)
		StripObject(o)
		twice, err2 := json.Marshal(o)
		if err1 == nil && err2 == nil && string(once) != string(twice) {
			t.Fatalf("Strip is not idempotent:\n%s\n%s", once, twice)
		}
		app, err := Decode(o)
		if err != nil {
			var me *MalformedError
			if !errors.As(err, &me) || me.Reason == "" {
				t.Fatalf("error %v is not a MalformedError with a reason", err)
			}
			return
		}
		if app.UID == "" || app.Name == "" {
			t.Fatalf("decoded without identity: %+v", app)
		}
		for i := 1; i < len(app.History); i++ {
			if app.History[i].ID <= app.History[i-1].ID {
				t.Fatalf("history not strictly ascending: %+v", app.History)
			}
		}
	})
}
