package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testclock"
)

type bundle struct {
	q     *queue.Queue
	clock *testclock.Clock
	srv   *redistest.Server
}

func setup(t *testing.T) bundle {
	t.Helper()
	srv := redistest.Start(t)
	c := testclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	q := queue.New(srv.Client(), queue.Options{Retention: time.Hour, Now: c.Now})
	return bundle{q: q, clock: c, srv: srv}
}

func message(body string) queue.Message {
	return queue.Message{
		App: "monitoring", Route: "m365", From: "alerts@contoso.com",
		HeaderFrom: "Alerts <alerts@contoso.com>", Recipients: []string{"ops@contoso.com", "jane@contoso.com"},
		To: []string{"ops@contoso.com"}, Subject: "Disk full", MessageID: "x@contoso.com",
		Body: []byte(body), Metadata: map[string]string{"ticket": "4711"},
	}
}

func TestEnqueueClaimComplete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	id, created, err := b.q.Enqueue(ctx, message("hello\r\n"))
	if err != nil || !created || !queue.ValidID(id) {
		t.Fatalf("Enqueue = %q, %v, %v", id, created, err)
	}
	st, err := b.q.Get(ctx, "m365", id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != queue.StatusQueued || st.App != "monitoring" || st.Subject != "Disk full" || len(st.Events) != 1 {
		t.Fatalf("status after enqueue: %+v", st)
	}

	j, err := b.q.Claim(ctx, "m365", time.Minute)
	if err != nil || j == nil {
		t.Fatalf("Claim = %v, %v", j, err)
	}
	if j.ID != id || string(j.Body) != "hello\r\n" || len(j.Recipients) != 2 || j.From != "alerts@contoso.com" {
		t.Fatalf("claimed job: %+v", j)
	}
	if again := must(b.q.Claim(ctx, "m365", time.Minute))(t); again != nil {
		t.Fatalf("a claimed message was handed out twice: %+v", again)
	}
	if st := must(b.q.Get(ctx, "m365", id))(t); st.Status != queue.StatusSending {
		t.Fatalf("status while claimed = %s", st.Status)
	}

	resp := &queue.Response{Code: 250, EnhancedCode: "2.0.0", Text: "OK queued"}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true, Response: resp, Detail: "250 2.0.0 OK"}); err != nil {
		t.Fatal(err)
	}
	st = must(b.q.Get(ctx, "m365", id))(t)
	if st.Status != queue.StatusSent || st.Attempts != 1 || st.LastResponse == nil || st.LastResponse.Code != 250 || len(st.Events) != 2 {
		t.Fatalf("status after sent: %+v", st)
	}
	// Finished messages expire after the retention, and their body is dropped.
	rdb := b.srv.Client()
	ttl := rdb.PTTL(ctx, "mailgate:{m365}:msg:"+id).Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Fatalf("TTL of a sent message = %v, want (0, 1h]", ttl)
	}
	if rdb.HExists(ctx, "mailgate:{m365}:msg:"+id, "body").Val() {
		t.Fatal("the body of a sent message is still stored")
	}
	d := must(b.q.Depth(ctx, "m365"))(t)
	if d != (queue.Depth{}) {
		t.Fatalf("depth after sent = %+v", d)
	}
}

func TestIdempotencyKeyReturnsFirstID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := message("a")
	m.IdempotencyKey = "order-4711"
	id1, created1, err := b.q.Enqueue(ctx, m)
	if err != nil || !created1 {
		t.Fatal(err)
	}
	id2, created2, err := b.q.Enqueue(ctx, m)
	if err != nil || created2 || id2 != id1 {
		t.Fatalf("second Enqueue = %q, %v, %v; want %q, false", id2, created2, err, id1)
	}
	other := m
	other.App = "billing"
	id3, created3 := must2(b.q.Enqueue(ctx, other))(t)
	if !created3 || id3 == id1 {
		t.Fatal("another app's identical key must not collide")
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d.Ready != 2 {
		t.Fatalf("ready = %d, want 2", d.Ready)
	}
}

