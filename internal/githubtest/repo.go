package githubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Epoch is when every fake repository's clock starts.
var Epoch = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// Repo is a fake repository: a commit graph, a main branch, and pull requests. Its builder methods
// return the commits each change adds to main, which is exactly what a comparison of the old and
// new main heads must list — the oracle tests compare the enricher's answer against.
type Repo struct {
	s       *Server
	owner   string
	name    string
	commits map[string]*commit
	order   []string // creation order: parents always come first
	main    string
	prs     map[int]*pullRequest
	nextPR  int
	clock   time.Time
	// forbidden repositories answer 403 "Resource not accessible by integration".
	forbidden bool
}

type commit struct {
	sha       string
	index     int
	title     string
	author    string
	authored  time.Time
	committed time.Time
	parents   []string
	prs       []int
}

type pullRequest struct {
	number  int
	created time.Time
	merged  time.Time // zero while open
	commits []string  // the branch's commits, oldest first
}

// PR is what the fake knows about a pull request, for assertions.
type PR struct {
	Number        int
	URL           string
	CreatedAt     time.Time
	MergedAt      time.Time
	FirstCommitAt time.Time
}

func (r *Repo) tick() time.Time {
	r.clock = r.clock.Add(time.Minute)
	return r.clock
}

// newCommit adds a commit; the caller holds s.mu.
func (r *Repo) newCommit(title, author string, authored time.Time, parents ...string) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s/%s\x00%d\x00%s\x00%v", r.owner, r.name, len(r.order), title, parents)
	sha := hex.EncodeToString(h.Sum(nil))
	committed := r.tick()
	if authored.IsZero() {
		authored = committed
	}
	r.commits[sha] = &commit{sha: sha, index: len(r.order), title: title, author: author,
		authored: authored, committed: committed, parents: parents}
	r.order = append(r.order, sha)
	return sha
}

func (r *Repo) parentsOfMain() []string {
	if r.main == "" {
		return nil
	}
	return []string{r.main}
}

// AdvanceTo moves the repository's clock forward to t (never back): the next commits are authored
// and committed from t on, a minute apart. Simulations use it to give commits realistic times.
func (r *Repo) AdvanceTo(t time.Time) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if t.After(r.clock) {
		r.clock = t
	}
}

// Head returns main's head commit.
func (r *Repo) Head() string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.main
}

// URL returns the repository's canonical URL.
func (r *Repo) URL() string { return "https://github.com/" + r.owner + "/" + r.name }

// Push adds n commits directly to main (no pull request) and returns them.
func (r *Repo) Push(n int) []string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	var out []string
	for i := 0; i < n; i++ {
		r.main = r.newCommit(fmt.Sprintf("direct change %d", len(r.order)), "pusher", time.Time{}, r.parentsOfMain()...)
		out = append(out, r.main)
	}
	return out
}

// Revert adds to main, directly, the commit git revert writes for sha: titled Revert "<title>",
// with the body "This reverts commit <sha>." GitHub returns that full message from its compare and
// commit APIs. It returns the new commit.
func (r *Repo) Revert(sha string) string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	title := r.commits[sha].title
	for i := range title {
		if title[i] == '\n' {
			title = title[:i]
			break
		}
	}
	msg := fmt.Sprintf("Revert %q\n\nThis reverts commit %s.\n", title, sha)
	r.main = r.newCommit(msg, "reverter", time.Time{}, r.parentsOfMain()...)
	return r.main
}

// branch creates k commits on a branch off main and an open pull request for them.
func (r *Repo) branch(k int, author string) (*pullRequest, []string) {
	r.nextPR++
	pr := &pullRequest{number: r.nextPR}
	base := r.parentsOfMain()
	for i := 0; i < k; i++ {
		sha := r.newCommit(fmt.Sprintf("PR %d: step %d\n\nDetails of step %d.", pr.number, i+1, i+1), author, time.Time{}, base...)
		r.commits[sha].prs = append(r.commits[sha].prs, pr.number)
		pr.commits = append(pr.commits, sha)
		base = []string{sha}
		if i == 0 {
			pr.created = r.tick()
		}
	}
	r.prs[pr.number] = pr
	return pr, pr.commits
}

// Squash opens a pull request with k commits and squash-merges it: main gains one new commit.
// It returns main's new commits and the pull request's number.
func (r *Repo) Squash(k int) ([]string, int) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	pr, _ := r.branch(k, "squasher")
	// GitHub authors the squash commit at merge time: only the PR's first commit knows the start.
	sha := r.newCommit(fmt.Sprintf("PR %d squashed (#%d)", pr.number, pr.number), "squasher", time.Time{}, r.parentsOfMain()...)
	r.commits[sha].prs = append(r.commits[sha].prs, pr.number)
	pr.merged = r.commits[sha].committed
	r.main = sha
	return []string{sha}, pr.number
}

