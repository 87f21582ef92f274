package dora

import (
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
)

// Scopes of windowed values, the values of the scope label: one component (in one team), a team
// (every component it deployed), the organisation (everything). Each is per environment.
const (
	ScopeComponent    = "component"
	ScopeTeam         = "team"
	ScopeOrganization = "organization"
)

// WindowLabel names a window: "7d" for whole days, else "36h".
func WindowLabel(w time.Duration) string {
	if w%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", w/(24*time.Hour))
	}
	return fmt.Sprintf("%dh", w/time.Hour)
}

// windowStats are the exact values of one group of series over one window (now-W, now].
type windowStats struct {
	deployments int
	// failed and rework break the change failures and rework deployments down by exact detection and
	// reason; withCommits of expectCommits (deployment.expectsCommits) carried commit data.
	failed                     [nDetections]int
	rework                     [3]int
	expectCommits, withCommits int
	days                       map[int32]struct{}
	// calDays are the UTC days with a deployment among the window's calendar days firstDay…lastDay:
	// DevLake's range, the dates of now, now − 1 d, … that lie after now − W (⌈W ÷ 1 d⌉ whole dates,
	// at most 400). The deployment-day measures count these, so a day is in or out as a whole.
	calDays           dayBits
	firstDay, lastDay int32
	leadTimes         []int64 // ms, per commit whose first deployment is in the window
	recoveries        []int64 // ms, per recovered change failure deployed in the window
}

// devlakeMaxDays is the longest range DevLake's deployment-frequency SQL builds (days now − 0 … now − 399).
const devlakeMaxDays = 400

// dayBits is a set of the days of one window's range, bit i for firstDay + i.
type dayBits [(devlakeMaxDays + 63) / 64]uint64

func (b *dayBits) set(i int32)      { b[i/64] |= 1 << (i % 64) }
func (b *dayBits) has(i int32) bool { return b[i/64]&(1<<(i%64)) != 0 }

func (b *dayBits) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

func (w *windowStats) merge(o *windowStats) {
	w.deployments += o.deployments
	for i, n := range o.failed {
		w.failed[i] += n
	}
	for i, n := range o.rework {
		w.rework[i] += n
	}
	w.expectCommits += o.expectCommits
	w.withCommits += o.withCommits
	for d := range o.days {
		w.days[d] = struct{}{}
	}
	for i, b := range o.calDays {
		w.calDays[i] |= b
	}
	w.firstDay, w.lastDay = o.firstDay, o.lastDay // the same for every series of a window
	w.leadTimes = append(w.leadTimes, o.leadTimes...)
	w.recoveries = append(w.recoveries, o.recoveries...)
}

// windowValues are what is exported for one group and window.
type windowValues struct {
	deployments       float64
	perDay            float64
	days              float64
	daysPerWeek       float64
	leadTime, changeF float64
	recovery, rework  float64
	recoveryMean      float64
	hasLT, hasRatio   bool
	hasRecovery       bool
	hasDaysPerWeek    bool
	// failedBy and reworkBy are the ratios' numerators by detection and reason; commitData the share
	// of the deployments expected to carry commit data that did (hasCommitData: there is one).
	failedBy      [nDetections]int
	reworkBy      [3]int
	commitData    float64
	hasCommitData bool
	// calDays, firstDay and lastDay are the window's calendar days, for DevLake's measure.
	calDays           dayBits
	firstDay, lastDay int32
}

