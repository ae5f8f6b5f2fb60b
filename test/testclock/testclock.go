// Package testclock is a clock that moves only when a test says so, for
// the Now func() time.Time that mailgate's packages take, so expiry, leases
// and rolling windows are tested without sleeping.
package testclock

import (
	"sync"
	"time"
)

// Clock is safe for use by a test and the code under test at once.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass c.Now where a func() time.Time is wanted.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
