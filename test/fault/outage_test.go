package fault

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/testwait"
)

// nextAttemptIn finds the wait a deferral announced.
var nextAttemptIn = regexp.MustCompile(`next attempt in ([0-9a-zµ.]+)$`)

// TestSMTPOutage takes the SMTP server away (connections refused) while
// messages are submitted: they are deferred with a backoff that grows from
// backoff_initial (200ms) towards backoff_max (2s), none fails before
// max_age, and all are delivered once the server is back on the same
// address.
func TestSMTPOutage(t *testing.T) {
	t.Parallel()
	const total, wantDeferrals = 5, 5
	e := newEnv(t, settings{MaxAge: time.Minute, BackoffInitial: 200 * time.Millisecond, BackoffMax: 2 * time.Second})
	p := e.start()
	e.fwd.Down()
	downAt := time.Now()
	ids := e.mustSubmit(p, total)

	// The outage lasts until every message was deferred wantDeferrals
	// times: long enough for the backoff to reach its maximum.
	var sts map[string]msgStatus
	// The gaps measured below allow for this polling rhythm.
	testwait.UntilNilEvery(t, 30*time.Second, 50*time.Millisecond, func() error {
		sts = map[string]msgStatus{}
		short := 0
		for _, id := range ids {
			st, err := e.status(p, id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status == "failed" || st.Status == "sent" {
				t.Fatalf("message %s is %s during the outage: %+v", id, st.Status, st.Events)
			}
			sts[id] = st
			if deferrals(st) < wantDeferrals {
				short++
			}
		}
		if short > 0 {
			return fmt.Errorf("%d messages not yet deferred %d times", short, wantDeferrals)
		}
		return nil
	})
	e.fwd.Up()
	outage := time.Since(downAt)

	// The gaps between attempts follow the backoff: attempt n waits between
	// half and all of min(initial·2^(n-1), max) ("equal jitter"), plus the
	// time an attempt and the poll take.
	const slack = 300 * time.Millisecond
	logged := false
	for id, st := range sts {
		var at []time.Time
		var announced []time.Duration
		for _, ev := range st.Events {
			if ev.Status != "deferred" {
				continue
			}
			if !strings.Contains(ev.Detail, "connect failed") {
				t.Errorf("message %s deferred for another reason than the refused connection: %q", id, ev.Detail)
			}
			at = append(at, ev.At)
			m := nextAttemptIn.FindStringSubmatch(ev.Detail)
			if m == nil {
				t.Errorf("message %s: deferral without its next attempt: %q", id, ev.Detail)
				continue
			}
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Errorf("message %s: next attempt in %q: %v", id, m[1], err)
				continue
			}
			announced = append(announced, d)
		}
		var gaps []time.Duration
		for i := 1; i < len(at); i++ {
			gap := at[i].Sub(at[i-1])
			gaps = append(gaps, gap.Round(time.Millisecond))
			full := min(e.set.BackoffInitial<<(i-1), e.set.BackoffMax)
			if gap < full/2-slack || gap > full+slack {
				t.Errorf("message %s: gap %d is %v, want within [%v, %v] (+%v slack) for backoff %v..%v",
					id, i, gap, full/2, full, slack, e.set.BackoffInitial, e.set.BackoffMax)
			}
		}
		if len(gaps) >= 4 && gaps[len(gaps)-1] <= gaps[0] {
			t.Errorf("message %s: backoff did not grow: gaps %v", id, gaps)
		}
		for i, d := range announced {
			if d > e.set.BackoffMax {
				t.Errorf("message %s: announced wait %v is above backoff_max %v", id, d, e.set.BackoffMax)
			}
			// Every wait is at least backoff_initial/2 (100ms); "next
			// attempt in 0s" tells the reader of the status the retry is
			// immediate, which it is not.
			if d <= 0 {
				t.Errorf("message %s: deferral %d announces \"next attempt in %v\" for a wait of at least %v",
					id, i+1, d, e.set.BackoffInitial/2)
			}
			// And it says how long the wait really was (to the precision shown).
			if i < len(gaps) && (gaps[i] < d-500*time.Millisecond-slack || gaps[i] > d+500*time.Millisecond+slack) {
				t.Errorf("message %s: deferral %d announced %v, the next attempt came %v later", id, i+1, d, gaps[i])
			}
		}
		if !logged {
			logged = true
			t.Logf("message %s: gaps between deferrals %v; announced %v", id, gaps, announced)
		}
	}

	got := e.waitDelivered(ids, 30*time.Second)
	final := e.waitStatuses(p, ids, 30*time.Second)
	maxAttempts, failed := 0, 0
	for id, st := range final {
		if st.Status == "failed" {
			failed++
		}
		if st.Status != "sent" {
			t.Errorf("message %s ended %s after the outage, want sent (max_age %v not reached)", id, st.Status, e.set.MaxAge)
		}
		maxAttempts = max(maxAttempts, st.Attempts)
	}
	c := count(ids, got)
	if c.lost > 0 || c.duplicates > 0 || c.unaccepted > 0 {
		t.Errorf("after the outage: lost %d, duplicates %d, unknown %d", c.lost, c.duplicates, c.unaccepted)
	}
	t.Logf("fault: SMTP server refused for %v: requests=%d delivered=%d lost=%d duplicates=%d failed=%d max-attempts=%d",
		outage.Round(10*time.Millisecond), total, c.delivered, c.lost, c.duplicates, failed, maxAttempts)
}

func deferrals(st msgStatus) int {
	n := 0
	for _, ev := range st.Events {
		if ev.Status == "deferred" {
			n++
		}
	}
	return n
}

// TestSMTPOutageMaxAge keeps the SMTP server away for longer than a small
// max_age: the messages fail, with a reason that names max_age, and only
// after they were retried.
func TestSMTPOutageMaxAge(t *testing.T) {
	t.Parallel()
	const total = 3
	e := newEnv(t, settings{MaxAge: 3 * time.Second, BackoffInitial: 200 * time.Millisecond, BackoffMax: 1 * time.Second})
	p := e.start()
	e.fwd.Down()
	ids := e.mustSubmit(p, total)
	sts := e.waitStatuses(p, ids, 20*time.Second)
	for id, st := range sts {
		if st.Status != "failed" {
			t.Errorf("message %s ended %s, want failed after max_age", id, st.Status)
			continue
		}
		last := st.Events[len(st.Events)-1]
		if last.Status != "failed" || !strings.Contains(last.Detail, "max_age") || !strings.Contains(last.Detail, "connect failed") {
			t.Errorf("message %s: the failure does not say it ran out of max_age and why: %q", id, last.Detail)
		}
		age := last.At.Sub(st.CreatedAt)
		if st.Attempts < 3 || age > e.set.MaxAge+time.Second {
			t.Errorf("message %s failed after %d attempts and %v; want several attempts within max_age %v",
				id, st.Attempts, age, e.set.MaxAge)
		}
		t.Logf("message %s failed after %d attempts, %v after submission: %s", id, st.Attempts, age.Round(time.Millisecond), last.Detail)
	}
	if n := len(e.sim.Messages()); n != 0 {
		t.Errorf("the simulator received %d messages while it was unreachable", n)
	}
	e.waitCountsDrained(10 * time.Second) // failed messages no longer wait
	_, _, failed := mustDepth(e)
	t.Logf("fault: SMTP server refused past max_age %v: requests=%d failed=%d (dead letters kept: %d) delivered=0",
		e.set.MaxAge, total, len(sts), failed)
}
