package fault

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/testwait"
)

// TestRedisLostUnderWorkers kills Redis (SIGKILL) while the workers are
// delivering, keeps it away until every worker has found out, and starts it
// again on the same port and AOF. The workers must say so and retry, resume
// by themselves when Redis is back, and deliver every accepted message; the
// API answers 503 meanwhile and works again afterwards, all without
// restarting mailgate.
//
// A worker that finished an SMTP transaction while Redis was away cannot
// record it; the message is sent again after Redis returns. Such copies are
// counted and bounded by the number of workers.
func TestRedisLostUnderWorkers(t *testing.T) {
	t.Parallel()
	const total = 150
	e := newEnv(t, settings{Visibility: 2 * time.Second})
	e.fwd.SetLatency(5 * time.Millisecond)
	p := e.start()
	ids := e.mustSubmit(p, total)
	e.sim.WaitForMessages(t, 20, 30*time.Second)

	e.redis.Kill()
	killedAt := time.Now()
	atKill := len(e.sim.Messages())

	// Every worker notices: it finishes the message in hand, cannot record
	// it, and then cannot take the next one (or the connection slot it
	// asks for first).
	workersDown := func() int {
		seen := map[any]bool{}
		for _, l := range p.log.matching(func(l logLine) bool {
			return l.Msg == "Redis unreachable; retrying"
		}) {
			seen[l.Fields["worker"]] = true
		}
		return len(seen)
	}
	testwait.UntilNil(t, 20*time.Second, func() error {
		if n := workersDown(); n < e.set.Workers {
			return fmt.Errorf("only %d of %d workers reported Redis unreachable", n, e.set.Workers)
		}
		return nil
	})
	duringOutage := len(e.sim.Messages()) - atKill

	// The API says 503, not 500, while Redis is away.
	if a := e.submit(p, -1); a.err != nil || a.status != http.StatusServiceUnavailable || a.code != "queue_unavailable" {
		t.Errorf("submit with Redis away: %d %s %v; want 503 queue_unavailable", a.status, a.body, a.err)
	}
	req, err := http.NewRequest(http.MethodGet, p.base+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := e.do(req); a.err != nil || a.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis away: %d %s %v; want 503", a.status, a.body, a.err)
	}

	e.redis.Restart()
	down := time.Since(killedAt)
	if p.log.count(func(l logLine) bool { return l.Msg == "cannot take messages from the queue; retrying" }) > 0 {
		if _, ok := p.log.waitFor(10*time.Second, p.exited, func(l logLine) bool { return l.Msg == "queue reachable again" }); !ok {
			t.Errorf("no worker reported the queue reachable again within 10s of Redis' return")
		}
	}
	got := e.waitDelivered(ids, 60*time.Second)
	sts := e.waitStatuses(p, ids, 30*time.Second)
	for id, st := range sts {
		if st.Status != "sent" {
			t.Errorf("message %s ended %s, want sent", id, st.Status)
		}
	}
	unrecorded := p.log.unrecorded()
	c := count(ids, got)
	for _, id := range c.duplicated {
		if !unrecorded[id] {
			t.Errorf("message %s was delivered %d times although its outcome was recorded", id, got[id])
		}
	}
	if c.lost > 0 || c.unaccepted > 0 {
		t.Errorf("after Redis came back: lost %d, unknown %d", c.lost, c.unaccepted)
	}
	if c.duplicates > e.set.Workers {
		t.Errorf("%d duplicates from one Redis outage; at most one per worker (%d) was in hand", c.duplicates, e.set.Workers)
	}
	if ready, inflight, failed := mustDepth(e); ready+inflight+failed != 0 {
		t.Errorf("queue not empty afterwards: ready=%d inflight=%d failed=%d", ready, inflight, failed)
	}
	e.waitCountsDrained(10 * time.Second)
	t.Logf("fault: redis killed under the workers for %v: requests=%d delivered-before-kill=%d delivered-during-outage=%d "+
		"outcomes-not-recorded=%d delivered=%d lost=%d duplicates=%d",
		down.Round(10*time.Millisecond), total, atKill, duringOutage, len(unrecorded), c.delivered, c.lost, c.duplicates)
}
