package dora

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Guard serves a collector's metrics with two promises on top (README "Counter semantics"):
//
//   - nothing of the collector is served until Serve is called (the exporter calls it once its
//     startup replay caught up), so a scrape never reads a partial rebuild as a counter reset;
//   - no counter or histogram series is ever served below what this Guard served before:
//     elementwise over the value, buckets (classic cumulative and native), count and sum. Floors
//     (the high-water marks a previous process served, see Marks and SetFloors) extend that across
//     restarts: a series whose history expired from the stream keeps its total, and new events
//     count on top of it.
//
// The exact values stay in the collector's gauges; doraflow_metrics_exporter_series_held says how
// many counter and histogram series the Guard currently serves above their exact value.
type Guard struct {
	c prometheus.Collector

	mu      sync.Mutex
	serving bool
	floors  map[string]*Mark // from a previous process, applied at the first serving collect
	offset  map[string]*Mark // what a floor adds to the exact value
	high    map[string]*Mark // what was served, by series key
	descs   map[string]*prometheus.Desc
	// guards says, per descriptor, whether its metrics are counters or histograms (learned from
	// the first metric of each): gauges pass through without being written twice.
	guards map[*prometheus.Desc]bool
	names  map[*prometheus.Desc]string
}

var descSeriesHeld = prometheus.NewDesc("doraflow_metrics_exporter_series_held",
	"Counter and histogram series served above their exact value (the never-decrease guard and restart floors hold them); the exact values are in the dora_window_* gauges.",
	nil, nil)

// NewGuard wraps c.
func NewGuard(c prometheus.Collector) *Guard {
	return &Guard{c: c, floors: map[string]*Mark{}, offset: map[string]*Mark{}, high: map[string]*Mark{},
		descs: map[string]*prometheus.Desc{}, guards: map[*prometheus.Desc]bool{},
		names: map[*prometheus.Desc]string{}}
}

// Serve starts serving the collector's metrics.
func (g *Guard) Serve() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.serving = true
}

// Serving reports whether Serve was called.
func (g *Guard) Serving() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.serving
}

// Mark is the served value of one counter or histogram series: the unit of floors.
type Mark struct {
	Name   string      `json:"name"`
	Labels [][2]string `json:"labels,omitempty"`
	// Histogram: Count, Sum, Buckets (cumulative, by Bounds), Zero and Native (schema-Schema
	// buckets by key). Counter: Value.
	Histogram     bool             `json:"histogram,omitempty"`
	Value         float64          `json:"value,omitempty"`
	Count         uint64           `json:"count,omitempty"`
	Sum           float64          `json:"sum,omitempty"`
	Bounds        []float64        `json:"bounds,omitempty"`
	Buckets       []uint64         `json:"buckets,omitempty"`
	Schema        int32            `json:"schema,omitempty"`
	ZeroThreshold float64          `json:"zero_threshold,omitempty"`
	Zero          uint64           `json:"zero,omitempty"`
	Native        map[int32]uint64 `json:"native,omitempty"`
}

func (m *Mark) key() string {
	var b strings.Builder
	b.WriteString(m.Name)
	for _, l := range m.Labels {
		b.WriteString("\xff" + l[0] + "\xfe" + l[1])
	}
	return b.String()
}

// Marks returns the high-water marks served so far, floors included, sorted by series.
func (g *Guard) Marks() []Mark {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Mark, 0, len(g.high)+len(g.floors))
	for _, m := range g.high {
		out = append(out, *m)
	}
	for k, m := range g.floors { // not applied yet
		if _, ok := g.high[k]; !ok {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b Mark) int { return cmp.Compare(a.key(), b.key()) })
	return out
}

// SetFloors sets the marks a previous process served (merged by maximum with any set before).
// They apply from the first collect after Serve.
func (g *Guard) SetFloors(marks []Mark) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range marks {
		m := m
		k := m.key()
		if f, ok := g.floors[k]; ok {
			m = maxMark(*f, m)
		}
		g.floors[k] = &m
	}
}

