package github

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotFound means GitHub answered 404 (or 422, "no commit found for SHA") for a repository or
// commit: it does not exist, or the credentials cannot see it (GitHub hides private repositories
// behind 404). Retrying does not help.
var ErrNotFound = errors.New("github: not found")

// ErrForbidden means GitHub answered 403 for a reason other than a rate limit: the token or app
// installation lacks access, or an organisation policy (SAML, IP allow list) blocks it.
var ErrForbidden = errors.New("github: forbidden")

// RateLimitedError means GitHub's quota is exhausted (primary limit) or it asked to slow down
// (secondary limit). Retry after Until; the request was not served.
type RateLimitedError struct {
	// Until is when requests may resume: X-RateLimit-Reset, or now + Retry-After.
	Until time.Time
	// Secondary is true for a secondary (abuse) limit.
	Secondary bool
	// Resource is the quota that ran out (core, graphql), empty for secondary limits.
	Resource string
}

func (e *RateLimitedError) Error() string {
	kind := "rate limit"
	if e.Secondary {
		kind = "secondary rate limit"
	} else if e.Resource != "" {
		kind = e.Resource + " rate limit"
	}
	return fmt.Sprintf("github: %s exceeded; retry after %s", kind, e.Until.UTC().Format(time.RFC3339))
}

// RetryAfter returns how long to wait from now.
func (e *RateLimitedError) RetryAfter(now time.Time) time.Duration { return max(e.Until.Sub(now), 0) }

// IsRateLimited reports whether err is, or wraps, a *RateLimitedError.
func IsRateLimited(err error) bool {
	var rl *RateLimitedError
	return errors.As(err, &rl)
}
