// Package dora holds the exporter's DORA state: a pure function of the event history (enriched
// deployments, enriched incidents and change-failure signals), kept as exact integer aggregates and
// exposed by a prometheus.Collector that builds const metrics at scrape time.
//
// The state does not depend on the order events arrive in: every derived fact (is this deployment a
// change failure, when did it recover, is it rework, which commit's first deployment is which) is
// recomputed from the facts it depends on whenever one of them arrives, and the aggregates are
// adjusted by the difference. A restart that replays the streams, a second replica, or a replay that
// interleaves the three subjects differently ends with the same numbers.
package dora

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/doraflow/doraflow/pkg/events"
)

// Options configure a State.
type Options struct {
	// Windows are the trailing windows of the exact windowed values (dora_window_*).
	Windows []time.Duration
	// Benchmark names the benchmark set performance levels are rated against.
	Benchmark string
	// Now is the clock windows end at; time.Now when nil. Tests and reports pin it.
	Now func() time.Time
	// IncidentLinkLookback bounds the exporter's incident attribution: an incident whose last
	// candidate deployment finished longer than this before it was created is linked to nothing
	// (link reason too_old). Zero: no limit.
	IncidentLinkLookback time.Duration
	// Rebuilding: the state is being rebuilt from history, whose subjects arrive interleaved in no
	// fixed order, so the counters' detection and rework labels follow the exact values until
	// Rebuilt; from then on they stay at what they were when first observed.
	Rebuilding bool
}

// Outcome says what happened to an event given to the state.
type Outcome int

// Outcomes.
const (
	// Applied: the event is new and now part of the state.
	Applied Outcome = iota
	// Duplicate: an event with this ID was applied before; nothing changed.
	Duplicate
)

// ErrInvalid wraps the validation error of an event the state cannot use.
var ErrInvalid = errors.New("invalid event")

// detections, strongest first (events.Detection order): the index is used for arrays and masks.
var detections = []events.Detection{events.DetectionIncident, events.DetectionRollback, events.DetectionRevert,
	events.DetectionDegraded, events.DetectionSyncFailed, events.DetectionManual}

const (
	detIncident = iota
	detRollback
	detRevert
	detDegraded
	detSyncFailed
	detManual
	nDetections
)

func detectionIndex(d events.Detection) int { return slices.Index(detections, d) }

// Rework reasons, the values of dora_rework_deployments_total's reason label.
var reworkReasons = []string{"rollback", "revert", "hotfix"}

const (
	reworkNone = iota - 1
	reworkRollback
	reworkRevert
	reworkHotfix
)

var kinds = []events.Kind{events.KindDeploy, events.KindRedeploy, events.KindRollback}
var results = []events.Result{events.ResultSuccess, events.ResultFailure}

// State is the DORA state. It is safe for concurrent use.
type State struct {
	mu    sync.Mutex
	opts  Options
	bench Benchmark

	seen        map[string]struct{} // IDs of applied signals and incident states
	deployments map[string]*deployment
	series      map[seriesKey]*series
	commits     map[commitKey]*commitRec
	incidents   map[string]*incident
	incSeries   map[incKey]*incSeries
	// prod holds the qualifying production deployments of each component, sorted by finish time:
	// the exporter's fallback attribution and hotfix detection search it.
	prod map[string][]*deployment
	// incByComponent indexes incidents by the components they name (hotfix detection); fallback
	// indexes the incidents without an enricher link (re-attributed when a deployment arrives).
	incByComponent map[string]map[*incident]struct{}
	fallback       map[string]map[*incident]struct{}
	strings        map[string]string
	q              quality
	known          int // deployments seen (not placeholders)
	// alias maps the ID of a child rollout to its logical deployment's ID (Rollout.LogicalID):
	// signals and incident links that name a child count for the logical deployment.
	alias map[string]string
	// changes holds, per (component, environment, fingerprint) of policy-each deployments, the
	// earliest counted one: the cluster the enricher gives the change's commits to.
	changes map[changeKey]*deployment
	// sticky: counter labels are fixed at first observation (not while rebuilding).
	sticky bool
}