// Describe implements prometheus.Collector.
func (g *Guard) Describe(ch chan<- *prometheus.Desc) {
	g.c.Describe(ch)
	ch <- descSeriesHeld
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Collect implements prometheus.Collector.
func (g *Guard) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.serving {
		ch <- prometheus.MustNewConstMetric(descSeriesHeld, prometheus.GaugeValue, 0)
		return
	}
	if len(g.descs) == 0 {
		dc := make(chan *prometheus.Desc)
		go func() { g.c.Describe(dc); close(dc) }()
		for d := range dc {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				g.descs[m[1]] = d
			}
		}
	}
	mc := make(chan prometheus.Metric)
	go func() { g.c.Collect(mc); close(mc) }()
	exact := map[string]*Mark{}
	var order []string
	metrics := map[string]prometheus.Metric{}
	for m := range mc {
		if guard, known := g.guards[m.Desc()]; known && !guard {
			ch <- m
			continue
		}
		pb := &dto.Metric{}
		if err := m.Write(pb); err != nil || (pb.Counter == nil && pb.Histogram == nil) {
			if err == nil {
				g.guards[m.Desc()] = false
			}
			ch <- m
			continue
		}
		g.guards[m.Desc()] = true
		mk := markOf(g.name(m.Desc()), pb)
		k := mk.key()
		exact[k], metrics[k] = mk, m
		order = append(order, k)
	}
	g.applyFloors(exact)
	held := 0
	for _, k := range order {
		e := exact[k]
		o, hasOffset := g.offset[k]
		if h, ok := g.high[k]; !hasOffset && (!ok || covers(*e, *h)) {
			g.high[k] = e // the exact value is at or above everything served: the common case
			ch <- metrics[k]
			continue
		}
		served := *e
		if hasOffset {
			served = addMark(served, *o)
		}
		if h, ok := g.high[k]; ok {
			served = maxMark(served, *h)
		}
		served = valid(served)
		g.high[k] = &served
		if !equalMark(served, *e) {
			held++
			ch <- guarded{metrics[k], &served}
			continue
		}
		ch <- metrics[k]
	}
	// Series the collector no longer has (their history expired): served from their marks.
	keys := make([]string, 0, len(g.high))
	for k := range g.high {
		if _, ok := exact[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		h := g.high[k]
		d, ok := g.descs[h.Name]
		if !ok {
			continue
		}
		held++
		ch <- guarded{constDesc{d}, h}
	}
	ch <- prometheus.MustNewConstMetric(descSeriesHeld, prometheus.GaugeValue, float64(held))
}

// StickyLabels names, per family, the label fixed at first observation (the detection or rework
// reason a deployment had when it first became a failure or rework). Which series of a group (its
// other labels) holds a count can differ between processes; the group's total cannot.
var StickyLabels = map[string]string{
	"dora_change_failures_total":              "detection",
	"dora_failed_deployment_recovery_seconds": "detection",
	"dora_rework_deployments_total":           "reason",
}

// group is a mark's series without its sticky label: the unit floors compare totals over.
func (m *Mark) group() string {
	l, ok := StickyLabels[m.Name]
	if !ok {
		return m.key()
	}
	g := *m
	g.Labels = slices.DeleteFunc(slices.Clone(m.Labels), func(p [2]string) bool { return p[0] == l })
	return g.key()
}

func (m *Mark) total() float64 {
	if m.Histogram {
		return float64(m.Count)
	}
	return m.Value
}

// applyFloors turns the floors into offsets at the first serving collect: a floor adds what it
// exceeds the exact value by, so new events count on top of it. Floors apply only to groups whose
// exact total is below the floors' (history was lost): where the whole history is still there, a
// label fixed differently by the previous process must not count a failure twice.
func (g *Guard) applyFloors(exact map[string]*Mark) {
	floorTotal, exactTotal := map[string]float64{}, map[string]float64{}
	for _, f := range g.floors {
		floorTotal[f.group()] += f.total()
	}
	for _, e := range exact {
		exactTotal[e.group()] += e.total()
	}
	for k, f := range g.floors {
		if gr := f.group(); exactTotal[gr] >= floorTotal[gr] {
			continue
		}
		o := *f
		if e, ok := exact[k]; ok {
			o = subMark(*f, *e)
		}
		g.offset[k] = &o
		h := *f
		g.high[k] = &h
	}
	clear(g.floors)
}

