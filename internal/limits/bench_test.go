package limits_test

import (
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/test/redistest"
)

// BenchmarkAdmitMessage measures an admitted message: the daily check, the
// GCRA and the recording, three round trips to a local Redis.
func BenchmarkAdmitMessage(b *testing.B) {
	l := limits.New(redistest.Start(b).Client(), "", nil)
	ctx := b.Context()
	lim := limits.Limits{MessagesPerMinute: 1 << 30, RecipientsPerDay: 1 << 40}
	for b.Loop() {
		if wait, err := l.AdmitMessage(ctx, route, mailbox, 3, lim); err != nil || wait != 0 {
			b.Fatalf("AdmitMessage = %v, %v", wait, err)
		}
	}
}

// BenchmarkAdmitMessageRefused measures the common refusal: Exchange's 30 a
// minute, already used (the daily check and the GCRA, two round trips).
func BenchmarkAdmitMessageRefused(b *testing.B) {
	l := limits.New(redistest.Start(b).Client(), "", nil)
	ctx := b.Context()
	lim := limits.Limits{MessagesPerMinute: 30, RecipientsPerDay: 10000}
	if _, err := l.AdmitMessage(ctx, route, mailbox, 3, lim); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if wait, err := l.AdmitMessage(ctx, route, mailbox, 3, lim); err != nil || wait == 0 {
			b.Fatalf("AdmitMessage = %v, %v", wait, err)
		}
	}
}

// BenchmarkAcquireRelease measures a connection slot taken and given back.
func BenchmarkAcquireRelease(b *testing.B) {
	l := limits.New(redistest.Start(b).Client(), "", nil)
	ctx := b.Context()
	for b.Loop() {
		le, _, err := l.AcquireConn(ctx, route, mailbox, 3, time.Minute)
		if err != nil || le == nil {
			b.Fatalf("AcquireConn = %v, %v", le, err)
		}
		if err := le.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
