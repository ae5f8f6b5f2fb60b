package exosim

import (
	"maps"
	"sync"
	"time"
)

// limiter keeps Exchange Online's per-mailbox counters: concurrent
// connections, messages in a rolling minute and recipients in a rolling day.
// The key is the authenticated mailbox in submission mode and the MAIL FROM
// address in connector mode, always lower case.
type limiter struct {
	maxConns     int
	perMinute    int
	rcptsPerDay  int
	mu           sync.Mutex
	active       map[string]int
	maxActive    map[string]int
	sends        map[string][]send
	maxPerMinute map[string]int
	overMinute   map[string]int
	notify       func() // called after every change, outside mu
}

// send is one accepted message, kept for a rolling day.
type send struct {
	at    time.Time
	rcpts int
}

func newLimiter(o Options, notify func()) *limiter {
	return &limiter{
		notify:       notify,
		maxConns:     o.MaxConnectionsPerMailbox,
		perMinute:    o.MessagesPerMinute,
		rcptsPerDay:  o.RecipientsPerDay,
		active:       make(map[string]int),
		maxActive:    make(map[string]int),
		sends:        make(map[string][]send),
		maxPerMinute: make(map[string]int),
		overMinute:   make(map[string]int),
	}
}

// acquire takes a connection slot for key, or reports that all are taken.
func (l *limiter) acquire(key string) bool {
	l.mu.Lock()
	ok := l.active[key] < l.maxConns
	if ok {
		l.active[key]++
		l.maxActive[key] = max(l.maxActive[key], l.active[key])
	}
	l.mu.Unlock()
	l.notify()
	return ok
}

func (l *limiter) release(key string) {
	l.mu.Lock()
	l.active[key]--
	if l.active[key] <= 0 {
		delete(l.active, key)
	}
	l.mu.Unlock()
	l.notify()
}

// admit records a message of rcpts recipients at now, unless it would take
// key past its rolling-day recipient quota. Messages beyond the per-minute
// rate are admitted and counted: Exchange delays them rather than refusing.
func (l *limiter) admit(key string, rcpts int, now time.Time) bool {
	defer l.notify()
	l.mu.Lock()
	defer l.mu.Unlock()
	dayAgo, minuteAgo := now.Add(-24*time.Hour), now.Add(-time.Minute)
	kept := l.sends[key][:0]
	day, minute := 0, 0
	for _, s := range l.sends[key] {
		if !s.at.After(dayAgo) {
			continue
		}
		kept = append(kept, s)
		day += s.rcpts
		if s.at.After(minuteAgo) {
			minute++
		}
	}
	l.sends[key] = kept
	if day+rcpts > l.rcptsPerDay {
		return false
	}
	l.sends[key] = append(l.sends[key], send{at: now, rcpts: rcpts})
	if minute >= l.perMinute {
		l.overMinute[key]++
	}
	l.maxPerMinute[key] = max(l.maxPerMinute[key], minute+1)
	return true
}

func (l *limiter) snapshot(st *Stats) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st.MaxConcurrent = maps.Clone(l.maxActive)
	st.ActiveConnections = maps.Clone(l.active)
	st.MaxMessagesInAnyMinute = maps.Clone(l.maxPerMinute)
	st.OverMinuteLimit = maps.Clone(l.overMinute)
}
