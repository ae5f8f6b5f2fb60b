package exosim

import (
	"crypto/rand"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// What tests observe: accepted messages, counters, and waiting for them.
// Every change closes s.changed, which is how waiters wake without polling.

// Messages returns a copy of the accepted messages, oldest first.
func (s *Sim) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneMessages(s.messages)
}

// WaitForMessages waits until at least n messages were accepted and returns
// them all; after timeout it fails the test, saying what did arrive.
func (s *Sim) WaitForMessages(tb testing.TB, n int, timeout time.Duration) []Message {
	tb.Helper()
	var got []Message
	if !s.waitFor(timeout, func() bool { got = s.Messages(); return len(got) >= n }) {
		tb.Fatalf("exosim: want %d messages within %v, got %d; refusals and scripted replies so far: %v",
			n, timeout, len(got), s.Stats().Replies)
	}
	return got
}

// WaitIdle waits until no SMTP connection is open, and fails the test after
// timeout: the check that a client closes what it opens.
func (s *Sim) WaitIdle(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	s.WaitStats(tb, timeout, "no open SMTP connection", func(st Stats) bool { return st.OpenConnections == 0 })
}

// WaitStats waits until cond holds for the counters and returns them; after
// timeout it fails the test with what, the condition in words, and the
// counters.
func (s *Sim) WaitStats(tb testing.TB, timeout time.Duration, what string, cond func(Stats) bool) Stats {
	tb.Helper()
	var st Stats
	if !s.waitFor(timeout, func() bool { st = s.Stats(); return cond(st) }) {
		tb.Fatalf("exosim: still not %s after %v: %+v", what, timeout, st)
	}
	return st
}

// waitFor evaluates cond after every change until it holds or timeout
// passes. cond must not hold s.mu.
func (s *Sim) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		// Take the signal before looking, so a change in between is not missed.
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		Connections:     s.connections,
		OpenConnections: len(s.conns),
		Auths:           s.auths,
		AuthFailures:    s.authFails,
		Drops:           s.drops,
		Messages:        len(s.messages),
		Replies:         maps.Clone(s.replies),
	}
	s.mu.Unlock()
	s.limits.snapshot(&st)
	return st
}

// record stores an accepted message and returns its queue id.
func (s *Sim) record(m Message) string {
	m.At = s.opt.Now()
	m.Rcpt = append([]string(nil), m.Rcpt...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	s.broadcast()
	return fmt.Sprintf("%s@exosim", rand.Text()[:16])
}

// refuse counts a reply the simulator chose and returns it for go-smtp.
func (s *Sim) refuse(e *smtp.SMTPError) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies[enhancedString(e.Code, e.EnhancedCode)]++
	s.broadcast()
	return e
}

func (s *Sim) countAuth()        { s.count(&s.auths) }
func (s *Sim) countAuthFailure() { s.count(&s.authFails) }
func (s *Sim) countDrop()        { s.count(&s.drops) }

func (s *Sim) count(n *int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*n++
	s.broadcast()
}

// notify wakes every waiter.
func (s *Sim) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcast()
}

// broadcast wakes every waiter; s.mu must be held.
func (s *Sim) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func cloneMessages(ms []Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		m.Rcpt = append([]string(nil), m.Rcpt...)
		m.Data = append([]byte(nil), m.Data...)
		out[i] = m
	}
	return out
}
