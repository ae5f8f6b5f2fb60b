package limits

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// ErrLeaseLost means a connection lease expired and its slot was taken (or
// it was released): the connection no longer counts, so it must be closed.
var ErrLeaseLost = errors.New("connection lease lost")

// Lease is one connection slot of a mailbox, held while an SMTP connection is
// open.
type Lease struct {
	l   *Limiter
	key string
	id  string
	ttl time.Duration
}

// AcquireConn takes one of max connection slots of mailbox for ttl
// (DefaultLeaseTTL when ttl <= 0); max <= 0 means no limit, the lease is then
// only counted for Usage. When every slot is taken it returns a nil Lease and
// the time to wait before trying again (at most a second). The holder renews
// the lease every ttl/3 or so while the connection is open and releases it
// when the connection closes; a lease of a process that died expires by
// itself after ttl.
func (l *Limiter) AcquireConn(ctx context.Context, route, mailbox string, max int, ttl time.Duration) (*Lease, time.Duration, error) {
	k, err := l.keys(route, mailbox)
	if err != nil {
		return nil, 0, fmt.Errorf("acquire connection for %s on route %s: %w", mailbox, route, err)
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	id := rand.Text()
	now := l.now()
	wait, err := acquireScript.Run(ctx, l.rdb, []string{k.Conns},
		now.UnixMilli(), now.Add(ttl).UnixMilli(), id, max, maxConnWait.Milliseconds()).Int64()
	if err != nil {
		return nil, 0, fmt.Errorf("acquire connection for %s on route %s: %w", mailbox, route, err)
	}
	if wait > 0 {
		return nil, time.Duration(wait) * time.Millisecond, nil
	}
	return &Lease{l: l, key: k.Conns, id: id, ttl: ttl}, 0, nil
}

// Renew extends the lease by its TTL from now. It returns ErrLeaseLost when
// the lease is gone; the connection must then be closed, since another one
// may already use its slot.
func (le *Lease) Renew(ctx context.Context) error {
	now := le.l.now()
	ok, err := renewScript.Run(ctx, le.l.rdb, []string{le.key},
		now.UnixMilli(), now.Add(le.ttl).UnixMilli(), le.id).Int64()
	if err != nil {
		return fmt.Errorf("renew connection lease: %w", err)
	}
	if ok == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Release frees the lease's slot. Releasing a lease that was lost or already
// released is not an error.
func (le *Lease) Release(ctx context.Context) error {
	if err := le.l.rdb.ZRem(ctx, le.key, le.id).Err(); err != nil {
		return fmt.Errorf("release connection lease: %w", err)
	}
	return nil
}
