package dora

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestHistMatchesLiveHistogram feeds the same durations to hist and to a live client_golang
// histogram with the same classic buckets and NativeHistogramBucketFactor 1.1: both must write the
// same classic and native buckets, so dashboards and histogram_quantile see no difference between
// the exporter's const histograms and ordinary instrumentation.
func TestHistMatchesLiveHistogram(t *testing.T) {
	values := []int64{0, 1, 999, 1000, 299_000, 300_000, 300_001, 3_600_000, 43_200_000, 86_400_000, 86_400_001,
		604_800_000, 1_234_567_890, 15_552_000_000, 99_999_999_999}
	desc := prometheus.NewDesc("x_seconds", "x", nil, nil)
	h := newHist(exemplarDeployment)
	live := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "x", Buckets: Buckets,
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 1000})
	for _, ms := range values {
		h.add(sample{ms: ms})
		live.Observe(float64(ms) / 1e3)
	}
	// An added and removed sample leaves no trace.
	h.add(sample{ms: 7_777_777, id: "dep-x"})
	h.remove(sample{ms: 7_777_777, id: "dep-x"})

	var got, want dto.Metric
	if err := h.metric(desc).Write(&got); err != nil {
		t.Fatal(err)
	}
	if err := live.Write(&want); err != nil {
		t.Fatal(err)
	}
	want.Histogram.CreatedTimestamp = nil
	if diff := cmp.Diff(want.Histogram, got.Histogram, protocmp.Transform()); diff != "" {
		t.Errorf("const histogram differs from a live one (-live +const):\n%s", diff)
	}
}

// TestExemplarsPointAtEvidence checks that lead-time buckets carry the deployment ID and commit of
// their newest sample, timestamped with the deployment, and that native exemplars are present too.
func TestExemplarsPointAtEvidence(t *testing.T) {
	h := newHist(exemplarDeployment)
	h.add(sample{ms: 3_600_000, at: 1_000, id: "dep-old", commit: "aaaa"})
	h.add(sample{ms: 3_000_000, at: 2_000, id: "dep-new", commit: "bbbb"})
	var m dto.Metric
	if err := h.metric(prometheus.NewDesc("x_seconds", "x", nil, nil)).Write(&m); err != nil {
		t.Fatal(err)
	}
	var b3600 *dto.Bucket
	for _, b := range m.Histogram.Bucket {
		if b.GetUpperBound() == 3600 {
			b3600 = b
		}
	}
	e := b3600.GetExemplar()
	if e == nil {
		t.Fatal("le=3600 bucket has no exemplar")
	}
	labels := map[string]string{}
	for _, l := range e.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if diff := cmp.Diff(map[string]string{"deployment_id": "dep-new", "commit": "bbbb"}, labels); diff != "" {
		t.Errorf("exemplar labels (-want +got):\n%s", diff)
	}
	if e.GetValue() != 3000 || e.GetTimestamp().AsTime().UnixMilli() != 2_000 {
		t.Errorf("exemplar value %v at %v, want 3000 at 2s", e.GetValue(), e.GetTimestamp().AsTime())
	}
	if len(m.Histogram.Exemplars) != 1 {
		t.Errorf("%d native exemplars, want 1", len(m.Histogram.Exemplars))
	}
}
