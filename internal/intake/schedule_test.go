package intake

import (
	"context"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
)

// What a door adds besides the message reaches the queue: send_at and the
// lifetime of a key the door derived itself.
func TestAcceptPassesScheduleAndKeyTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rec := &recorder{Queue: queue.New(srv.Client(), queue.Options{})}
	in := New(Options{Queue: rec})
	ctx := context.Background()
	id := queue.NewID(time.Now())
	sendAt := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if _, err := in.Accept(ctx, policy(t), Submission{ID: id, Message: raw(t, id, "From: alerts@alerts.contoso.com\r\n"),
		IdempotencyKey: "derived", KeyTTL: 10 * time.Minute, SendAt: sendAt}); err != nil {
		t.Fatal(err)
	}
	if !rec.last.SendAt.Equal(sendAt) || rec.last.KeyTTL != 10*time.Minute {
		t.Errorf("queued with SendAt %s KeyTTL %s", rec.last.SendAt, rec.last.KeyTTL)
	}
	st, err := rec.Get(ctx, "m365", id)
	if err != nil || st.Status != queue.StatusScheduled {
		t.Fatalf("status %+v %v", st, err)
	}
	keys := srv.Client().Keys(ctx, "*idem*").Val()
	if len(keys) != 1 {
		t.Fatalf("idempotency keys %v", keys)
	}
	if ttl := srv.Client().PTTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > 10*time.Minute {
		t.Errorf("the derived key lives %s, want at most 10m", ttl)
	}
}
