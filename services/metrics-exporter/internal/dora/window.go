package dora

import (
	"fmt"
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
	deployments, failed, rework int
	days                        map[int32]struct{}
	leadTimes                   []int64 // ms, per commit whose first deployment is in the window
	recoveries                  []int64 // ms, per recovered change failure deployed in the window
}

func (w *windowStats) merge(o *windowStats) {
	w.deployments += o.deployments
	w.failed += o.failed
	w.rework += o.rework
	for d := range o.days {
		w.days[d] = struct{}{}
	}
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
	hasLT, hasRatio   bool
	hasRecovery       bool
}

func (w *windowStats) values(window time.Duration) windowValues {
	daysInWindow := window.Hours() / 24
	v := windowValues{
		deployments: float64(w.deployments),
		perDay:      float64(w.deployments) / daysInWindow,
		days:        float64(len(w.days)),
		daysPerWeek: float64(len(w.days)) / (daysInWindow / 7),
	}
	if len(w.leadTimes) > 0 {
		v.hasLT, v.leadTime = true, median(w.leadTimes)
	}
	if len(w.recoveries) > 0 {
		v.hasRecovery, v.recovery = true, median(w.recoveries)
	}
	if w.deployments > 0 {
		v.hasRatio = true
		v.changeF = float64(w.failed) / float64(w.deployments)
		v.rework = float64(w.rework) / float64(w.deployments)
	}
	return v
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
	for i := range out {
		out[i] = &windowStats{days: map[int32]struct{}{}}
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
				w.failed++
			}
			if d.cur.rework != reworkNone {
				w.rework++
			}
			if d.cur.recovered {
				w.recoveries = append(w.recoveries, d.cur.recovery.ms)
			}
		})
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
