package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
)

// The backlog's head is the earliest-due waiting message, not the oldest
// one: a deferred message waits for its backoff without being late.
func TestBacklogOldestDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	if bl, err := b.q.Backlog(ctx, "m365"); err != nil || bl.HasDue || bl.Depth != (queue.Depth{}) {
		t.Fatalf("empty route: Backlog = %+v, %v", bl, err)
	}

	t0 := b.clock.Now()
	if _, _, err := b.q.Enqueue(ctx, message("first\r\n")); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Minute)
	t1 := b.clock.Now()
	if _, _, err := b.q.Enqueue(ctx, message("second\r\n")); err != nil {
		t.Fatal(err)
	}
	bl, err := b.q.Backlog(ctx, "m365")
	if err != nil || !bl.HasDue || !bl.OldestDue.Equal(t0) || bl.Ready != 2 {
		t.Fatalf("two queued: Backlog = %+v, %v; want 2 ready, oldest due %v", bl, err, t0)
	}

	// The first is taken and deferred for ten minutes: the second, due at
	// t1, is now the head, and the taken one counted as sending meanwhile.
	j, err := b.q.Claim(ctx, "m365", time.Minute)
	if err != nil || j == nil {
		t.Fatalf("Claim = %v, %v", j, err)
	}
	if bl := must(b.q.Backlog(ctx, "m365"))(t); bl.Ready != 1 || bl.InFlight != 1 || !bl.OldestDue.Equal(t1) {
		t.Fatalf("one claimed: Backlog = %+v", bl)
	}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusDeferred, Due: t1.Add(10 * time.Minute), Attempted: true, Detail: "451 4.7.500"}); err != nil {
		t.Fatal(err)
	}
	bl, err = b.q.Backlog(ctx, "m365")
	if err != nil || bl.Ready != 2 || bl.InFlight != 0 || !bl.OldestDue.Equal(t1) {
		t.Fatalf("one deferred: Backlog = %+v, %v; want 2 ready, oldest due %v", bl, err, t1)
	}
}