// name returns a descriptor's fully-qualified name.
func (g *Guard) name(d *prometheus.Desc) string {
	if n, ok := g.names[d]; ok {
		return n
	}
	var n string
	if m := fqName.FindStringSubmatch(d.String()); m != nil {
		n = m[1]
	}
	g.names[d] = n
	return n
}

func markOf(name string, pb *dto.Metric) *Mark {
	m := &Mark{Name: name}
	for _, l := range pb.GetLabel() {
		m.Labels = append(m.Labels, [2]string{l.GetName(), l.GetValue()})
	}
	if pb.Counter != nil {
		m.Value = pb.Counter.GetValue()
		return m
	}
	h := pb.Histogram
	m.Histogram = true
	m.Count, m.Sum = h.GetSampleCount(), h.GetSampleSum()
	for _, b := range h.GetBucket() {
		m.Bounds = append(m.Bounds, b.GetUpperBound())
		m.Buckets = append(m.Buckets, b.GetCumulativeCount())
	}
	if len(h.GetPositiveSpan()) > 0 || h.GetZeroCount() > 0 || h.Schema != nil {
		m.Schema, m.ZeroThreshold, m.Zero = h.GetSchema(), h.GetZeroThreshold(), h.GetZeroCount()
		m.Native = map[int32]uint64{}
		var key int32
		var count int64
		i := 0
		for _, s := range h.GetPositiveSpan() {
			key += s.GetOffset()
			for range s.GetLength() {
				count += h.GetPositiveDelta()[i]
				i++
				if count != 0 {
					m.Native[key] = uint64(count) //nolint:gosec // bucket counts are not negative
				}
				key++
			}
		}
	}
	return m
}

// combine applies fn elementwise to two marks of the same series; b's buckets count only when its
// bounds match a's.
func combine(a, b Mark, fn func(x, y uint64) uint64, fnf func(x, y float64) float64) Mark {
	out := a
	out.Value = fnf(a.Value, b.Value)
	out.Count = fn(a.Count, b.Count)
	out.Sum = fnf(a.Sum, b.Sum)
	if slices.Equal(a.Bounds, b.Bounds) {
		out.Buckets = make([]uint64, len(a.Buckets))
		for i := range a.Buckets {
			out.Buckets[i] = fn(a.Buckets[i], b.Buckets[i])
		}
	} else if len(a.Bounds) == 0 {
		out.Bounds, out.Buckets = b.Bounds, slices.Clone(b.Buckets)
	}
	if a.Native != nil || b.Native != nil {
		out.Schema, out.ZeroThreshold = cmp.Or(a.Schema, b.Schema), cmp.Or(a.ZeroThreshold, b.ZeroThreshold)
		out.Zero = fn(a.Zero, b.Zero)
		out.Native = map[int32]uint64{}
		for k, v := range a.Native {
			out.Native[k] = fn(v, b.Native[k])
		}
		for k, v := range b.Native {
			if _, ok := a.Native[k]; !ok {
				out.Native[k] = fn(0, v)
			}
		}
		for k, v := range out.Native {
			if v == 0 {
				delete(out.Native, k)
			}
		}
	}
	return out
}

func maxMark(a, b Mark) Mark {
	return combine(a, b, func(x, y uint64) uint64 { return max(x, y) }, func(x, y float64) float64 { return max(x, y) })
}
func addMark(a, b Mark) Mark {
	return combine(a, b, func(x, y uint64) uint64 { return x + y }, func(x, y float64) float64 { return x + y })
}

func subMark(a, b Mark) Mark {
	return combine(a, b, func(x, y uint64) uint64 {
		if x > y {
			return x - y
		}
		return 0
	}, func(x, y float64) float64 { return max(0, x-y) })
}

