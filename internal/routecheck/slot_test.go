package routecheck_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/syncbuf"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/routecheck"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

// While workers hold all three connections of the mailbox, the check takes
// no fourth one (Exchange would answer 432 4.3.2): it waits for a worker's
// slot from the limiter the workers share, and says plainly why when none
// frees up in time.
func TestCheckWaitsForTheWorkersConnectionSlots(t *testing.T) {
	t.Parallel()
	sim, cfg := setup(t)
	r := &cfg.Routes[0]
	const mbox = "relay@contoso.com"
	rs := redistest.Start(t)
	l := limits.New(rs.Client(), cfg.Redis.KeyPrefix, nil)
	ctx := context.Background()

	// Three workers deliver: each holds a slot and an authenticated session.
	var leases []*limits.Lease
	var sessions []*smtp.Client
	for range r.Limits.MaxConnections {
		lease, _, err := l.AcquireConn(ctx, r.Name, mbox, r.Limits.MaxConnections, time.Minute)
		if err != nil || lease == nil {
			t.Fatalf("worker slot: %v %v", lease, err)
		}
		leases = append(leases, lease)
		c := sim.DialTLS(t)
		if err := c.Auth(smtp.PlainAuth("", mbox, "pw", sim.Host(), false)); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, c)
	}

	// Without the shared limiter the check is the fourth connection.
	var alone bytes.Buffer
	if routecheck.Run(ctx, cfg, r, "", &alone, routecheck.Options{}) || !strings.Contains(alone.String(), "4.3.2") {
		t.Fatalf("a check outside the limiter should have met 432 4.3.2:\n%s", alone.String())
	}
	refusals := sim.Stats().Replies["4.3.2"]

	// With it, the check waits and then says why it gave up.
	var out bytes.Buffer
	if routecheck.Run(ctx, cfg, r, "", &out, routecheck.Options{Limiter: l, SlotWait: 200 * time.Millisecond}) {
		t.Fatalf("check passed with every slot taken:\n%s", out.String())
	}
	for _, want := range []string{"✗ slot", "all 3 connections of mailbox relay@contoso.com are in use by running mailgate workers", "fix:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	// A worker finishing while the check waits gives it its slot.
	var waiting syncbuf.Buffer
	done := make(chan bool, 1)
	go func() {
		done <- routecheck.Run(ctx, cfg, r, "", &waiting, routecheck.Options{Limiter: l, SlotWait: time.Minute})
	}()
	testwait.Until(t, 10*time.Second, func() bool { return strings.Contains(waiting.String(), "waiting up to") },
		"the check to say it waits for a slot; it wrote:\n%s", &waiting)
	if err := sessions[0].Quit(); err != nil {
		t.Fatal(err)
	}
	sim.WaitStats(t, 10*time.Second, "the worker's session to end", func(st exosim.Stats) bool {
		return st.ActiveConnections[mbox] == 2
	})
	if err := leases[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	var ok, finished bool
	testwait.Until(t, 10*time.Second, func() bool {
		select {
		case ok = <-done:
			finished = true
		default:
		}
		return finished
	}, "the check to finish")
	if !ok {
		t.Fatalf("check failed after a slot freed up:\n%s", waiting.String())
	}
	if n := sim.Stats().Replies["4.3.2"]; n != refusals {
		t.Errorf("Exchange refused %d more connections with 4.3.2", n-refusals)
	}
}