// New returns an empty state.
func New(opts Options) (*State, error) {
	b, ok := LookupBenchmark(opts.Benchmark)
	if !ok {
		return nil, fmt.Errorf("unknown benchmark set %q (known: %v)", opts.Benchmark, BenchmarkNames())
	}
	if len(opts.Windows) == 0 {
		return nil, errors.New("at least one window is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &State{opts: opts, bench: b, sticky: !opts.Rebuilding,
		seen: map[string]struct{}{}, deployments: map[string]*deployment{}, series: map[seriesKey]*series{},
		commits: map[commitKey]*commitRec{}, incidents: map[string]*incident{}, incSeries: map[incKey]*incSeries{},
		prod: map[string][]*deployment{}, incByComponent: map[string]map[*incident]struct{}{},
		fallback: map[string]map[*incident]struct{}{}, strings: map[string]string{}, alias: map[string]string{},
		changes: map[changeKey]*deployment{},
		q: quality{deploymentFlags: map[flagKey]uint64{}, incidentFlags: map[string]uint64{}, incidentLinks: map[string]uint64{},
			rolloutChildren: map[rolloutKey]uint64{}},
	}, nil
}

type seriesKey struct {
	component, team string
	env             events.Environment
}

// series aggregates one (component, team, environment).
type series struct {
	key      seriesKey
	deploys  [3][2]uint64 // kind × result
	days     map[int32]struct{}
	last     int64 // finish of the newest qualifying deployment, Unix ms
	changeLT *hist
	deployLT *hist
	failures [nDetections]uint64
	signals  [nDetections]uint64
	rework   [3]uint64
	fdrt     [nDetections]*hist
	// unrecovered counts change failures with no recovery yet.
	unrecovered int
	noCommits   uint64
	// deps are the qualifying deployments, for windows; commits the commit records whose first
	// deployment is in this series and that have a lead-time sample.
	deps    []*deployment
	commits []*commitRec
}

// deployment is what the state keeps of one deployment: a placeholder (known false) while only
// signals or incident links name it.
type deployment struct {
	id        string
	known     bool
	ser       *series // nil unless known with a known environment
	component string
	env       events.Environment
	kind      events.Kind
	result    events.Result
	finished  int64 // Unix ms
	// qualifies: known, known environment, success, not a redeploy. Only these count in deployment
	// frequency, lead time, change fail rate and rework rate.
	qualifies bool
	// revertSignal: a revert signal names this deployment as the one that reverted an earlier one;
	// behind: the enricher found its commit to be an ancestor of the previous one; revert: the
	// enricher flagged it as a revert (quality revert).
	revertSignal, behind, revert bool
	// hasCommits: it carried commit data; firstDeployment: flagged first_deployment (no range by
	// design); repeat: under policy each, an earlier counted deployment of its component and
	// environment deployed its fingerprint, so the enricher gave it no commits.
	hasCommits, firstDeployment, repeat bool
	sig                                 *[nDetections]sigFact // nil until a signal names the deployment
	incidents                           map[*incident]struct{}
	cur                                 outcome
	// The labels the counters took when the deployment first became a change failure and first
	// was rework: kept, so that no counter series goes down when later evidence changes the exact
	// detection or reason (README "Counter semantics").
	firstDet    int
	firstRework int
}

// sigFact is what the signals of one detection say about a deployment.
type sigFact struct {
	present   bool
	detected  int64 // earliest DetectedAt, Unix ms
	recovered int64 // earliest RecoveredAt of a recovery signal, Unix ms; 0 when none
}

// outcome is everything a deployment contributes that later events can change. evaluate computes
// it from the facts; apply moves the aggregates from the old outcome to the new one.
type outcome struct {
	sigState    int // signalsNone, signalsJoined, signalsUnknownDeployment, signalsNotAChange
	failed      bool
	detection   int
	signals     uint8 // mask of detections present, incident included
	recovered   bool
	recovery    sample
	unrecovered bool
	rework      int
	// What the counters and histograms count (stick): the first detection and rework reason, and
	// the recovery sample.
	countDet    int
	countRec    bool
	countSample sample
	countRework int
}

const (
	signalsNone = iota
	signalsJoined
	signalsUnknownDeployment
	signalsNotAChange
)

var signalStates = []string{"", "joined", "deployment_unknown", "deployment_not_a_change"}

type commitKey struct {
	component string
	env       events.Environment
	repo, sha string
}

// commitRec is one commit of one component in one environment: its lead time is measured to the
// earliest deployment that contains it.
type commitRec struct {
	first *deployment
	start int64 // commit time (see commitStart), Unix ms; 0 when unknown
	// applied state: a sample in first.ser, or a skip reason counted in quality.
	has  bool
	s    sample
	skip int
	idx  int // position in ser.commits while has
}

// Lead-time skip reasons.
const (
	skipNone = iota
	skipNoCommitTime
	skipCommitAfterDeployment
)

var skipReasons = []string{"", "no_commit_time", "commit_after_deployment"}

// quality holds the data-quality aggregates.
type quality struct {
	excludedUnknownEnv uint64
	deploymentFlags    map[flagKey]uint64
	incidentFlags      map[string]uint64
	signals            [4]uint64 // by sigState
	leadTimeSkipped    [3]uint64 // by skip reason
	incidentLinks      map[string]uint64
	rolloutChildren    map[rolloutKey]uint64
}

// rolloutKey labels doraflow_metrics_exporter_rollout_children_total.
type rolloutKey struct {
	env     events.Environment
	counted bool
}

type flagKey struct {
	env  events.Environment
	flag string
}

func (s *State) intern(v string) string {
	if !utf8.ValidString(v) {
		v = "invalid_utf8"
	}
	if i, ok := s.strings[v]; ok {
		return i
	}
	s.strings[v] = v
	return v
}

func (s *State) seriesFor(component, team string, env events.Environment) *series {
	k := seriesKey{component, team, env}
	ser := s.series[k]
	if ser == nil {
		ser = &series{key: k, days: map[int32]struct{}{}, changeLT: newHist(exemplarDeployment), deployLT: newHist(exemplarDeployment)}
		s.series[k] = ser
	}
	return ser
}

func (s *State) dep(id string) *deployment {
	d := s.deployments[id]
	if d == nil {
		d = &deployment{id: id, cur: outcome{rework: reworkNone, countRework: reworkNone}, firstDet: -1, firstRework: reworkNone}
		s.deployments[id] = d
	}
	return d
}

// Team returns the team a routed event is counted under: the first routed team (configured teams
// come first), else the team the source named, else "unassigned". One team per event keeps
// organisation-wide sums free of double counting.
func Team(r events.Routing, named string) string {
	switch {
	case len(r.Teams) > 0 && r.Teams[0] != "":
		return r.Teams[0]
	case named != "":
		return named
	}
	return "unassigned"
}

// commitStart is when work on a commit started, for lead time: the first commit of its pull request
// when known (squash and rebase merges rewrite commit times to the merge), else its commit time,
// else its author time. Zero when none is known.
func commitStart(c events.Commit) int64 {
	switch {
	case c.PullRequest != nil && !c.PullRequest.FirstCommitAt.IsZero():
		return c.PullRequest.FirstCommitAt.UnixMilli()
	case !c.CommittedAt.IsZero():
		return c.CommittedAt.UnixMilli()
	case !c.AuthoredAt.IsZero():
		return c.AuthoredAt.UnixMilli()
	}
	return 0
}

func utcDay(ms int64) int32 { return int32(ms / (24 * 3600 * 1000)) } //nolint:gosec // days since 1970 fit in int32

// AddDeployment applies an enriched deployment.
func (s *State) AddDeployment(e events.DeploymentEnriched) (Outcome, error) {
	if err := e.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := e.ID
	if r := e.Rollout; r != nil {
		if !r.Counted {
			if _, dup := s.seen[childSeen+e.ID]; dup {
				return Duplicate, nil
			}
			s.seen[childSeen+e.ID] = struct{}{}
			s.q.rolloutChildren[rolloutKey{e.Environment, false}]++
			s.addAlias(e.ID, r.LogicalID)
			return Applied, nil
		}
		key = r.LogicalID
	}
	d := s.dep(key)
	if d.known {
		return Duplicate, nil
	}
	if e.Rollout != nil {
		s.q.rolloutChildren[rolloutKey{e.Environment, true}]++
		s.addAlias(e.ID, key)
	}
	d.known = true
	s.known++
	d.component = s.intern(e.Component)
	d.env = e.Environment
	d.kind, d.result = e.Kind, e.Result
	d.finished = e.FinishedAt.UnixMilli()
	d.behind = slices.Contains(e.Quality, events.QualityBehind)
	d.revert = slices.Contains(e.Quality, events.QualityRevert)
	d.firstDeployment = slices.Contains(e.Quality, events.QualityFirstDeployment)
	d.hasCommits = len(e.Commits) > 0
	for _, f := range e.Quality {
		s.q.addFlag(d.env, string(f))
	}
	if d.env == events.EnvironmentUnknown {
		s.q.excludedUnknownEnv++
		s.reevaluate(d)
		return Applied, nil
	}
	ser := s.seriesFor(d.component, s.intern(Team(e.Routing, e.Team)), d.env)
	d.ser = ser
	ser.deploys[slices.Index(kinds, d.kind)][slices.Index(results, d.result)]++
	d.qualifies = d.result == events.ResultSuccess && d.kind != events.KindRedeploy
	if d.qualifies {
		ser.days[utcDay(d.finished)] = struct{}{}
		ser.last = max(ser.last, d.finished)
		ser.deps = append(ser.deps, d)
		s.addChange(d, e.Rollout)
		if d.missingCommits() {
			ser.noCommits++
		}
		s.addCommits(d, e.Commits)
		if d.env == events.EnvironmentProduction {
			s.addProduction(d)
		}
	}
	s.reevaluate(d)
	return Applied, nil
}

type changeKey struct {
	component   string
	env         events.Environment
	fingerprint string
}

// expectsCommits reports whether a deployment counts in dora_window_commit_data_ratio and
// deployments_without_commits_total: a qualifying deploy that is neither a first deployment nor a
// repeat of a change under policy each.
func (d *deployment) expectsCommits() bool {
	return d.qualifies && d.kind == events.KindDeploy && !d.firstDeployment && !d.repeat
}

func (d *deployment) missingCommits() bool { return d.expectsCommits() && !d.hasCommits }

// earlier reports whether a finished before b (ties: the smaller ID), the order the commits and
// changes of several deployments go to the first.
func earlier(a, b *deployment) bool {
	return a.finished < b.finished || (a.finished == b.finished && a.id < b.id)
}

// addChange places a qualifying deployment under policy each in its change (component,
// environment, fingerprint): the earliest is the one expected to carry the commits, every other is
// a repeat. A deployment that arrives late but finished first takes over.
func (s *State) addChange(d *deployment, r *events.Rollout) {
	if r == nil || r.Policy != events.RolloutEach || r.Fingerprint == "" {
		return
	}
	k := changeKey{d.component, d.env, r.Fingerprint}
	first := s.changes[k]
	switch {
	case first == nil:
		s.changes[k] = d
	case earlier(d, first):
		if first.missingCommits() {
			first.ser.noCommits--
		}
		first.repeat = true
		s.changes[k] = d
	default:
		d.repeat = true
	}
}

// addCommits records the commits of a qualifying deployment and its per-deployment lead time.
func (s *State) addCommits(d *deployment, commits []events.Commit) {
	var oldest sample
	for _, c := range commits {
		start := commitStart(c)
		if start != 0 && start <= d.finished && (oldest.id == "" || d.finished-start > oldest.ms) {
			oldest = sample{ms: d.finished - start, at: d.finished, id: d.id, commit: c.SHA}
		}
		k := commitKey{d.component, d.env, s.intern(c.RepoURL), c.SHA}
		rec := s.commits[k]
		if rec == nil {
			rec = &commitRec{}
			s.commits[k] = rec
		} else if !earlier(d, rec.first) {
			continue // an earlier deployment already contains it
		}
		s.unapplyCommit(rec)
		rec.first, rec.start = d, start
		s.applyCommit(rec, c.SHA)
	}
	if oldest.id != "" {
		d.ser.deployLT.add(oldest)
	}
}

func (s *State) applyCommit(rec *commitRec, sha string) {
	d := rec.first
	switch {
	case rec.start == 0:
		rec.skip = skipNoCommitTime
	case rec.start > d.finished:
		rec.skip = skipCommitAfterDeployment
	default:
		rec.skip = skipNone
		rec.has = true
		rec.s = sample{ms: d.finished - rec.start, at: d.finished, id: d.id, commit: sha}
		d.ser.changeLT.add(rec.s)
		rec.idx = len(d.ser.commits)
		d.ser.commits = append(d.ser.commits, rec)
	}
	s.q.leadTimeSkipped[rec.skip]++
}

func (s *State) unapplyCommit(rec *commitRec) {
	if rec.first == nil {
		return
	}
	s.q.leadTimeSkipped[rec.skip]--
	if !rec.has {
		return
	}
	ser := rec.first.ser
	ser.changeLT.remove(rec.s)
	last := ser.commits[len(ser.commits)-1]
	ser.commits[rec.idx], last.idx = last, rec.idx
	ser.commits = ser.commits[:len(ser.commits)-1]
	rec.has = false
}

// addProduction indexes a qualifying production deployment, then re-runs the exporter's fallback
// attribution and hotfix detection that it may change.
func (s *State) addProduction(d *deployment) {
	list := s.prod[d.component]
	i, _ := slices.BinarySearchFunc(list, d, func(a, b *deployment) int {
		if a.finished != b.finished {
			return cmpInt(a.finished, b.finished)
		}
		return cmpString(a.id, b.id)
	})
	s.prod[d.component] = slices.Insert(list, i, d)
	for inc := range s.fallback[d.component] {
		if inc.created > d.finished {
			s.relink(inc)
		}
	}
}

// AddSignal applies a change-failure signal.
func (s *State) AddSignal(e events.ChangeFailureSignal) (Outcome, error) {
	if err := e.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[e.ID]; ok {
		return Duplicate, nil
	}
	s.seen[e.ID] = struct{}{}
	d := s.dep(s.resolve(e.DeploymentID))
	if d.sig == nil {
		d.sig = new([nDetections]sigFact)
	}
	f := &d.sig[detectionIndex(e.Detection)]
	if at := e.DetectedAt.UnixMilli(); !f.present || at < f.detected {
		f.detected = at
	}
	f.present = true
	if !e.RecoveredAt.IsZero() {
		if at := e.RecoveredAt.UnixMilli(); f.recovered == 0 || at < f.recovered {
			f.recovered = at
		}
	}
	if e.Detection == events.DetectionRevert && e.RelatedID != "" && s.resolve(e.RelatedID) != d.id {
		r := s.dep(s.resolve(e.RelatedID))
		if !r.revertSignal {
			r.revertSignal = true
			s.reevaluate(r)
		}
	}
	s.reevaluate(d)
	return Applied, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (q *quality) addFlag(env events.Environment, flag string) {
	q.deploymentFlags[flagKey{env, flag}]++
}

// AddInferred applies a change failure the enricher inferred from commit history (a GitOps revert):
// a signal whose deployment IDs are logical deployment IDs.
func (s *State) AddInferred(e events.ChangeFailureInferred) (Outcome, error) {
	return s.AddSignal(e.ChangeFailureSignal)
}

// Rebuilt ends the rebuild: the counters' detection and rework labels are fixed from now on at what
// they are (the exact, order-independent values of the whole history), and later at first
// observation.
func (s *State) Rebuilt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sticky {
		return
	}
	s.sticky = true
	for _, d := range s.deployments {
		if d.cur.failed {
			d.firstDet = d.cur.detection
		}
		d.firstRework = d.cur.rework
	}
}

// childSeen prefixes the IDs of applied uncounted child rollouts in State.seen.
const childSeen = "rollout-child/"

// resolve returns the ID a deployment ID counts under: its logical deployment's, or its own.
func (s *State) resolve(id string) string {
	if l, ok := s.alias[id]; ok {
		return l
	}
	return id
}

// addAlias records child as a child rollout of the logical deployment logical. What signals and
// incident links said about child before it was known as a child moves to the logical deployment.
func (s *State) addAlias(child, logical string) {
	if child == logical {
		return
	}
	s.alias[child] = logical
	old := s.deployments[child]
	if old == nil || old.known {
		return
	}
	l := s.dep(logical)
	s.apply(old, old.cur, -1)
	delete(s.deployments, child)
	if old.sig != nil {
		if l.sig == nil {
			l.sig = new([nDetections]sigFact)
		}
		for i, f := range old.sig {
			if !f.present {
				continue
			}
			m := &l.sig[i]
			if !m.present || f.detected < m.detected {
				m.detected = f.detected
			}
			if f.recovered != 0 && (m.recovered == 0 || f.recovered < m.recovered) {
				m.recovered = f.recovered
			}
			m.present = true
		}
	}
	l.revertSignal = l.revertSignal || old.revertSignal
	for inc := range old.incidents {
		inc.link = l
		if l.incidents == nil {
			l.incidents = map[*incident]struct{}{}
		}
		l.incidents[inc] = struct{}{}
	}
	s.reevaluate(l)
}
