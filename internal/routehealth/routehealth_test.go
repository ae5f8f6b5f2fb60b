package routehealth_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/routehealth"
	"github.com/mailgate/mailgate/test/redistest"
)

func TestHoldAndRelease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	a := routehealth.New(srv.Client(), "mailgate", func() time.Time { return now })
	b := routehealth.New(srv.Client(), "mailgate", nil) // another instance
	ctx := context.Background()

	if held, _, _, err := b.State(ctx, "m365"); err != nil || held {
		t.Fatalf("fresh route held=%v err=%v", held, err)
	}
	if err := a.Hold(ctx, "m365", "535 5.7.139 SMTP AUTH disabled"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if err := a.Hold(ctx, "m365", "535 5.7.139 still disabled"); err != nil {
		t.Fatal(err)
	}
	held, reason, since, err := b.State(ctx, "m365")
	if err != nil || !held || reason != "535 5.7.139 still disabled" || !since.Equal(now.Add(-time.Minute)) {
		t.Fatalf("held=%v reason=%q since=%v err=%v", held, reason, since, err)
	}
	if held, _, _, err := b.State(ctx, "relay"); err != nil || held {
		t.Fatalf("holding one route held another: held=%v err=%v", held, err)
	}
	if err := b.Release(ctx, "m365"); err != nil {
		t.Fatal(err)
	}
	if held, _, _, err := a.State(ctx, "m365"); err != nil || held {
		t.Fatalf("still held after release: held=%v err=%v", held, err)
	}
}

func TestOneProbePerInterval(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := routehealth.New(srv.Client(), "mailgate", nil)
	b := routehealth.New(srv.Client(), "mailgate", nil)
	ctx := context.Background()
	first, err := a.TryProbe(ctx, "m365", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.TryProbe(ctx, "m365", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !first || second {
		t.Fatalf("probes granted: %v, %v; want exactly the first", first, second)
	}
}

func TestMailboxWait(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	h := routehealth.New(srv.Client(), "mailgate", nil)
	ctx := context.Background()
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := h.HoldMailbox(ctx, "m365", "Alice@Contoso.com", until, "quota"); err != nil {
		t.Fatal(err)
	}
	got, reason, err := h.MailboxWait(ctx, "m365", "alice@contoso.com")
	if err != nil || !got.Equal(until) || reason != "quota" {
		t.Fatalf("wait %v %q %v", got, reason, err)
	}
	if got, _, err := h.MailboxWait(ctx, "m365", "bob@contoso.com"); err != nil || !got.IsZero() {
		t.Fatalf("another mailbox waits too: until %v, err %v", got, err)
	}
	if ttl := srv.Client().TTL(ctx, "mailgate:{m365}:mailbox-wait:alice@contoso.com").Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("the wait does not expire by itself: TTL %v", ttl)
	}
}
