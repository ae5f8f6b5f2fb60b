package intake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
)

// AcceptMany answers each submission on its own, in order: refusals for
// the refused, ids for the stored (the first one's for a replayed key),
// and a *QueueError for each one Redis did not take.
func TestAcceptMany(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	q := queue.New(srv.Client(), queue.Options{})
	in := New(Options{Queue: q, RetryFor: 200 * time.Millisecond})
	pol := policy(t)
	ctx := context.Background()
	sub := func(head, key string) Submission {
		id := queue.NewID(time.Now())
		return Submission{ID: id, Message: raw(t, id, head), IdempotencyKey: key}
	}
	subs := []Submission{
		sub("From: alerts@alerts.contoso.com\r\n", "k1"),
		sub("From: alerts@alerts.contoso.com\r\nCc: x@gmail.com\r\n", ""),
		sub("From: alerts@alerts.contoso.com\r\n", ""),
		sub("From: alerts@alerts.contoso.com\r\n", "a\r\nb"),
		sub("From: alerts@alerts.contoso.com\r\n", "k1"),
	}
	out := in.AcceptMany(ctx, pol, subs)
	if len(out) != len(subs) {
		t.Fatalf("%d outcomes for %d submissions", len(out), len(subs))
	}
	var r *apppolicy.Refusal
	switch {
	case out[0].Err != nil || out[0].Result.ID != subs[0].ID || !out[0].Result.Created:
		t.Fatalf("first: %+v", out[0])
	case !errors.As(out[1].Err, &r) || r.Code != apppolicy.RecipientNotAllowed:
		t.Fatalf("recipient outside the policy: %+v", out[1])
	case out[2].Err != nil || out[2].Result.ID != subs[2].ID:
		t.Fatalf("third: %+v", out[2])
	case !errors.Is(out[3].Err, ErrIdempotencyKey):
		t.Fatalf("a two-line key: %+v", out[3])
	case out[4].Err != nil || out[4].Result.ID != subs[0].ID || out[4].Result.Created:
		t.Fatalf("a key used twice: %+v, want the first id", out[4])
	}
	if d, err := q.Depth(ctx, "m365"); err != nil || d.Ready != 2 {
		t.Fatalf("ready %d (%v), want 2", d.Ready, err)
	}

	srv.Stop()
	out = in.AcceptMany(ctx, pol, []Submission{sub("From: alerts@alerts.contoso.com\r\n", ""),
		sub("From: alerts@alerts.contoso.com\r\nCc: x@gmail.com\r\n", "")})
	var qe *QueueError
	if !errors.As(out[0].Err, &qe) || !errors.As(out[1].Err, &r) {
		t.Fatalf("Redis down: %+v, want a *QueueError then a refusal", out)
	}
}
