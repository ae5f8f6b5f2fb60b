// Package testwait is the one way tests wait for something to become true:
// poll a condition until a deadline, instead of sleeping a fixed time or
// writing another hand-made loop. Timeouts are generous (shared, noisy
// machines); polling makes the common case fast.
package testwait

import (
	"fmt"
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 10 * time.Millisecond

// Until polls cond until it returns true, failing the test when timeout
// passes first. what describes the condition for the failure message
// (fmt.Sprintf with args).
func Until(t testing.TB, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, fmt.Sprintf(what, args...))
	}
}

// UntilNil polls f until it returns nil, failing the test with f's last
// error when timeout passes first. It suits conditions that can explain
// themselves ("status is deferred, want sent").
func UntilNil(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	var last error
	if !Poll(timeout, func() bool { last = f(); return last == nil }) {
		t.Fatalf("timed out after %s: %v", timeout, last)
	}
}

// Poll polls cond every Interval until it returns true (true) or timeout
// passes (false). Use it where a test must decide for itself what a timeout
// means; otherwise use Until.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Interval)
	}
}
