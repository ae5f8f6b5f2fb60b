// Package testwait is the one way tests wait for something to become true:
// poll a condition until a deadline, instead of sleeping a fixed time or
// writing another hand-made loop. Timeouts are generous (shared, noisy
// machines); polling makes the common case fast.
//
// Until and UntilNil fail the test, so they belong to the test's own
// goroutine (t.Fatalf may not be called from another one). Poll and
// PollEvery only report, for goroutines and for tests that must say more
// than "timed out" when the deadline passes.
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
	UntilNilEvery(t, timeout, Interval, f)
}

// UntilNilEvery is UntilNil polling every interval instead of Interval, for
// conditions that are costly to evaluate (many requests to a real process)
// or whose polling rhythm the test accounts for.
func UntilNilEvery(t testing.TB, timeout, every time.Duration, f func() error) {
	t.Helper()
	var last error
	if !PollEvery(timeout, every, func() bool { last = f(); return last == nil }) {
		t.Fatalf("timed out after %s: %v", timeout, last)
	}
}

// Poll polls cond every Interval until it returns true (true) or timeout
// passes (false). Use it where a test must decide for itself what a timeout
// means; otherwise use Until.
func Poll(timeout time.Duration, cond func() bool) bool {
	return PollEvery(timeout, Interval, cond)
}

// PollEvery is Poll polling every interval instead of Interval. cond is
// always evaluated at least once, and once more after the deadline, so a
// condition that became true while the last interval passed is not missed.
func PollEvery(timeout, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(every)
	}
}