func TestExpiredLeaseIsTakenOverAndFenced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id, _ := must2(b.q.Enqueue(ctx, message("x")))(t)

	dead := must(b.q.Claim(ctx, "m365", 30*time.Second))(t)
	if dead == nil {
		t.Fatal("nothing claimed")
	}
	b.clock.Advance(29 * time.Second)
	if j := must(b.q.Claim(ctx, "m365", 30*time.Second))(t); j != nil {
		t.Fatal("taken over before the lease expired")
	}
	b.clock.Advance(2 * time.Second)
	second, err := b.q.Claim(ctx, "m365", 30*time.Second)
	if err != nil || second == nil || second.ID != id {
		t.Fatalf("after expiry Claim = %+v, %v", second, err)
	}
	if second.Attempts != 1 {
		t.Fatalf("the lost attempt was not counted: attempts = %d", second.Attempts)
	}
	// The first worker wakes up late: none of its writes may count.
	if err := b.q.Extend(ctx, dead, time.Minute); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("Extend by the dead worker = %v, want ErrLeaseLost", err)
	}
	if err := b.q.Complete(ctx, dead, queue.Outcome{Status: queue.StatusFailed, Attempted: true}); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("Complete by the dead worker = %v, want ErrLeaseLost", err)
	}
	if err := b.q.Complete(ctx, second, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	st := must(b.q.Get(ctx, "m365", id))(t)
	if st.Status != queue.StatusSent || st.Attempts != 2 {
		t.Fatalf("final status %+v", st)
	}
}

func TestExtendKeepsLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	must2(b.q.Enqueue(ctx, message("x")))(t)
	j := must(b.q.Claim(ctx, "m365", 30*time.Second))(t)
	b.clock.Advance(20 * time.Second)
	if err := b.q.Extend(ctx, j, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(20 * time.Second) // 40s after the claim, 20s after the extension
	if other := must(b.q.Claim(ctx, "m365", 30*time.Second))(t); other != nil {
		t.Fatal("an extended lease was taken over")
	}
}

func TestDeferredWaitsUntilDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id, _ := must2(b.q.Enqueue(ctx, message("x")))(t)
	j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
	err := b.q.Complete(ctx, j, queue.Outcome{
		Status: queue.StatusDeferred, Attempted: true, Due: b.clock.Now().Add(time.Minute),
		Response:   &queue.Response{Code: 451, EnhancedCode: "4.7.500", Text: "Server busy"},
		Recipients: []string{"jane@contoso.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := must(b.q.Get(ctx, "m365", id))(t)
	if st.Status != queue.StatusDeferred || st.NextAttempt == nil || !st.NextAttempt.Equal(b.clock.Now().Add(time.Minute)) {
		t.Fatalf("deferred status: %+v", st)
	}
	if j := must(b.q.Claim(ctx, "m365", time.Minute))(t); j != nil {
		t.Fatal("claimed before due")
	}
	b.clock.Advance(time.Minute)
	j = must(b.q.Claim(ctx, "m365", time.Minute))(t)
	if j == nil || len(j.Recipients) != 1 || j.Recipients[0] != "jane@contoso.com" || j.Attempts != 1 {
		t.Fatalf("claim when due: %+v", j)
	}
}

func TestHandBackWithoutAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id, _ := must2(b.q.Enqueue(ctx, message("x")))(t)
	j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusQueued, Due: b.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	st := must(b.q.Get(ctx, "m365", id))(t)
	if st.Status != queue.StatusQueued || st.Attempts != 0 || len(st.Events) != 1 {
		t.Fatalf("handed back: %+v", st)
	}
}

func TestFailedIsKeptAsDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id, _ := must2(b.q.Enqueue(ctx, message("body")))(t)
	j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Attempted: true,
		Response: &queue.Response{Code: 550, EnhancedCode: "5.7.60", Text: "no send as"}}); err != nil {
		t.Fatal(err)
	}
	d := must(b.q.Depth(ctx, "m365"))(t)
	if d.Failed != 1 || d.Ready != 0 || d.InFlight != 0 {
		t.Fatalf("depth %+v", d)
	}
	if !b.srv.Client().HExists(ctx, "mailgate:{m365}:msg:"+id, "body").Val() {
		t.Fatal("a failed message lost its body; it could not be re-queued")
	}
}

func TestGetUnknownAndMalformedIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, id := range []string{queue.NewID(time.Now()), "../../etc", "", "x*"} {
		if _, err := b.q.Get(ctx, "m365", id); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestIDsSortByTimeAndDiffer(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := queue.NewID(t0), queue.NewID(t0.Add(time.Millisecond))
	if !(a < b) || a == queue.NewID(t0) {
		t.Fatalf("ids %s %s", a, b)
	}
}

// A worker whose lease ran out while it could not reach Redis still records
// its outcome when no other worker has taken the message since: no second
// delivery. (When another worker has taken it, the outcome is refused:
// TestExpiredLeaseIsTakenOverAndFenced.)
func TestLateOutcomeAcceptedWhileNobodyTookOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	target, _ := must2(b.q.Enqueue(ctx, message("target")))(t)
	slow := must(b.q.Claim(ctx, "m365", 30*time.Second))(t)
	if slow == nil || slow.ID != target {
		t.Fatalf("claimed %v", slow)
	}
	older, _ := must2(b.q.Enqueue(ctx, message("older")))(t) // due before the target will be
	b.clock.Advance(time.Minute)
	// Another worker's claim sweeps the target's expired lease back to
	// ready and takes the older message.
	other := must(b.q.Claim(ctx, "m365", 30*time.Second))(t)
	if other == nil || other.ID != older {
		t.Fatalf("the sweeping claim took %v, want the older message", other)
	}
	if err := b.q.Complete(ctx, slow, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatalf("late outcome refused although nobody took the message: %v", err)
	}
	if st := must(b.q.Get(ctx, "m365", target))(t); st.Status != queue.StatusSent {
		t.Fatalf("status %s, want sent", st.Status)
	}
	if again := must(b.q.Claim(ctx, "m365", 30*time.Second))(t); again != nil {
		t.Fatalf("message %s is still waiting after its late outcome: it would be sent twice", again.ID)
	}
}

// A repeated Enqueue of the same id (its first reply was lost) stores
// nothing new and reports the message as stored; with an Idempotency-Key the
// same holds.
func TestEnqueueIsIdempotentByID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, key := range []string{"", "order-1"} {
		m := message("x")
		m.ID, m.IdempotencyKey = queue.NewID(b.clock.Now()), key
		id1, created1, err := b.q.Enqueue(ctx, m)
		if err != nil || !created1 || id1 != m.ID {
			t.Fatalf("first Enqueue = %q %v %v", id1, created1, err)
		}
		id2, created2, err := b.q.Enqueue(ctx, m)
		if err != nil || !created2 || id2 != m.ID {
			t.Fatalf("key %q: repeated Enqueue = %q %v %v, want the same id, created", key, id2, created2, err)
		}
		st := must(b.q.Get(ctx, "m365", m.ID))(t)
		if len(st.Events) != 1 {
			t.Fatalf("key %q: the repeat added an event: %v", key, st.Events)
		}
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d.Ready != 2 {
		t.Fatalf("ready = %d, want 2", d.Ready)
	}
}

// With Redis away for a moment, EnqueueRetrying stores the message once Redis
// answers again; with Redis gone for longer, it gives up with an error.
func TestEnqueueRetrying(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.srv.Stop()
	done := make(chan error, 1)
	go func() {
		_, created, err := b.q.EnqueueRetrying(ctx, message("late"), 10*time.Second)
		if err == nil && !created {
			err = errors.New("not created")
		}
		done <- err
	}()
	b.srv.Restart()
	if err := <-done; err != nil {
		t.Fatalf("EnqueueRetrying across a restart: %v", err)
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d.Ready != 1 {
		t.Fatalf("ready = %d, want 1", d.Ready)
	}
	b.srv.Stop()
	if _, _, err := b.q.EnqueueRetrying(ctx, message("never"), 200*time.Millisecond); err == nil {
		t.Fatal("EnqueueRetrying succeeded with Redis gone")
	}
}