// valid makes a served histogram consistent: cumulative buckets never decrease with the bound, and
// the count covers every bucket (classic and native).
func valid(m Mark) Mark {
	if !m.Histogram {
		return m
	}
	m.Buckets = slices.Clone(m.Buckets)
	for i := 1; i < len(m.Buckets); i++ {
		m.Buckets[i] = max(m.Buckets[i], m.Buckets[i-1])
	}
	if n := len(m.Buckets); n > 0 {
		m.Count = max(m.Count, m.Buckets[n-1])
	}
	native := m.Zero
	for _, v := range m.Native {
		native += v
	}
	m.Count = max(m.Count, native)
	return m
}

// covers reports whether a is at or above b elementwise.
func covers(a, b Mark) bool {
	if a.Value < b.Value || a.Count < b.Count || a.Sum < b.Sum || a.Zero < b.Zero || !slices.Equal(a.Bounds, b.Bounds) {
		return false
	}
	for i := range a.Buckets {
		if a.Buckets[i] < b.Buckets[i] {
			return false
		}
	}
	for k, v := range b.Native {
		if a.Native[k] < v {
			return false
		}
	}
	return true
}

func equalMark(a, b Mark) bool {
	return a.Value == b.Value && a.Count == b.Count && a.Sum == b.Sum && slices.Equal(a.Buckets, b.Buckets) &&
		a.Zero == b.Zero && mapsEqual(a.Native, b.Native)
}

func mapsEqual(a, b map[int32]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// guarded is a metric served at a mark instead of its exact value; exemplars are kept.
type guarded struct {
	prometheus.Metric
	m *Mark
}

func (g guarded) Write(pb *dto.Metric) error {
	if err := g.Metric.Write(pb); err != nil {
		return err
	}
	m := g.m
	if pb.Label == nil {
		for _, l := range m.Labels {
			pb.Label = append(pb.Label, &dto.LabelPair{Name: &l[0], Value: &l[1]})
		}
	}
	if !m.Histogram {
		v := m.Value
		pb.Counter = &dto.Counter{Value: &v}
		return nil
	}
	h := pb.Histogram
	if h == nil {
		h = &dto.Histogram{}
		pb.Histogram = h
	}
	count, sum := m.Count, m.Sum
	h.SampleCount, h.SampleSum = &count, &sum
	old := h.Bucket
	h.Bucket = make([]*dto.Bucket, len(m.Bounds))
	for i := range m.Bounds {
		ub, c := m.Bounds[i], m.Buckets[i]
		h.Bucket[i] = &dto.Bucket{UpperBound: &ub, CumulativeCount: &c}
		if i < len(old) && old[i].GetUpperBound() == ub {
			h.Bucket[i].Exemplar = old[i].Exemplar
		}
	}
	if m.Native != nil {
		schema, zt, zero := m.Schema, m.ZeroThreshold, m.Zero
		h.Schema, h.ZeroThreshold, h.ZeroCount = &schema, &zt, &zero
		h.PositiveSpan, h.PositiveDelta = nativeSpans(m.Native)
	}
	return nil
}

// nativeSpans encodes absolute native bucket counts as spans and deltas.
func nativeSpans(counts map[int32]uint64) ([]*dto.BucketSpan, []int64) {
	keys := make([]int32, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var spans []*dto.BucketSpan
	var deltas []int64
	var prev int64
	next := int32(0)
	for i, k := range keys {
		if i == 0 || k != next {
			off := k - next
			if i == 0 {
				off = k
			}
			spans = append(spans, &dto.BucketSpan{Offset: &off, Length: new(uint32)})
		}
		*spans[len(spans)-1].Length++
		c := int64(counts[k]) //nolint:gosec // counts fit
		deltas = append(deltas, c-prev)
		prev = c
		next = k + 1
	}
	return spans, deltas
}

// constDesc is a metric of a series the collector no longer has; guarded writes its mark.
type constDesc struct{ d *prometheus.Desc }

func (c constDesc) Desc() *prometheus.Desc     { return c.d }
func (c constDesc) Write(pb *dto.Metric) error { return nil }
