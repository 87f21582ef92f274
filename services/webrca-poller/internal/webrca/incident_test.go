package webrca

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pages", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodePageValid(t *testing.T) {
	tests := []struct {
		name string
		file string
		want Page
	}{
		{
			name: "reference example",
			file: "example.json",
			want: Page{Page: 1, Size: 1, Total: 1, HasTotal: true, Items: []Incident{{
				ID: "0b9d6f52-7a1e-4c3b-9e21-5d8f4a6c2e17", IncidentID: "ITN-2026-00317",
				Summary:     "Checkout latency above SLO in eu-west-1",
				Description: "p99 latency for checkout-api exceeded 2 s after the 14:04 rollout.",
				Status:      "investigating", Severity: "2", IncidentType: "internal", Products: []string{"Konflux"},
				CreatedAt:     mustTime(t, "2026-03-10T15:20:00.412733Z"),
				UpdatedAt:     mustTime(t, "2026-03-10T15:31:12.098114Z"),
				LastChangedAt: mustTime(t, "2026-03-10T15:31:12.097950Z"),
				LastOpenedAt:  mustTime(t, "2026-03-10T15:20:00.412701Z"),
			}}},
		},
		{
			name: "unknown fields, nulls, missing fields, zero dates, numeric severity, offsets",
			file: "lenient.json",
			want: Page{Page: 2, Size: 3, Total: 5, HasTotal: true, Items: []Incident{
				{ID: "11111111-1111-1111-1111-111111111111", IncidentID: "ITN-2026-00001", Severity: "3",
					CreatedAt: mustTime(t, "2026-01-02T01:04:05Z")},
				{ID: "22222222-2222-2222-2222-222222222222", IncidentID: "ITN-2026-00002", Status: "Resolved",
					Products: []string{"quay", " Konflux "}, CreatedAt: mustTime(t, "2026-01-03T00:00:00Z"),
					ResolvedAt: mustTime(t, "2026-01-03T01:30:00.123456789Z"), ReopenCounter: 2, Invalid: true, Private: true},
				{ID: "33333333-3333-3333-3333-333333333333", IncidentID: "ITN-2026-00003", Status: "pending_customer",
					CreatedAt: mustTime(t, "2026-01-04T00:00:00Z")},
			}},
		},
		{
			name: "empty listing without items",
			file: "empty.json",
			want: Page{Page: 1, HasTotal: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodePage(read(t, tt.file))
			if err != nil {
				t.Fatalf("DecodePage: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			for _, inc := range got.Items {
				for _, ts := range []time.Time{inc.CreatedAt, inc.ResolvedAt, inc.LastChangedAt} {
					if !ts.IsZero() && ts.Location() != time.UTC {
						t.Errorf("%s: time %v not in UTC", inc.ID, ts)
					}
				}
			}
		})
	}
}

func TestDecodePageInvalid(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    error // ErrMalformed or ErrSchema
		mention string
	}{
		{"HTML error page", "invalid-html.txt", ErrMalformed, "not a JSON object"},
		{"truncated JSON", "invalid-truncated.txt", ErrMalformed, "unexpected end of JSON input"},
		{"trailing garbage", "invalid-trailing.txt", ErrMalformed, "after top-level value"},
		{"status is an object", "invalid-status-object.json", ErrSchema, "status"},
		{"items is an object", "invalid-items-object.json", ErrSchema, "items"},
		{"date is a number", "invalid-date-number.json", ErrSchema, "date-time is not a string"},
		{"date is not RFC 3339", "invalid-date-format.json", ErrSchema, "not RFC 3339"},
		{"an incident without id", "invalid-missing-id.json", ErrSchema, "items[1]: incident \"ITN-2026-00008\": id is missing"},
		{"an incident without created_at", "invalid-missing-created.json", ErrSchema, "created_at is missing"},
		{"an error object", "invalid-kind-error.json", ErrSchema, `kind is "Error"`},
		{"a non-empty listing without items", "invalid-no-items.json", ErrSchema, "no items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodePage(read(t, tt.file))
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodePage error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if diff := cmp.Diff(Page{}, got); diff != "" {
				t.Errorf("a failed decode returned a page (-want +got)\n%s", diff)
			}
		})
	}
}

// FuzzDecodePage checks that any body either decodes into a page whose incidents all have what
// doraflow relies on, or fails with ErrMalformed or ErrSchema and no page; never a panic.
func FuzzDecodePage(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "pages", "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/pages (%v)", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodePage(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSchema) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrSchema", err)
			}
			if p.Items != nil || p.Total != 0 {
				t.Fatalf("failed decode returned data: %+v", p)
			}
			if !utf8.ValidString(err.Error()) && utf8.Valid(body) {
				t.Fatalf("error message is not valid UTF-8: %q", err)
			}
			return
		}
		if p.Total < 0 || p.Page < 0 || p.Size < 0 {
			t.Fatalf("negative counters: %+v", p)
		}
		for _, inc := range p.Items {
			if inc.ID == "" || inc.IncidentID == "" || inc.CreatedAt.IsZero() {
				t.Fatalf("incident without id, incident_id or created_at: %+v", inc)
			}
			if len(inc.ID) > MaxIDLen || len(inc.IncidentID) > MaxIDLen {
				t.Fatalf("overlong id accepted: %q", inc.ID)
			}
			for _, ts := range []time.Time{inc.CreatedAt, inc.UpdatedAt, inc.LastChangedAt, inc.ResolvedAt, inc.ClosedAt, inc.LastOpenedAt, inc.DeletedAt} {
				if !ts.IsZero() && (ts.Year() <= 1 || ts.Year() > 9999 || ts.Location() != time.UTC) {
					t.Fatalf("date %v neither unset nor a UTC time", ts)
				}
			}
		}
	})
}