// Merge opens a pull request with k commits and merges it with a merge commit: main gains the k
// branch commits and the merge commit.
func (r *Repo) Merge(k int) ([]string, int) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	pr, branch := r.branch(k, "merger")
	parents := append(r.parentsOfMain(), branch[len(branch)-1])
	sha := r.newCommit("Merge pull request #"+strconv.Itoa(pr.number), "merger", time.Time{}, parents...)
	r.commits[sha].prs = append(r.commits[sha].prs, pr.number)
	pr.merged = r.commits[sha].committed
	r.main = sha
	return append(append([]string(nil), branch...), sha), pr.number
}

// Rebase opens a pull request with k commits and rebase-merges it: main gains k new commits (new
// SHAs, original author dates).
func (r *Repo) Rebase(k int) ([]string, int) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	pr, branch := r.branch(k, "rebaser")
	var out []string
	for _, b := range branch {
		orig := r.commits[b]
		sha := r.newCommit(orig.title, orig.author, orig.authored, r.parentsOfMain()...)
		r.commits[sha].prs = append(r.commits[sha].prs, pr.number)
		r.main = sha
		out = append(out, sha)
	}
	pr.merged = r.commits[r.main].committed
	return out, pr.number
}

// OpenPR opens a pull request that also contains commit sha (without merging it), as a branch built
// on an already merged commit does; such pull requests did not bring the commit in.
func (r *Repo) OpenPR(sha string) int {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.nextPR++
	pr := &pullRequest{number: r.nextPR, created: r.tick(), commits: []string{sha}}
	r.prs[pr.number] = pr
	r.commits[sha].prs = append(r.commits[sha].prs, pr.number)
	return pr.number
}

// ForcePush rewrites main: it resets main to onto and adds n new commits, which it returns.
func (r *Repo) ForcePush(onto string, n int) []string {
	r.s.mu.Lock()
	r.main = onto
	r.s.mu.Unlock()
	return r.Push(n)
}

// PullRequest returns what the fake knows about pull request number, for assertions.
func (r *Repo) PullRequest(number int) PR {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	pr := r.prs[number]
	out := PR{Number: pr.number, URL: r.prURL(pr.number), CreatedAt: pr.created, MergedAt: pr.merged}
	for _, c := range pr.commits {
		if a := r.commits[c].authored; out.FirstCommitAt.IsZero() || a.Before(out.FirstCommitAt) {
			out.FirstCommitAt = a
		}
	}
	return out
}

// CommitInfo is what the fake knows about a commit, for assertions.
type CommitInfo struct {
	SHA         string
	Author      string
	Title       string
	AuthoredAt  time.Time
	CommittedAt time.Time
	// PullRequests are the numbers of the pull requests associated with the commit.
	PullRequests []int
}

// Commit returns what the fake knows about a commit, for assertions; the zero CommitInfo for a SHA
// it does not know.
func (r *Repo) Commit(sha string) CommitInfo {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	c, ok := r.commits[sha]
	if !ok {
		return CommitInfo{}
	}
	title := c.title
	for i := range title {
		if title[i] == '\n' {
			title = title[:i]
			break
		}
	}
	return CommitInfo{SHA: c.sha, Author: c.author, Title: title, AuthoredAt: c.authored, CommittedAt: c.committed,
		PullRequests: append([]int(nil), c.prs...)}
}

func (r *Repo) prURL(n int) string { return r.URL() + "/pull/" + strconv.Itoa(n) }

// ancestors returns every commit reachable from sha, sha included.
func (r *Repo) ancestors(sha string) map[string]bool {
	seen := map[string]bool{}
	stack := []string{sha}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[s] {
			continue
		}
		seen[s] = true
		stack = append(stack, r.commits[s].parents...)
	}
	return seen
}

// resolve finds a commit by full or abbreviated (7+ hex) SHA; ambiguous prefixes do not resolve.
func (r *Repo) resolve(ref string) (string, bool) {
	if ref == "main" || ref == "HEAD" {
		return r.main, r.main != ""
	}
	if _, ok := r.commits[ref]; ok {
		return ref, true
	}
	if len(ref) < 7 || len(ref) >= 40 {
		return "", false
	}
	found := ""
	for sha := range r.commits {
		if len(sha) >= len(ref) && sha[:len(ref)] == ref {
			if found != "" {
				return "", false
			}
			found = sha
		}
	}
	return found, found != ""
}

// Forget deletes a commit nothing else references, as GitHub's garbage collection eventually does
// to commits a force push left unreachable: compares and lookups of it then answer 404 or 422.
func (r *Repo) Forget(sha string) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	delete(r.commits, sha)
}

// Back returns the commit n steps back from main's head along first parents (the root if the
// line is shorter).
func (r *Repo) Back(n int) string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	sha := r.main
	for i := 0; i < n && len(r.commits[sha].parents) > 0; i++ {
		sha = r.commits[sha].parents[0]
	}
	return sha
}
