package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Cache stores answers that never change: a comparison of two SHAs, a commit, the pull request
// that brought a commit in. Keys are ASCII tokens separated by dots.
type Cache interface {
	// Get returns the value, or an error wrapping ErrCacheMiss when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
}

// ErrCacheMiss means the cache holds no value for a key.
var ErrCacheMiss = errors.New("cache miss")

// CacheObserver counts cache lookups by kind (compare, commit, pull_request).
type CacheObserver interface {
	CacheLookup(kind string, hit bool)
}

// Cache kinds, the values of CacheObserver's kind.
const (
	CacheCompare     = "compare"
	CacheCommit      = "commit"
	CachePullRequest = "pull_request"
)

// Key kinds of cached answers. The version suffix changes when a cached type gains a field that
// old entries cannot have (v2: Commit.Reverts), so old entries are never read as complete.
const (
	keyCompare = "cmp2"
	keyCommit  = "commit2"
)

// maxCachedComparison keeps a cached comparison under JetStream's default 1 MiB message size.
const maxCachedComparison = 900 << 10

// Cached answers from the cache when it can and asks the client otherwise, then caches the
// answer. Only answers keyed by full SHAs are cached: a comparison of two full SHAs, a commit by
// full SHA, and whether (and by which pull request) a commit was merged. Errors are never cached,
// so a repository that becomes visible is seen.
type Cached struct {
	client *Client
	cache  Cache
	obs    CacheObserver
}

// NewCached returns client behind cache.
func NewCached(client *Client, cache Cache, obs CacheObserver) *Cached {
	return &Cached{client: client, cache: cache, obs: obs}
}

// Compare is Client.Compare, cached when base and head are full SHAs.
func (c *Cached) Compare(ctx context.Context, repo Repo, base, head string) (Comparison, error) {
	cacheable := fullSHA.MatchString(base) && fullSHA.MatchString(head)
	key := cacheKey(keyCompare, repo, base+"."+head)
	if cacheable {
		var cmp Comparison
		if hit, err := c.get(ctx, CacheCompare, key, &cmp); err != nil || hit {
			return cmp, err
		}
	}
	cmp, err := c.client.Compare(ctx, repo, base, head)
	if err != nil {
		return Comparison{}, err
	}
	if cacheable {
		if err := c.put(ctx, key, cmp, maxCachedComparison); err != nil {
			return Comparison{}, err
		}
	}
	return cmp, nil
}

// Commit is Client.Commit, cached by full SHA (an abbreviated SHA is resolved by GitHub every time,
// because it can become ambiguous).
func (c *Cached) Commit(ctx context.Context, repo Repo, sha string) (Commit, error) {
	cacheable := fullSHA.MatchString(sha)
	key := cacheKey(keyCommit, repo, sha)
	if cacheable {
		var cm Commit
		if hit, err := c.get(ctx, CacheCommit, key, &cm); err != nil || hit {
			return cm, err
		}
	}
	cm, err := c.client.Commit(ctx, repo, sha)
	if err != nil {
		return Commit{}, err
	}
	if cacheable || fullSHA.MatchString(cm.SHA) {
		if err := c.put(ctx, cacheKey(keyCommit, repo, cm.SHA), cm, 0); err != nil {
			return Commit{}, err
		}
	}
	return cm, nil
}

// prEntry is the cached answer for one commit: the pull request that merged it, or none.
type prEntry struct {
	PR *PullRequest `json:"pr"`
}

// PullRequests is Client.PullRequests for the commits the cache does not know, in one batch.
// "No pull request" is cached too: the association of a merged commit does not change.
func (c *Cached) PullRequests(ctx context.Context, repo Repo, shas []string) (map[string]*PullRequest, error) {
	out := make(map[string]*PullRequest, len(shas))
	var missing []string
	for _, sha := range shas {
		if _, done := out[sha]; done || slices.Contains(missing, sha) {
			continue
		}
		var e prEntry
		hit, err := c.get(ctx, CachePullRequest, cacheKey("pr", repo, sha), &e)
		if err != nil {
			return nil, err
		}
		if hit {
			out[sha] = e.PR
		} else {
			missing = append(missing, sha)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	fetched, err := c.client.PullRequests(ctx, repo, missing)
	if err != nil {
		return nil, err
	}
	for _, sha := range missing {
		pr := fetched[sha]
		out[sha] = pr
		if err := c.put(ctx, cacheKey("pr", repo, sha), prEntry{PR: pr}, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *Cached) get(ctx context.Context, kind, key string, v any) (bool, error) {
	b, err := c.cache.Get(ctx, key)
	if errors.Is(err, ErrCacheMiss) {
		c.observe(kind, false)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("github cache get %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		// A value this version cannot read is a miss; the fresh answer overwrites it.
		c.observe(kind, false)
		return false, nil
	}
	c.observe(kind, true)
	return true, nil
}

func (c *Cached) put(ctx context.Context, key string, v any, limit int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("github cache encode %s: %w", key, err)
	}
	if limit > 0 && len(b) > limit {
		return nil // too large for one KV value; asked again next time
	}
	if err := c.cache.Put(ctx, key, b); err != nil {
		return fmt.Errorf("github cache put %s: %w", key, err)
	}
	return nil
}

func (c *Cached) observe(kind string, hit bool) {
	if c.obs != nil {
		c.obs.CacheLookup(kind, hit)
	}
}

// cacheKey builds a KV-safe key: kind.host.owner.repo.rest, with the names hex-encoded where they
// hold characters a NATS subject token cannot (GitHub names may contain dots).
func cacheKey(kind string, repo Repo, rest string) string {
	return kind + "." + hostToken(repo.Host) + "." + token(repo.Owner) + "." + token(repo.Name) + "." + rest
}

// hostToken writes a DNS host name with '_' for '.', which host names cannot contain: github_com.
func hostToken(host string) string {
	for _, r := range host {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '.' {
			return token(host)
		}
	}
	return token(strings.ReplaceAll(host, ".", "_"))
}

// token returns s when it is made of [a-z0-9_-] only, else "=" + its hex encoding ("=" never
// appears in a plain token, so the two cannot collide).
func token(s string) string {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return fmt.Sprintf("=%x", s)
		}
	}
	if s == "" {
		return "_"
	}
	return s
}
