package testwait_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/testwait"
)

// recorder is a testing.TB that records Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestPoll(t *testing.T) {
	t.Parallel()
	calls := 0
	if !testwait.Poll(time.Second, func() bool { calls++; return calls == 3 }) || calls != 3 {
		t.Errorf("Poll stopped after %d calls, want true after 3", calls)
	}
	// A condition is asked at least once, even with no time at all.
	calls = 0
	if !testwait.Poll(0, func() bool { calls++; return true }) || calls != 1 {
		t.Errorf("Poll(0) with a true condition: %d calls", calls)
	}
	calls = 0
	if testwait.PollEvery(50*time.Millisecond, time.Millisecond, func() bool { calls++; return false }) {
		t.Error("PollEvery reported a condition that never held")
	}
	if calls < 2 {
		t.Errorf("PollEvery asked %d times in 50ms at a 1ms interval; it should keep asking until the deadline", calls)
	}
}

func TestUntilFailsWithWhatAndTheLastError(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	testwait.Until(r, 20*time.Millisecond, func() bool { return false }, "the %s", "queue to drain")
	if !strings.Contains(r.failed, "waiting for the queue to drain") {
		t.Errorf("Until failed with %q", r.failed)
	}

	r = &recorder{TB: t}
	n := 0
	testwait.UntilNil(r, 20*time.Millisecond, func() error { n++; return fmt.Errorf("status is deferred (try %d)", n) })
	if want := fmt.Sprintf("status is deferred (try %d)", n); !strings.Contains(r.failed, want) {
		t.Errorf("UntilNil failed with %q, want the last error %q", r.failed, want)
	}

	r = &recorder{TB: t}
	testwait.UntilNil(r, time.Second, func() error { return nil })
	testwait.Until(r, time.Second, func() bool { return true }, "nothing")
	if r.failed != "" {
		t.Errorf("a condition that holds failed the test: %q", r.failed)
	}
}
