package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

// benchApps returns 5,000 decoded Applications with n history entries each.
func benchApps(b *testing.B, n int) []argocd.Application {
	b.Helper()
	apps := make([]argocd.Application, 5000)
	for i := range apps {
		var es []obj
		for id := range n {
			es = append(es, entry(int64(id), fmt.Sprintf("%040x", id%3), prodPath, at(time.Duration(id)*time.Minute)))
		}
		raw := newApp(fmt.Sprintf("app-%d-prd-1", i), fmt.Sprintf("uid-%d", i), t0.Add(-48*time.Hour), prodPath).
			history(es...).images(fmt.Sprintf("quay.io/acme/checkout:%040d", i)).health("Healthy", at(0)).build()
		argocd.StripObject(raw)
		app, err := argocd.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		apps[i] = app
	}
	return apps
}

// BenchmarkDetect measures detection throughput over 5,000 Applications with 10 history entries:
// backfill (first sight, every entry emitted), steady (nothing new: the common reconcile), and
// new-entry (one new deployment per application).
func BenchmarkDetect(b *testing.B) {
	cfg := testConfig()
	backfill := *cfg
	backfill.Backfill = true
	apps10 := benchApps(b, 10)
	apps11 := benchApps(b, 11)
	states := make([]*State, len(apps10))
	for i, a := range apps10 {
		r := backfill.Detect(nil, a, at(time.Hour))
		states[i] = &r.State
	}
	for _, tc := range []struct {
		name string
		cfg  *Config
		apps []argocd.Application
		prev func(i int) *State
		want int // events per app
	}{
		{"backfill", &backfill, apps10, func(int) *State { return nil }, -1},
		{"steady", cfg, apps10, func(i int) *State { return states[i] }, 0},
		{"new-entry", cfg, apps11, func(i int) *State { return states[i] }, 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for i, a := range tc.apps {
					r := tc.cfg.Detect(tc.prev(i), a, at(time.Hour))
					if tc.want >= 0 && len(r.Events) != tc.want {
						b.Fatalf("%d events, want %d", len(r.Events), tc.want)
					}
					n++
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "apps/s")
		})
	}
}

// FuzzParseImage: no reference crashes the parser; a parsed reference has a repository, a tag that
// follows the tag grammar, an algo:hex digest, and parses to the same parts again when rebuilt.
func FuzzParseImage(f *testing.F) {
	for _, s := range []string{
		"registry.example.com/org/app:" + appSHA1, "registry.local:5000/org/app", "registry.local:5000/org/app:1.4.2",
		"registry.example.com/org/app@" + digest64, "registry.example.com/org/app:" + appSHA1 + "@" + digest64,
		"nginx", "localhost/app:v1", "localhost:5000/a/b/c:tag", "docker.io/library/nginx:latest", "UPPER/case",
		"quay.io/acme/checkout:sha-1234abc", "a:b:c", "@sha256:", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		img, err := ParseImage(ref)
		if err != nil {
			return
		}
		if img.Repository == "" || img.Ref != ref {
			t.Fatalf("ParseImage(%q) = %+v", ref, img)
		}
		if img.Tag != "" && (len(img.Tag) > 128 || strings.ContainsAny(img.Tag, ":/@")) {
			t.Fatalf("tag %q of %q breaks the tag grammar", img.Tag, ref)
		}
		if img.Digest != "" && !strings.Contains(img.Digest, ":") {
			t.Fatalf("digest %q of %q is not algo:hex", img.Digest, ref)
		}
		rebuilt := img.Repository
		if img.Tag != "" {
			rebuilt += ":" + img.Tag
		}
		if img.Digest != "" {
			rebuilt += "@" + img.Digest
		}
		again, err := ParseImage(rebuilt)
		if err != nil {
			t.Fatalf("rebuilt %q of %q does not parse: %v", rebuilt, ref, err)
		}
		again.Ref = img.Ref
		if again != img {
			t.Fatalf("%q → %+v, rebuilt %q → %+v", ref, img, rebuilt, again)
		}
	})
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		ref  string
		want events.Image
	}{
		{"registry.example.com/org/app:" + appSHA1, events.Image{Repository: "registry.example.com/org/app", Tag: appSHA1}},
		{"registry.local:5000/org/app", events.Image{Repository: "registry.local:5000/org/app"}},
		{"registry.local:5000/org/app:1.4.2", events.Image{Repository: "registry.local:5000/org/app", Tag: "1.4.2"}},
		{"registry.example.com/org/app@" + digest64, events.Image{Repository: "registry.example.com/org/app", Digest: digest64}},
		{"registry.example.com/org/app:" + appSHA1 + "@" + digest64, events.Image{Repository: "registry.example.com/org/app", Tag: appSHA1, Digest: digest64}},
		{"nginx", events.Image{Repository: "docker.io/library/nginx"}},
		{"acme/app:v2", events.Image{Repository: "docker.io/acme/app", Tag: "v2"}},
		{"localhost/app:v1", events.Image{Repository: "localhost/app", Tag: "v1"}},
	} {
		got, err := ParseImage(tc.ref)
		tc.want.Ref = tc.ref
		if err != nil || got != tc.want {
			t.Errorf("ParseImage(%q) = %+v, %v; want %+v", tc.ref, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "org/UPPER", "a b", "app@sha256:short", ":tag"} {
		if _, err := ParseImage(bad); err == nil {
			t.Errorf("ParseImage(%q) succeeded", bad)
		}
	}
}
