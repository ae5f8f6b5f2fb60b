package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
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

// slotKeeper holds a worker's connection slot: at most one, for one mailbox
// at a time, taken from the limiter every instance shares and renewed while
// held, so the worker's connection counts against Exchange's per-mailbox
// connection limit. A worker never keeps a connection without a slot.
type slotKeeper struct {
	limiter *limits.Limiter // nil: no shared limit
	route   *config.Route
	now     func() time.Time
	log     *slog.Logger

	lease *limits.Lease // nil when no slot is held
	name  string        // the limits name lease is for
	stop  func()        // stops lease's renewals
	// lost is set by the renewals when the lease expired while held (Redis
	// was away) and may be another's now.
	lost atomic.Bool
	// waitSince is when the keeper began waiting for a slot; a long wait is
	// logged once.
	waitSince  time.Time
	waitLogged bool
}

// ensure holds a slot for mailbox mbox, or says how long to wait for one.
func (k *slotKeeper) ensure(ctx context.Context, mbox string) (time.Duration, error) {
	most := k.route.Limits.MaxConnections
	if k.limiter == nil || most <= 0 {
		return 0, nil
	}
	name := mailbox.Limits(k.route, mbox)
	if k.lease != nil && k.name == name {
		return 0, nil
	}
	k.release(ctx)
	lease, wait, err := k.limiter.AcquireConn(ctx, k.route.Name, name, most, slotTTL)
	if err != nil {
		return 0, err
	}
	if lease == nil {
		if k.waitSince.IsZero() {
			k.waitSince = k.now()
		} else if waited := k.now().Sub(k.waitSince); waited > slotTTL && !k.waitLogged {
			k.log.Warn("waiting for a connection slot of the mailbox for longer than a slot lease lasts; "+
				"are other instances holding them all?", "mailbox", name, "waited", waited.Round(time.Second))
			k.waitLogged = true
		}
		return max(wait, 50*time.Millisecond), nil
	}
	k.waitSince, k.waitLogged = time.Time{}, false
	k.lease, k.name = lease, name
	k.lost.Store(false)
	k.stop = renewEvery(slotTTL/3, func(ctx context.Context) bool {
		if errors.Is(lease.Renew(ctx), limits.ErrLeaseLost) {
			k.log.Warn("a connection slot expired while held; the connection is closed before the next message")
			k.lost.Store(true)
			return true
		}
		return false
	})
	return 0, nil
}

// held reports whether a slot is held.
func (k *slotKeeper) held() bool { return k.lease != nil }

// wasLost reports whether the held slot expired while held.
func (k *slotKeeper) wasLost() bool { return k.lost.Load() }

// release gives the slot back.
func (k *slotKeeper) release(ctx context.Context) {
	if k.lease == nil {
		return
	}
	k.stop()
	if err := k.lease.Release(context.WithoutCancel(ctx)); err != nil {
		k.log.Warn("could not release a connection slot; it expires by itself", "err", err)
	}
	k.lease, k.stop = nil, nil
}