func (w *windowStats) values(window time.Duration) windowValues {
	daysInWindow := window.Hours() / 24
	v := windowValues{
		deployments: float64(w.deployments),
		perDay:      float64(w.deployments) / daysInWindow,
		days:        float64(len(w.days)),
		calDays:     w.calDays,
		firstDay:    w.firstDay,
		lastDay:     w.lastDay,
		failedBy:    w.failed,
		reworkBy:    w.rework,
	}
	// Days per week only over whole weeks' worth of calendar days: never more than 7, and no
	// partial week extrapolated to seven days.
	if n := w.lastDay - w.firstDay + 1; n >= 7 {
		v.hasDaysPerWeek, v.daysPerWeek = true, float64(w.calDays.count())/(float64(n)/7)
	}
	if len(w.leadTimes) > 0 {
		v.hasLT, v.leadTime = true, median(w.leadTimes)
	}
	if len(w.recoveries) > 0 {
		var sum int64
		for _, r := range w.recoveries {
			sum += r
		}
		v.recoveryMean = float64(sum) / float64(len(w.recoveries)) / 1e3
		v.hasRecovery, v.recovery = true, median(w.recoveries)
	}
	if w.deployments > 0 {
		v.hasRatio = true
		v.changeF = float64(sum(w.failed[:])) / float64(w.deployments)
		v.rework = float64(sum(w.rework[:])) / float64(w.deployments)
	}
	if w.expectCommits > 0 {
		v.hasCommitData, v.commitData = true, float64(w.withCommits)/float64(w.expectCommits)
	}
	return v
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// devlakeDeploymentDays is MeasureDevLakeDeploymentDays, as DevLake's DORA dashboards compute it
// (v1.0, dora_report 2023): each calendar week (Monday–Sunday, MySQL WEEKDAY) and each calendar
// month that has a day in the range is a row counting the range's deployment days in it, so a week
// without deployments counts 0 and a partial week at the range's start or end counts only its own
// days. Each is reduced with devlakeMedian. The value is week median + month median ÷ 32.
func (v windowValues) devlakeDeploymentDays() float64 {
	var weeks, months []int
	lastWeek, lastMonth := int32(0), -1
	for d := v.firstDay; d <= v.lastDay; d++ {
		week := d - (d+3)%7 // the Monday on or before d; 1970-01-01 (day 0) was a Thursday
		y, m, _ := time.Unix(int64(d)*24*3600, 0).UTC().Date()
		if month := y*12 + int(m); d == v.firstDay || month != lastMonth {
			months, lastMonth = append(months, 0), month
		}
		if d == v.firstDay || week != lastWeek {
			weeks, lastWeek = append(weeks, 0), week
		}
		if v.calDays.has(d - v.firstDay) {
			weeks[len(weeks)-1]++
			months[len(months)-1]++
		}
	}
	return float64(devlakeMedian(weeks)) + float64(min(devlakeMedian(months), 31))/32
}

// devlakeMedian is the median of DevLake's SQL, max(x) where percent_rank() over (order by x) <= 0.5:
// the largest value whose rank (ties share the lowest) minus one, over the rows minus one, is at
// most a half (0 for one row). For an even count that is the lower middle value.
func devlakeMedian(xs []int) int {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	med := s[0]
	for i := 1; i < len(s) && 2*i <= len(s)-1; i++ {
		if s[i] != s[i-1] {
			med = s[i] // its first row is row i: percent_rank i/(n−1) ≤ 0.5
		}
	}
	return med
}

// median returns the median of millisecond values in seconds: the middle value, or the mean of the
// two middle values. It sorts ms in place.
func median(ms []int64) float64 {
	slices.Sort(ms)
	n := len(ms)
	if n%2 == 1 {
		return float64(ms[n/2]) / 1e3
	}
	return float64(ms[n/2-1]+ms[n/2]) / 2e3
}

// seriesWindows computes the windowed stats of one series for every window, in one pass over its
// qualifying deployments and commits. windows are sorted ascending.
func seriesWindows(ser *series, now int64, windows []time.Duration) []*windowStats {
	out := make([]*windowStats, len(windows))
	today := utcDay(now)
	for i, w := range windows {
		n := min(int32((w+24*time.Hour-1)/(24*time.Hour)), devlakeMaxDays) // ⌈W ÷ 1 d⌉ dates
		out[i] = &windowStats{days: map[int32]struct{}{}, firstDay: today - n + 1, lastDay: today}
	}
	// each calls fn for every window (now-W, now] that contains at.
	each := func(at int64, fn func(*windowStats)) {
		if at > now {
			return
		}
		age := now - at
		for i, w := range windows {
			if age < w.Milliseconds() {
				fn(out[i])
			}
		}
	}
	for _, d := range ser.deps {
		each(d.finished, func(w *windowStats) {
			w.deployments++
			w.days[utcDay(d.finished)] = struct{}{}
			if d.cur.failed {
				w.failed[d.cur.detection]++
			}
			if d.cur.rework != reworkNone {
				w.rework[d.cur.rework]++
			}
			if d.expectsCommits() {
				w.expectCommits++
				if d.hasCommits {
					w.withCommits++
				}
			}
			if d.cur.recovered {
				w.recoveries = append(w.recoveries, d.cur.recovery.ms)
			}
		})
		if d.finished <= now {
			for _, w := range out {
				if day := utcDay(d.finished); day >= w.firstDay {
					w.calDays.set(day - w.firstDay)
				}
			}
		}
	}
	for _, c := range ser.commits {
		each(c.s.at, func(w *windowStats) { w.leadTimes = append(w.leadTimes, c.s.ms) })
	}
	return out
}

// groupKey identifies a group of series for one scope.
type groupKey struct {
	scope, component, team string
	env                    events.Environment
}
