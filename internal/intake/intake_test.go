package intake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
)

func policy(t *testing.T) *apppolicy.Policy {
	t.Helper()
	p, err := apppolicy.Compile(apppolicy.Spec{App: "mon", Route: "m365", DefaultFrom: "alerts@alerts.contoso.com",
		FromAllowed: []string{"*@alerts.contoso.com"}, Recipients: []string{"*@contoso.com"}, MaxRecipients: 5, MaxBytes: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func raw(t *testing.T, id, head string) *compose.Message {
	t.Helper()
	msg, err := compose.ParseRaw([]byte(head+"To: ops@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"),
		compose.Options{Now: time.Unix(1_800_000_000, 0), MessageIDLocal: id})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// recorder passes messages to the real queue and keeps the last one, whose
// envelope sender the status API does not show.
type recorder struct {
	*queue.Queue
	last queue.Message
}

func (r *recorder) EnqueueRetrying(ctx context.Context, m queue.Message, within time.Duration) (string, bool, error) {
	r.last = m
	return r.Queue.EnqueueRetrying(ctx, m, within)
}

func TestAccept(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	q := queue.New(srv.Client(), queue.Options{})
	rec := &recorder{Queue: q}
	in := New(Options{Queue: rec})
	pol := policy(t)
	ctx := context.Background()

	refusals := []struct {
		name  string
		sub   Submission
		code  apppolicy.Code
		field string
	}{
		{"Sender outside the policy", Submission{ID: "r1", Message: raw(t, "r1", "From: alerts@alerts.contoso.com\r\nSender: ceo@contoso.com\r\n")},
			apppolicy.FromNotAllowed, "headers.Sender"},
		{"envelope sender outside the policy", Submission{ID: "r2", Message: raw(t, "r2", "From: alerts@alerts.contoso.com\r\n"), EnvelopeFrom: "bounce@contoso.com"},
			apppolicy.FromNotAllowed, "envelope_from"},
		{"recipient outside the policy", Submission{ID: "r3", Message: raw(t, "r3", "From: alerts@alerts.contoso.com\r\nCc: x@gmail.com\r\n")},
			apppolicy.RecipientNotAllowed, "to"},
	}
	for _, tt := range refusals {
		_, err := in.Accept(ctx, pol, tt.sub)
		var r *apppolicy.Refusal
		if !errors.As(err, &r) || r.Code != tt.code || r.Fields[0].Field != tt.field {
			t.Errorf("%s: %v, want %s naming %s", tt.name, err, tt.code, tt.field)
		}
	}
	if _, err := in.Accept(ctx, pol, Submission{ID: "k", Message: raw(t, "k", "From: alerts@alerts.contoso.com\r\n"),
		IdempotencyKey: "a\r\nb"}); !errors.Is(err, ErrIdempotencyKey) {
		t.Errorf("a two-line key: %v", err)
	}
	if n := srv.Client().DBSize(ctx).Val(); n != 0 {
		t.Fatalf("refused submissions stored %d keys", n)
	}

	id := queue.NewID(time.Now())
	res, err := in.Accept(ctx, pol, Submission{ID: id, Message: raw(t, id, "From: Alerts <alerts@alerts.contoso.com>\r\n"),
		EnvelopeFrom: "bounces@alerts.contoso.com", IdempotencyKey: "once"})
	if err != nil || res.ID != id || !res.Created {
		t.Fatalf("Accept = %+v, %v", res, err)
	}
	st, err := q.Get(ctx, "m365", id)
	if err != nil {
		t.Fatal(err)
	}
	if st.From != `"Alerts" <alerts@alerts.contoso.com>` || st.App != "mon" || st.Route != "m365" {
		t.Errorf("stored from %q app %q route %q", st.From, st.App, st.Route)
	}
	if rec.last.From != "bounces@alerts.contoso.com" {
		t.Errorf("envelope sender %q, want the MAIL FROM given", rec.last.From)
	}
	again := queue.NewID(time.Now())
	res, err = in.Accept(ctx, pol, Submission{ID: again, Message: raw(t, again, "From: alerts@alerts.contoso.com\r\n"), IdempotencyKey: "once"})
	if err != nil || res.ID != id || res.Created {
		t.Errorf("replay: %+v, %v; want the first id, not created", res, err)
	}

	srv.Stop()
	short := New(Options{Queue: q, RetryFor: 200 * time.Millisecond})
	down := queue.NewID(time.Now())
	_, err = short.Accept(ctx, pol, Submission{ID: down, Message: raw(t, down, "From: alerts@alerts.contoso.com\r\n")})
	var qe *QueueError
	if !errors.As(err, &qe) || qe.ID != down {
		t.Errorf("Redis down: %v, want a *QueueError for %s", err, down)
	}
}

// The policy's queue limits reach the enqueue: over the route's limit a
// *FullError for the route, over the app's share one for the app, nothing
// stored either way.
func TestAcceptWithinQueueLimits(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	q := queue.New(srv.Client(), queue.Options{})
	in := New(Options{Queue: q})
	ctx := context.Background()
	limited := func(l apppolicy.QueueLimits) *apppolicy.Policy {
		p, err := apppolicy.Compile(apppolicy.Spec{App: "mon", Route: "m365", DefaultFrom: "alerts@alerts.contoso.com",
			MaxRecipients: 5, MaxBytes: 10_000, Queue: l})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	submit := func(pol *apppolicy.Policy) (string, error) {
		id := queue.NewID(time.Now())
		_, err := in.Accept(ctx, pol, Submission{ID: id, Message: raw(t, id, "From: alerts@alerts.contoso.com\r\n")})
		return id, err
	}
	if _, err := submit(limited(apppolicy.QueueLimits{RouteMessages: 1})); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		pol   *apppolicy.Policy
		app   bool
		cause error
	}{
		{"route full", limited(apppolicy.QueueLimits{RouteMessages: 1}), false, queue.ErrRouteFull},
		{"app's share full", limited(apppolicy.QueueLimits{RouteMessages: 10, AppBytes: 10}), true, queue.ErrAppFull},
	} {
		id, err := submit(tt.pol)
		var full *FullError
		if !errors.As(err, &full) || full.App != tt.app || full.ID != id || full.RetryAfter != QueueFullRetryAfter || !errors.Is(err, tt.cause) {
			t.Errorf("%s: %v, want a *FullError (app %v) for %s", tt.name, err, tt.app, id)
		}
		if ok, err := q.Exists(ctx, "m365", id); err != nil || ok {
			t.Errorf("%s: the refused message was stored (%v)", tt.name, err)
		}
	}
}
