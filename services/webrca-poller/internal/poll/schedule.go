package poll

import "time"

// Schedule says when to poll next.
type Schedule struct {
	// Interval between successful polls.
	Interval time.Duration
	// Jitter is added to Interval, scaled by a random fraction, so replicas and restarts spread out.
	Jitter time.Duration
	// Backoff is the wait after the first failed poll; it doubles with each further failure, up to
	// Interval.
	Backoff time.Duration
}

// Next returns the wait before the next poll. failures counts the consecutive failed polls (0 after
// a success); retryable says whether the last failure may pass soon (else the full interval is
// waited); retryAfter is the server's Retry-After, honoured as a minimum; rnd is in [0, 1).
func (s Schedule) Next(failures int, retryable bool, retryAfter time.Duration, rnd float64) time.Duration {
	full := s.Interval + time.Duration(rnd*float64(s.Jitter))
	if failures == 0 || !retryable {
		return max(full, retryAfter)
	}
	d := s.Backoff
	for i := 1; i < failures && d < s.Interval; i++ {
		d *= 2
	}
	d = min(d, s.Interval)
	// Full jitter on the upper half: between d/2 and d.
	d = d/2 + time.Duration(rnd*float64(d/2))
	return max(d, retryAfter)
}
