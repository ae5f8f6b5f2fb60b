package fault

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testwait"
)

// TestGracefulShutdown sends SIGTERM while messages are being delivered.
// /readyz must answer 503 while the process is still up (drain_delay), the
// process must exit 0 within shutdown.timeout, the workers must record the
// message each had in hand (nothing left "sending" or in flight), and a new
// process must deliver the rest: no loss, and no second copy, since nothing
// was interrupted.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	const total = 200
	e := newEnv(t, settings{DrainDelay: time.Second, ShutdownTimeout: 10 * time.Second})
	// 10ms a reply: about 50 messages a second with three workers, so the
	// drain delay does not empty the queue and the stop finds deliveries
	// in flight.
	e.fwd.SetLatency(10 * time.Millisecond)
	p := e.start()
	ids := e.mustSubmit(p, total)
	e.sim.WaitForMessages(t, 20, 30*time.Second)

	sent := time.Now()
	p.signal(syscall.SIGTERM)
	// /readyz turns 503 at once and stays reachable for the drain delay.
	var ready503 time.Duration
	if !testwait.Poll(e.set.DrainDelay, func() bool {
		req, err := http.NewRequest(http.MethodGet, p.base+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := e.do(req)
		switch {
		case a.err != nil:
			t.Fatalf("/readyz unreachable %v after SIGTERM, within the drain delay of %v: %v",
				time.Since(sent), e.set.DrainDelay, a.err)
		case a.status == http.StatusServiceUnavailable:
			ready503 = time.Since(sent)
			return true
		case a.status != http.StatusOK:
			t.Fatalf("/readyz: %d %s", a.status, a.body)
		}
		return false
	}) {
		t.Fatalf("/readyz never answered 503 during the drain delay")
	}
	code, exited := p.wait(e.set.ShutdownTimeout + 2*time.Second + exitDelay)
	took := time.Since(sent)
	if !exited {
		t.Fatalf("mailgate still runs %v after SIGTERM (shutdown.timeout %v)", took, e.set.ShutdownTimeout)
	}
	if code != 0 {
		t.Errorf("mailgate exited %d after SIGTERM, want 0", code)
	}
	if took < e.set.DrainDelay {
		t.Errorf("mailgate exited %v after SIGTERM, before its drain delay of %v", took, e.set.DrainDelay)
	}
	if _, ok := p.log.waitFor(0, p.exited, func(l logLine) bool { return l.Msg == "stopped" }); !ok {
		t.Errorf("mailgate did not log that it stopped")
	}
	atStop := len(e.sim.Messages())

	// What the stop left behind: nothing in flight, nothing "sending".
	ctx := context.Background()
	ready, inflight, _ := e.depth(ctx)
	if inflight != 0 {
		t.Errorf("%d messages left in flight by a graceful stop (their workers did not record them)", inflight)
	}
	sending := 0
	for _, id := range ids {
		if e.rdb.HGet(ctx, "mailgate:{"+route+"}:msg:"+id, "status").Val() == "sending" {
			sending++
		}
	}
	if sending != 0 {
		t.Errorf("%d messages left with status sending after a graceful stop", sending)
	}
	if atStop >= total {
		t.Logf("note: all %d messages were delivered before the process stopped", total)
	}

	p2 := e.start()
	got := e.waitDelivered(ids, 60*time.Second)
	sts := e.waitStatuses(p2, ids, 30*time.Second)
	for id, st := range sts {
		if st.Status != "sent" {
			t.Errorf("message %s ended %s, want sent", id, st.Status)
		}
	}
	c := count(ids, got)
	if c.lost > 0 || c.duplicates > 0 || c.unaccepted > 0 {
		t.Errorf("after a graceful stop: lost %d, duplicates %d, unknown %d; want none", c.lost, c.duplicates, c.unaccepted)
	}
	t.Logf("fault: SIGTERM during delivery: requests=%d readyz-503-after=%v exit=%d in %v delivered-before-stop=%d "+
		"queued-at-stop=%d inflight-at-stop=%d sending-at-stop=%d delivered=%d lost=%d duplicates=%d",
		total, ready503.Round(time.Millisecond), code, took.Round(10*time.Millisecond), atStop, ready, inflight, sending,
		c.delivered, c.lost, c.duplicates)
}

// TestShutdownTimeout sends SIGTERM while every worker is stuck in a slow
// SMTP session that cannot finish within shutdown.timeout. The process must
// still exit within the bound, and the messages its workers held — left
// "sending" in Redis — must be taken over by the next process once their
// leases expire: nothing stays "sending" forever, nothing is lost.
func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	const total = 6
	e := newEnv(t, settings{DrainDelay: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second, Visibility: 2 * time.Second})
	// 400ms a reply: opening a session (greeting, EHLO, STARTTLS, TLS,
	// EHLO, AUTH) alone takes several seconds.
	e.fwd.SetLatency(400 * time.Millisecond)
	p := e.start()
	ids := e.mustSubmit(p, total)
	e.sim.WaitStats(t, 10*time.Second, "connected by every worker", func(st exosim.Stats) bool {
		return st.Connections >= e.set.Workers
	})
	sent := time.Now()
	p.signal(syscall.SIGTERM)
	code, exited := p.wait(e.set.ShutdownTimeout + 3*time.Second + exitDelay)
	took := time.Since(sent)
	if !exited {
		t.Fatalf("mailgate still runs %v after SIGTERM with shutdown.timeout %v", took, e.set.ShutdownTimeout)
	}
	if took > e.set.ShutdownTimeout+time.Second+exitDelay {
		t.Errorf("mailgate took %v to stop, shutdown.timeout is %v", took, e.set.ShutdownTimeout)
	}
	ctx := context.Background()
	sending := 0
	for _, id := range ids {
		if e.rdb.HGet(ctx, "mailgate:{"+route+"}:msg:"+id, "status").Val() == "sending" {
			sending++
		}
	}
	if sending == 0 {
		t.Errorf("no message was left sending: the stop did not interrupt a delivery, the test proves nothing")
	}

	e.fwd.SetLatency(0)
	p2 := e.start()
	got := e.waitDelivered(ids, 30*time.Second)
	sts := e.waitStatuses(p2, ids, 30*time.Second)
	for id, st := range sts {
		if st.Status != "sent" {
			t.Errorf("message %s ended %s, want sent", id, st.Status)
		}
	}
	c := count(ids, got)
	if c.lost > 0 || c.unaccepted > 0 || c.duplicates > e.set.Workers {
		t.Errorf("after a timed-out stop: lost %d, unknown %d, duplicates %d", c.lost, c.unaccepted, c.duplicates)
	}
	t.Logf("fault: SIGTERM with deliveries stuck past shutdown.timeout %v: requests=%d exit=%d in %v sending-at-exit=%d "+
		"delivered=%d lost=%d duplicates=%d",
		e.set.ShutdownTimeout, total, code, took.Round(10*time.Millisecond), sending, c.delivered, c.lost, c.duplicates)
}
