package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/mailbox"
)

// slotTTL is how long a connection slot outlives its holder: a process that
// dies (kill -9) blocks its slots for at most this long. The holder renews
// it every slotTTL/3 while it lives, even in the middle of a long DATA.
// Instances' clocks must agree to well within this (NTP does).
const slotTTL = 15 * time.Second

// SlotsBusyError means every connection slot of a mailbox stayed taken for
// as long as the caller was willing to wait: the workers of running mailgate
// instances hold them.
type SlotsBusyError struct {
	Mailbox string // the limits name: the mailbox, or "*" for a route without AUTH
	Max     int
	Waited  time.Duration
}

func (e *SlotsBusyError) Error() string {
	return fmt.Sprintf("all %d connections of mailbox %s are in use by running mailgate workers "+
		"(waited %s for one to free up); Exchange Online would refuse another one with 432 4.3.2",
		e.Max, e.Mailbox, e.Waited)
}

// HoldSlot takes a connection slot of mailbox on route r from the limiter
// the workers share, so a connection opened outside the workers (the route
// check) counts against the same Exchange budget and neither it nor a worker
// runs into 432 4.3.2. It waits up to patience for a slot, telling waiting
// (when not nil) once that it waits, and then returns a *SlotsBusyError.
// The slot is renewed until release is called. With no limiter, or no
// connection limit on the route, there is nothing to take.
func HoldSlot(ctx context.Context, l *limits.Limiter, r *config.Route, mbox string, patience time.Duration,
	waiting func(max int)) (release func(), err error) {
	most := r.Limits.MaxConnections
	if l == nil || most <= 0 {
		return func() {}, nil
	}
	name := mailbox.Limits(r, mbox)
	giveUp := time.NewTimer(patience)
	defer giveUp.Stop()
	for {
		lease, wait, err := l.AcquireConn(ctx, r.Name, name, most, slotTTL)
		if err != nil {
			return nil, err
		}
		if lease != nil {
			stop := renewEvery(slotTTL/3, func(ctx context.Context) bool {
				return errors.Is(lease.Renew(ctx), limits.ErrLeaseLost)
			})
			return func() {
				stop()
				_ = lease.Release(context.Background()) // else it expires by itself
			}, nil
		}
		if waiting != nil {
			waiting(most)
			waiting = nil
		}
		t := time.NewTimer(max(wait, 50*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-giveUp.C:
			t.Stop()
			return nil, &SlotsBusyError{Mailbox: name, Max: most, Waited: patience}
		case <-t.C:
		}
	}
}
