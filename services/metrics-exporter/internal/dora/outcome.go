package dora

import (
	"math"

	"github.com/doraflow/doraflow/pkg/events"
)

// Exemplar label names.
const (
	exemplarDeployment = "deployment_id"
	exemplarIncident   = "incident"
)

// reevaluate recomputes what a deployment contributes and moves the aggregates by the difference.
func (s *State) reevaluate(d *deployment) {
	n := s.evaluate(d)
	stick(d, &n, s.sticky)
	if n == d.cur {
		return
	}
	s.apply(d, d.cur, -1)
	s.apply(d, n, +1)
	d.cur = n
}

// stick sets what the counters count: the detection and rework reason the deployment had when it
// first became a change failure and first was rework. Its recovery sample is counted once, under
// that detection, with its exact value (a later, earlier recovery moves it between buckets; the
// served histogram never goes down: Guard). The exact detection and reason feed the windowed gauges.
// Until sticky (while rebuilding) the counters follow the exact values.
func stick(d *deployment, o *outcome, sticky bool) {
	o.countDet, o.countRework = o.detection, o.rework
	o.countRec, o.countSample = o.failed && o.recovered, o.recovery
	if !sticky {
		return
	}
	if o.failed {
		if d.firstDet < 0 {
			d.firstDet = o.detection
		}
		o.countDet = d.firstDet
	}
	if o.rework != reworkNone {
		if d.firstRework == reworkNone {
			d.firstRework = o.rework
		}
		o.countRework = d.firstRework
	}
}

// evaluate derives a deployment's outcome from its facts. Definitions (README "Definitions"):
//
//   - change failure: a qualifying deployment with at least one failure signal or linked incident;
//     its detection is the one detected first (ties: the strongest, incident > rollback > revert >
//     degraded > sync_failed > manual);
//   - recovery: the earliest of a recovery signal's recovered_at, a rollback or revert signal's
//     detected_at (the undoing deployment finished), and the resolution of its linked incidents
//     (the last one, once all are resolved); recovery time is measured from the deployment's finish;
//   - rework: a revert (named by a revert signal as the reverting deployment, flagged revert by the
//     enricher, or its commit is behind the previous one), whatever its kind; else a rollback; else
//     a production deploy while an incident naming its component was open.
func (s *State) evaluate(d *deployment) outcome {
	o := outcome{rework: reworkNone}
	var sigs [nDetections]sigFact
	if d.sig != nil {
		sigs = *d.sig
	}
	var anySignal bool
	for _, f := range sigs {
		anySignal = anySignal || f.present
	}
	switch {
	case !anySignal:
	case !d.known:
		o.sigState = signalsUnknownDeployment
	case !d.qualifies:
		o.sigState = signalsNotAChange
	default:
		o.sigState = signalsJoined
	}
	if !d.qualifies {
		return o
	}
	first := int64(math.MaxInt64)
	consider := func(det int, at int64) {
		o.signals |= 1 << det
		if at < first || (at == first && det < o.detection) {
			first, o.detection = at, det
		}
	}
	end := int64(math.MaxInt64)
	for i, f := range sigs {
		if !f.present {
			continue
		}
		consider(i, f.detected)
		if f.recovered != 0 {
			end = min(end, f.recovered)
		}
		if i == detRollback || i == detRevert {
			end = min(end, f.detected)
		}
	}
	if len(d.incidents) > 0 {
		all, last := true, int64(0)
		for inc := range d.incidents {
			consider(detIncident, inc.created)
			if !inc.isResolved {
				all = false
			}
			last = max(last, inc.resolved)
		}
		if all {
			end = min(end, last)
		}
	}
	o.failed = o.signals != 0
	if o.failed {
		if end != math.MaxInt64 {
			o.recovered = true
			o.recovery = sample{ms: max(0, end-d.finished), at: end, id: d.id}
		} else {
			o.unrecovered = true
		}
	}
	switch {
	case d.revertSignal || d.behind || d.revert:
		o.rework = reworkRevert
	case d.kind == events.KindRollback:
		o.rework = reworkRollback
	case d.env == events.EnvironmentProduction && s.openAt(d.component, d.finished):
		o.rework = reworkHotfix
	}
	return o
}

// apply adds (sign +1) or removes (sign -1) an outcome's contribution.
func (s *State) apply(d *deployment, o outcome, sign int) {
	s.q.signals[o.sigState] = addU(s.q.signals[o.sigState], sign)
	ser := d.ser
	if ser == nil || !d.qualifies {
		return
	}
	for i := range nDetections {
		if o.signals&(1<<i) != 0 {
			ser.signals[i] = addU(ser.signals[i], sign)
		}
	}
	if o.failed {
		ser.failures[o.countDet] = addU(ser.failures[o.countDet], sign)
	}
	if o.countRec {
		h := ser.fdrt[o.countDet]
		if h == nil {
			h = newHist(exemplarDeployment)
			ser.fdrt[o.countDet] = h
		}
		if sign > 0 {
			h.add(o.countSample)
		} else {
			h.remove(o.countSample)
		}
	}
	if o.unrecovered {
		ser.unrecovered += sign
	}
	if o.countRework != reworkNone {
		ser.rework[o.countRework] = addU(ser.rework[o.countRework], sign)
	}
}

func addU(v uint64, sign int) uint64 {
	if sign < 0 {
		return v - 1
	}
	return v + 1
}
