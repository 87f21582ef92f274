package detect

import (
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/events"
	"github.com/doraflow/doraflow/services/argocd-watcher/internal/argocd"
)

// HealthProgressing is the health of an application whose pods are still rolling.
const HealthProgressing = "Progressing"

// Why a new history entry is held before it is published (Result.Held).
const (
	// HoldProgressing: the application's health is Progressing; old and new pods may coexist.
	HoldProgressing = "progressing"
	// HoldUnchangedImages: the revision changed but the live images are still exactly the previous
	// deployment's (the new pods have not started yet).
	HoldUnchangedImages = "unchanged_images"
)

// Why a held entry was published (Result.Released).
const (
	// ReleaseSettled: health left Progressing, or the live images changed.
	ReleaseSettled = "settled"
	// ReleaseTimeout: ImageSettleTimeout passed since deployedAt.
	ReleaseTimeout = "timeout"
	// ReleaseSuperseded: a newer history entry or operation arrived; the held entry goes first, with
	// the images seen while it was held.
	ReleaseSuperseded = "superseded"
	// ReleaseRecreated: the application was deleted or recreated with a new UID while the entry
	// was held.
	ReleaseRecreated = "recreated"
)

// Held is the newest history entry, waiting for its rollout to settle so that the live images show
// what its revision deploys (argocd.md §3.8). Everything but the images was decided when the entry
// appeared, so its ID, FinishedAt, Previous and Kind do not depend on the wait.
type Held struct {
	Deployment events.DeploymentObserved `json:"deployment"`
	// Failure and Signal are the change failure of the entry it rolled back, published right after it.
	Failure *Failure                    `json:"failure,omitempty"`
	Signal  *events.ChangeFailureSignal `json:"signal,omitempty"`
	// Until is deployedAt + ImageSettleTimeout: the entry is published at the latest then.
	Until time.Time `json:"until"`
	// SourceRepo is the application's source repository, for commits of unmapped images.
	SourceRepo string `json:"source_repo,omitempty"`
	// Images are the live image references at the last look while it was held: what is known of
	// its images should a newer entry supersede it.
	Images []string `json:"images,omitempty"`
}

// holdReason says whether a new entry (of kind kind) must wait for its rollout, given the live and
// the previous deployment's images; "" publishes it now. Degraded or Missing never waits: the
// degraded window must see the deployment before its failure.
func (c *Config) holdReason(app argocd.Application, kind events.Kind, live, prev []events.Image) string {
	switch {
	case app.Health == HealthDegraded || app.Health == HealthMissing:
		return ""
	case app.Health == HealthProgressing:
		return HoldProgressing
	case kind != events.KindRedeploy && len(prev) > 0 && len(live) > 0 && sameImages(live, prev):
		return HoldUnchangedImages
	}
	return ""
}

// hold keeps d (and the rollback signal that follows it) in st until its rollout settles.
func (c *Config) hold(res *Result, st *State, app argocd.Application, r route, d events.DeploymentObserved, f *Failure, sig *events.ChangeFailureSignal, reason string, now time.Time) {
	h := &Held{Deployment: d, Failure: f, Signal: sig, Until: d.FinishedAt.Add(c.ImageSettleTimeout),
		SourceRepo: r.SourceRepo, Images: slices.Clone(app.Images)}
	st.Held = h
	res.Held = append(res.Held, reason)
	res.recheck(h.Until.Sub(now))
}

// settle looks at the held entry again when no newer entry arrived: it stays held while the rollout
// is still settling and the bound has not passed, else it is published with the live images.
func (c *Config) settle(res *Result, st *State, app argocd.Application, now time.Time) {
	h := st.Held
	live := c.images(res, app)
	if now.Before(h.Until) && c.holdReason(app, h.Deployment.Kind, live, st.Images) != "" {
		if !slices.Equal(h.Images, app.Images) {
			h.Images = slices.Clone(app.Images)
		}
		res.recheck(h.Until.Sub(now))
		return
	}
	reason := ReleaseSettled
	if !now.Before(h.Until) {
		reason = ReleaseTimeout
	}
	c.release(res, st, live, reason)
}

// supersede publishes the held entry, if any, because something newer arrived: with the images seen
// while it was held, not the live ones, which may already be the newer entry's.
func (c *Config) supersede(res *Result, st *State, reason string) {
	if st.Held != nil {
		c.release(res, st, c.parseImages(nil, st.Held.Images), reason)
	}
}

