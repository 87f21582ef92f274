package dora

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Buckets are the classic histogram upper bounds in seconds, on the DORA survey's band edges (1 h,
// 1 d, 1 w, 30 d, 180 d) plus finer edges below and between them: the share of samples below a band
// edge is exact (bucket ÷ count), and so is "median below edge" (that share ≥ 0.5).
var Buckets = []float64{300, 900, 3600, 14400, 86400, 259200, 604800, 1209600, 2592000, 7776000, 15552000}

// NativeSchema is the native-histogram schema of every DORA histogram: bucket boundaries grow by
// 2^(2^-3) ≈ 1.09, what client_golang picks for NativeHistogramBucketFactor 1.1.
const NativeSchema = 3

// nativeZeroThreshold is client_golang's default zero threshold (2^-128): a zero duration lands in
// the zero bucket.
const nativeZeroThreshold = prometheus.DefNativeHistogramZeroThreshold

// nativeBounds3 are client_golang's schema-3 bucket bounds of the mantissa (nativeHistogramBounds[3]),
// copied so bucket keys match a live prometheus.Histogram bit for bit.
var nativeBounds3 = []float64{
	0.5, 0.5452538663326288, 0.5946035575013605, 0.6484197773255048,
	0.7071067811865475, 0.7711054127039704, 0.8408964152537144, 0.9170040432046711,
}

// nativeKey returns the schema-3 bucket key of a positive value, as client_golang computes it.
func nativeKey(v float64) int {
	frac, exp := math.Frexp(v)
	return sort.SearchFloat64s(nativeBounds3, frac) + (exp-1)*len(nativeBounds3)
}

// sample is one observation of a duration histogram: a value in milliseconds, when it happened (the
// deployment or resolution time) and the exemplar labels that point at its evidence.
type sample struct {
	ms int64
	at int64 // Unix ms
	// id (the deployment ID, or the incident key) and commit become exemplar labels; commit may be
	// empty.
	id     string
	commit string
}

func (s sample) seconds() float64 { return float64(s.ms) / 1e3 }

// hist is a duration histogram kept as exact integer counts, so that adding and removing samples in
// any order gives the same result: values are whole milliseconds and the sum is an integer.
type hist struct {
	count   uint64
	sumMS   int64
	classic []uint64 // per bucket (not cumulative); the last entry is the +Inf overflow
	native  map[int]int64
	zero    uint64
	// exemplars hold, per classic bucket, the newest sample by time (then by id).
	exemplars []*sample
	// idLabel names the exemplar label of sample.id: deployment_id or incident.
	idLabel string
}

func newHist(idLabel string) *hist {
	return &hist{classic: make([]uint64, len(Buckets)+1), native: map[int]int64{},
		exemplars: make([]*sample, len(Buckets)+1), idLabel: idLabel}
}

func (h *hist) add(s sample) {
	v := s.seconds()
	i := sort.SearchFloat64s(Buckets, v)
	h.count++
	h.sumMS += s.ms
	h.classic[i]++
	if v > nativeZeroThreshold {
		h.native[nativeKey(v)]++
	} else {
		h.zero++
	}
	if s.id == "" && s.commit == "" {
		return // nothing to point at
	}
	if e := h.exemplars[i]; e == nil || s.at > e.at || (s.at == e.at && s.id+s.commit > e.id+e.commit) {
		c := s
		h.exemplars[i] = &c
	}
}

// remove takes back a sample added before. An exemplar pointing at it is dropped; the bucket gets a
// new one with its next observation.
func (h *hist) remove(s sample) {
	v := s.seconds()
	i := sort.SearchFloat64s(Buckets, v)
	h.count--
	h.sumMS -= s.ms
	h.classic[i]--
	if v > nativeZeroThreshold {
		k := nativeKey(v)
		if h.native[k]--; h.native[k] == 0 {
			delete(h.native, k)
		}
	} else {
		h.zero--
	}
	if e := h.exemplars[i]; e != nil && *e == s {
		h.exemplars[i] = nil
	}
}

// metric returns the histogram as one const metric carrying both the classic buckets and the native
// (sparse) buckets, with the exemplars attached. Text exposition shows the classic buckets;
// protobuf exposition carries both, and Prometheus with native histograms enabled ingests the native.
func (h *hist) metric(desc *prometheus.Desc, labelValues ...string) prometheus.Metric {
	cum := make(map[float64]uint64, len(Buckets))
	var n uint64
	for i, b := range Buckets {
		n += h.classic[i]
		cum[b] = n
	}
	sum := float64(h.sumMS) / 1e3
	classic := prometheus.MustNewConstHistogram(desc, h.count, sum, cum, labelValues...)
	native := prometheus.MustNewConstNativeHistogram(desc, h.count, sum, h.native, nil, h.zero, NativeSchema,
		nativeZeroThreshold, time.Time{}, labelValues...)
	m := prometheus.Metric(dualHistogram{classic: classic, native: native})
	var ex []prometheus.Exemplar
	for _, e := range h.exemplars {
		if e == nil {
			continue
		}
		l := prometheus.Labels{}
		if e.id != "" {
			l[h.idLabel] = e.id
		}
		if e.commit != "" {
			l["commit"] = e.commit
		}
		ex = append(ex, prometheus.Exemplar{Value: e.seconds(), Labels: l, Timestamp: time.UnixMilli(e.at)})
	}
	if len(ex) == 0 {
		return m
	}
	withEx, err := prometheus.NewMetricWithExemplars(m, ex...)
	if err != nil {
		// Exemplar labels are two short IDs, well under the 128-character limit; an error here
		// means an ID broke that assumption. The histogram is still worth exporting.
		return m
	}
	return sortedExemplarLabels{withEx}
}

// sortedExemplarLabels sorts exemplar labels by name: NewMetricWithExemplars takes them from a map,
// and a scrape must not depend on map order.
type sortedExemplarLabels struct{ prometheus.Metric }

func (s sortedExemplarLabels) Write(pb *dto.Metric) error {
	if err := s.Metric.Write(pb); err != nil {
		return err
	}
	sortLabels := func(e *dto.Exemplar) {
		if e != nil {
			slices.SortFunc(e.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
	}
	for _, b := range pb.Histogram.GetBucket() {
		sortLabels(b.Exemplar)
	}
	for _, e := range pb.Histogram.GetExemplars() {
		sortLabels(e)
	}
	return nil
}

// dualHistogram writes a classic and a native const histogram of the same observations as one
// metric, the way a live prometheus.Histogram with both bucket kinds writes itself.
type dualHistogram struct {
	classic, native prometheus.Metric
}

func (d dualHistogram) Desc() *prometheus.Desc { return d.classic.Desc() }

func (d dualHistogram) Write(pb *dto.Metric) error {
	if err := d.classic.Write(pb); err != nil {
		return err
	}
	var n dto.Metric
	if err := d.native.Write(&n); err != nil {
		return err
	}
	h, nh := pb.Histogram, n.Histogram
	h.Schema, h.ZeroThreshold, h.ZeroCount = nh.Schema, nh.ZeroThreshold, nh.ZeroCount
	h.PositiveSpan, h.PositiveDelta = nh.PositiveSpan, nh.PositiveDelta
	return nil
}
