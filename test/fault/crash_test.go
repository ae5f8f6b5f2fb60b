package fault

import (
	"context"
	"testing"
	"time"
)

// TestCrashRecovery kills mailgate with SIGKILL in the middle of a batch
// of 200 and starts a new process on the same Redis. Every message must
// arrive at least once; a second copy is the documented price of
// at-least-once and may only come from a message caught between the
// server's 250 and the worker's record — at most one per worker — and it
// carries the same Message-ID and bytes as the first.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	const total = 200
	e := newEnv(t, settings{Visibility: 2 * time.Second})
	// Each SMTP reply takes 3ms: a delivery lasts a known minimum, so the
	// kill surely finds messages in flight.
	e.fwd.SetLatency(3 * time.Millisecond)
	p := e.start()
	ids := e.mustSubmit(p, total)

	e.sim.WaitForMessages(t, total/4, 30*time.Second)
	p.kill()
	atKill := len(e.sim.Messages())
	if atKill >= total {
		t.Fatalf("all %d messages were delivered before the kill; the test did not crash anything mid-batch", total)
	}
	ctx := context.Background()
	_, inflight, _ := e.depth(ctx)
	// The only messages that may arrive twice: taken by a worker of the
	// dead process and already accepted by the server when it died.
	mayRepeat := map[string]bool{}
	deliveredAtKill := e.deliveries()
	for _, id := range e.rdb.ZRange(ctx, "mailgate:{"+route+"}:inflight", 0, -1).Val() {
		if deliveredAtKill[id] > 0 {
			mayRepeat[id] = true
		}
	}

	started := time.Now()
	p2 := e.start()
	got := e.waitDelivered(ids, 60*time.Second)
	recovered := time.Since(started)
	sts := e.waitStatuses(p2, ids, 30*time.Second)
	for id, st := range sts {
		if st.Status != "sent" {
			t.Errorf("message %s ended %s, want sent", id, st.Status)
		}
	}
	c := count(ids, got)
	if c.lost > 0 || c.unaccepted > 0 {
		t.Errorf("lost %d, unknown %d", c.lost, c.unaccepted)
	}
	for _, id := range c.duplicated {
		if !mayRepeat[id] {
			t.Errorf("message %s was delivered %d times but was not in the hands of a worker with its 250 when the process died",
				id, got[id])
		}
	}
	if c.duplicates > e.set.Workers {
		t.Errorf("%d duplicates after one crash, more than the %d workers could have had in flight", c.duplicates, e.set.Workers)
	}
	if ready, inflight, failed := mustDepth(e); ready+inflight+failed != 0 {
		t.Errorf("queue not empty afterwards: ready=%d inflight=%d failed=%d", ready, inflight, failed)
	}
	e.waitCountsDrained(10 * time.Second)
	t.Logf("fault: SIGKILL mid-batch: requests=%d delivered-before-kill=%d inflight-at-kill=%d (with their 250: %d) "+
		"delivered=%d lost=%d duplicates=%d (workers=%d) recovered-in=%v",
		total, atKill, inflight, len(mayRepeat), c.delivered, c.lost, c.duplicates, e.set.Workers,
		recovered.Round(10*time.Millisecond))
}

func mustDepth(e *env) (ready, inflight, failed int64) {
	return e.depth(context.Background())
}
