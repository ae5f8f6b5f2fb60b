package limits_test

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/test/redistest"
)

const ttl = 2 * time.Minute

func acquire(t *testing.T, l *limits.Limiter, mb string) *limits.Lease {
	t.Helper()
	le, wait, err := l.AcquireConn(t.Context(), route, mb, 3, ttl)
	if err != nil || le == nil || wait != 0 {
		t.Fatalf("AcquireConn = %v, %v, %v; want a lease", le, wait, err)
	}
	return le
}

func refused(t *testing.T, l *limits.Limiter, mb string, want time.Duration) {
	t.Helper()
	le, wait, err := l.AcquireConn(t.Context(), route, mb, 3, ttl)
	if err != nil || le != nil || wait != want {
		t.Fatalf("AcquireConn = %v, %v, %v; want no lease and wait %v", le, wait, err, want)
	}
}

func TestConnSlots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	l1, _, l3 := acquire(t, b.a, mailbox), acquire(t, b.a, mailbox), acquire(t, b.a, mailbox)
	// The earliest lease expires in 2 min; the wait is capped.
	refused(t, b.a, mailbox, limits.MaxConnWait)
	if u, err := b.a.Usage(ctx, route, mailbox); err != nil || u.Connections != 3 {
		t.Fatalf("Usage = %+v, %v; want 3 connections", u, err)
	}
	if err := l3.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l3.Release(ctx); err != nil {
		t.Fatalf("second Release = %v, want nil", err)
	}
	acquire(t, b.a, mailbox)
	refused(t, b.a, mailbox, limits.MaxConnWait)

	// Close to the earliest expiry the wait is the time left.
	b.clock.Advance(ttl - 300*time.Millisecond)
	refused(t, b.a, mailbox, 300*time.Millisecond)
	if err := l1.Renew(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExpiredLeaseFreesItsSlot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	old := []*limits.Lease{acquire(t, b.a, mailbox), acquire(t, b.a, mailbox), acquire(t, b.a, mailbox)}
	b.clock.Advance(ttl - time.Millisecond)
	refused(t, b.b, mailbox, time.Millisecond)
	b.clock.Advance(time.Millisecond) // a lease expiring now is expired
	acquire(t, b.b, mailbox)
	// That acquire removed all three; their holders learn it on Renew.
	for i, le := range old {
		if err := le.Renew(ctx); !errors.Is(err, limits.ErrLeaseLost) {
			t.Fatalf("Renew of expired lease %d = %v, want ErrLeaseLost", i, err)
		}
	}
	acquire(t, b.b, mailbox)
	acquire(t, b.b, mailbox)
	refused(t, b.b, mailbox, limits.MaxConnWait)
}

func TestRenewKeepsLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	kept, lost := acquire(t, b.a, mailbox), acquire(t, b.a, mailbox)
	acquire(t, b.a, mailbox)
	b.clock.Advance(ttl / 2)
	if err := kept.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(ttl / 2) // the two others expire, kept has ttl/2 left
	acquire(t, b.b, mailbox)
	acquire(t, b.b, mailbox)
	refused(t, b.b, mailbox, limits.MaxConnWait)
	if err := lost.Renew(ctx); !errors.Is(err, limits.ErrLeaseLost) {
		t.Fatalf("Renew of a taken lease = %v, want ErrLeaseLost", err)
	}
	if err := kept.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kept.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kept.Renew(ctx); !errors.Is(err, limits.ErrLeaseLost) {
		t.Fatalf("Renew after Release = %v, want ErrLeaseLost", err)
	}
}

// A lease past its expiry that no acquire has removed was never replaced, so
// renewing it keeps the slot count right.
func TestRenewAfterExpiryBeforeTakeover(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	le, _, err := b.a.AcquireConn(ctx, route, mailbox, 1, ttl)
	if err != nil || le == nil {
		t.Fatalf("AcquireConn = %v, %v", le, err)
	}
	b.clock.Advance(2 * ttl)
	if err := le.Renew(ctx); err != nil {
		t.Fatalf("Renew = %v", err)
	}
	if le2, wait, err := b.b.AcquireConn(ctx, route, mailbox, 1, ttl); err != nil || le2 != nil || wait != limits.MaxConnWait {
		t.Fatalf("AcquireConn after the renewal = %v, %v, %v; want refused", le2, wait, err)
	}
}

// Two mailgate instances, two clients, one Redis: together they hold at
// most three leases. The mailbox is matched without regard to case.
func TestTwoInstancesShareSlots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	first := acquire(t, b.a, mailbox)
	acquire(t, b.a, mailbox)
	acquire(t, b.b, "Alerts@Contoso.com")
	refused(t, b.b, "ALERTS@CONTOSO.COM", limits.MaxConnWait)
	refused(t, b.a, mailbox, limits.MaxConnWait)
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	acquire(t, b.b, "alerts@contoso.com")
	refused(t, b.a, mailbox, limits.MaxConnWait)
}

// Ten goroutines on two instances take and give back slots as fast as they
// can. The held counter goes up after a lease is granted and down before it
// is released, so it never exceeds what Redis holds; it must stay at 3 or
// below, and so must what Usage reports while a lease is held.
func TestConnSlotsUnderContention(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	instances := []*limits.Limiter{limits.New(srv.Client(), "", nil), limits.New(srv.Client(), "", nil)}
	const max, rounds = 3, 30
	var held, most, refusals atomic.Int64
	var wg sync.WaitGroup
	for g := range 10 {
		l := instances[g%2]
		wg.Go(func() {
			for range rounds {
				var le *limits.Lease
				for le == nil {
					var err error
					le, _, err = l.AcquireConn(ctx, route, mailbox, max, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if le == nil {
						refusals.Add(1)
						runtime.Gosched()
					}
				}
				n := held.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				if u, err := l.Usage(ctx, route, mailbox); err != nil || u.Connections > max {
					t.Errorf("Usage while holding = %+v, %v", u, err)
				}
				held.Add(-1)
				if err := le.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("at most %d held at once; %d refusals", most.Load(), refusals.Load())
	if most.Load() > max {
		t.Fatalf("%d leases held at once, max %d", most.Load(), max)
	}
	if refusals.Load() == 0 {
		t.Fatal("no acquire was ever refused: the test did not contend")
	}
	if u, err := instances[0].Usage(ctx, route, mailbox); err != nil || u.Connections != 0 {
		t.Fatalf("Usage after all releases = %+v, %v", u, err)
	}
}
