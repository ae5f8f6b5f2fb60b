package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
)

func TestScheduledMessageIsDueAtSendAt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := message("body")
	sendAt := b.clock.Now().Add(time.Hour)
	m.SendAt = sendAt
	id, _, err := b.q.Enqueue(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.q.Get(ctx, "m365", id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != queue.StatusScheduled || st.SendAt == nil || !st.SendAt.Equal(sendAt) || st.NextAttempt == nil {
		t.Fatalf("status %+v", st)
	}
	if j, err := b.q.Claim(ctx, "m365", time.Minute); err != nil || j != nil {
		t.Fatalf("claimed before it was due: %v %v", j, err)
	}
	b.clock.Advance(time.Hour)
	j, err := b.q.Claim(ctx, "m365", time.Minute)
	if err != nil || j == nil || j.ID != id {
		t.Fatalf("not claimed when due: %v %v", j, err)
	}
	// max_age counts from send_at, not from the submission.
	if !j.CreatedAt.Equal(sendAt) {
		t.Errorf("CreatedAt %s, want %s", j.CreatedAt, sendAt)
	}
	// Taken: too late to cancel.
	var ns *queue.ErrNotScheduled
	if err := b.q.Cancel(ctx, "m365", "monitoring", id); !errors.As(err, &ns) || ns.Status != queue.StatusSending {
		t.Errorf("cancel of a taken message: %v", err)
	}
}

func TestCancelScheduledMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := message("body")
	m.SendAt = b.clock.Now().Add(time.Hour)
	id, _, err := b.q.Enqueue(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.q.Cancel(ctx, "m365", "billing", id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("another app cancelled it: %v", err)
	}
	if err := b.q.Cancel(ctx, "m365", "monitoring", id); err != nil {
		t.Fatal(err)
	}
	if err := b.q.Cancel(ctx, "m365", "monitoring", id); !queue.IsNotScheduled(err) {
		t.Errorf("second cancel: %v", err)
	}
	b.clock.Advance(2 * time.Hour)
	if j, err := b.q.Claim(ctx, "m365", time.Minute); err != nil || j != nil {
		t.Fatalf("a cancelled message was claimed: %v %v", j, err)
	}
	st, err := b.q.Get(ctx, "m365", id)
	if err != nil || st.Status != queue.StatusCancelled {
		t.Fatalf("status %+v %v", st, err)
	}
	// An immediate message is never scheduled.
	id2, _ := must2(b.q.Enqueue(ctx, message("now")))(t)
	if err := b.q.Cancel(ctx, "m365", "monitoring", id2); !queue.IsNotScheduled(err) {
		t.Errorf("cancel of a queued message: %v", err)
	}
	if err := b.q.Cancel(ctx, "m365", "monitoring", "nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("cancel of an unknown id: %v", err)
	}
}