func (c *Config) release(res *Result, st *State, live []events.Image, reason string) {
	h := st.Held
	st.Held = nil
	d := h.Deployment
	c.attachImages(&d, st, route{SourceRepo: h.SourceRepo}, live)
	res.Events = append(res.Events, &d)
	if h.Signal != nil {
		res.Events = append(res.Events, h.Signal)
	}
	if h.Failure != nil {
		st.Open = append(st.Open, *h.Failure)
	}
	res.Released = append(res.Released, reason)
}

// Flush returns the events of an entry held in st, for an application that is gone (deleted, or
// recreated with a new UID): it is published with the images seen while it was held.
func (c *Config) Flush(st State) []events.Event {
	res := Result{}
	st = st.clone()
	c.supersede(&res, &st, ReleaseRecreated)
	return c.valid(&res, res.Events)
}

// attachImages sets the live images of d and the application commits of the images its revision
// runs (resolveImages), flags what cannot be told apart, and remembers the resolved set in st as
// the previous deployment's for the next one.
func (c *Config) attachImages(d *events.DeploymentObserved, st *State, r route, live []events.Image) {
	d.Images = live
	chosen, ambiguous := resolveImages(live, st.Images)
	d.AppCommits = c.appCommits(chosen, r)
	remembered := slices.Clone(chosen)
	for _, group := range ambiguous {
		remembered = append(remembered, group...)
		if slices.ContainsFunc(group, func(img events.Image) bool { return c.tagSHA(img.Tag) != "" }) &&
			!slices.Contains(d.Flags, events.QualityAmbiguousImage) {
			d.Flags = append(d.Flags, events.QualityAmbiguousImage)
		}
	}
	if len(live) > 0 || len(st.Images) == 0 {
		st.Images = remembered // pods scaled to zero say nothing about what runs
	}
}

// resolveImages picks, per repository (registry host and path, §6), the image the new revision
// runs: the only version live, else the only one the previous deployment did not run. The versions
// of a repository where that still leaves none or several are returned as ambiguous. Sort order
// never decides.
func resolveImages(live, prev []events.Image) (chosen []events.Image, ambiguous [][]events.Image) {
	for _, vs := range groupByRepository(live) {
		if len(vs) == 1 {
			chosen = append(chosen, vs[0])
			continue
		}
		var fresh []events.Image
		for _, v := range vs {
			if !slices.ContainsFunc(prev, func(p events.Image) bool { return sameVersion(p, v) }) {
				fresh = append(fresh, v)
			}
		}
		if len(fresh) == 1 {
			chosen = append(chosen, fresh[0])
		} else {
			ambiguous = append(ambiguous, vs)
		}
	}
	return chosen, ambiguous
}

// groupByRepository returns the distinct versions of each repository, repositories in order of
// first appearance. A reference by tag and one by the same tag plus digest are one version, kept
// with its digest.
func groupByRepository(images []events.Image) [][]events.Image {
	var groups [][]events.Image
	index := map[string]int{}
	for _, img := range images {
		i, ok := index[img.Repository]
		if !ok {
			index[img.Repository] = len(groups)
			groups = append(groups, []events.Image{img})
			continue
		}
		j := slices.IndexFunc(groups[i], func(v events.Image) bool { return sameVersion(v, img) })
		switch {
		case j < 0:
			groups[i] = append(groups[i], img)
		case groups[i][j].Digest == "" && img.Digest != "":
			groups[i][j] = img
		}
	}
	return groups
}

// sameVersion says whether two images are the same version of one repository: digest first (it
// identifies what runs), else the tag.
func sameVersion(a, b events.Image) bool {
	if a.Repository != b.Repository {
		return false
	}
	if a.Digest != "" && b.Digest != "" {
		return a.Digest == b.Digest
	}
	return a.Tag == b.Tag
}

// sameImages says whether live runs exactly the versions of prev, no more and no fewer.
func sameImages(live, prev []events.Image) bool {
	covered := func(xs, ys []events.Image) bool {
		return !slices.ContainsFunc(xs, func(x events.Image) bool {
			return !slices.ContainsFunc(ys, func(y events.Image) bool { return sameVersion(x, y) })
		})
	}
	return covered(live, prev) && covered(prev, live)
}

// recheck asks for another look after d, keeping the earliest of several requests.
func (r *Result) recheck(d time.Duration) {
	if d > 0 && (r.RecheckAfter == 0 || d < r.RecheckAfter) {
		r.RecheckAfter = d
	}
}
