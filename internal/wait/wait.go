// Package wait polls a condition in tests instead of sleeping: For retries until the condition holds
// and fails the test with the condition's last error when time runs out.
package wait

import (
	"testing"
	"time"
)

// For calls cond every 10 ms until it returns nil, or fails t after timeout with cond's last error.
func For(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
