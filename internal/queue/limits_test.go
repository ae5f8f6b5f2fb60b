package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/queue"
)

// limited is message(body) from app with limits.
func limited(app, body string, l queue.Limits) queue.Message {
	m := message(body)
	m.App = app
	m.Limits = l
	return m
}

// waiting checks the route's counted bytes and app's counted messages and
// bytes against what should wait.
func (b bundle) waiting(t *testing.T, app string, wantMsgs, wantBytes int64) {
	t.Helper()
	ctx := context.Background()
	m, by, err := b.q.AppWaiting(ctx, "m365", app)
	if err != nil {
		t.Fatal(err)
	}
	if m != wantMsgs || by != wantBytes {
		t.Errorf("app %s waiting = %d messages, %d bytes; want %d, %d", app, m, by, wantMsgs, wantBytes)
	}
}

func (b bundle) routeBytes(t *testing.T) int64 {
	t.Helper()
	d, err := b.q.Depth(context.Background(), "m365")
	if err != nil {
		t.Fatal(err)
	}
	return d.Bytes
}

func (b bundle) claim(t *testing.T) *queue.Job {
	t.Helper()
	j, err := b.q.Claim(context.Background(), "m365", time.Minute)
	if err != nil || j == nil {
		t.Fatalf("Claim = %+v, %v", j, err)
	}
	return j
}

func TestRouteFullRefusesAndStoresNothingUntilItDrains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rdb := b.srv.Client()
	l := queue.Limits{RouteMessages: 2}
	for i := 0; i < 2; i++ {
		if _, _, err := b.q.Enqueue(ctx, limited("a", "12345", l)); err != nil {
			t.Fatal(err)
		}
	}
	keysBefore := rdb.DBSize(ctx).Val()
	refused := limited("b", "12345", l)
	refused.ID = queue.NewID(b.clock.Now())
	refused.IdempotencyKey = "k1"
	if _, _, err := b.q.EnqueueRetrying(ctx, refused, time.Second); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("third message = %v, want ErrRouteFull", err)
	}
	if n := rdb.DBSize(ctx).Val(); n != keysBefore {
		t.Errorf("a refused message changed the key count from %d to %d", keysBefore, n)
	}
	if ok := must(b.q.Exists(ctx, "m365", refused.ID))(t); ok {
		t.Error("the refused message was stored")
	}
	// A message being delivered still counts.
	j := b.claim(t)
	if _, _, err := b.q.Enqueue(ctx, limited("b", "x", l)); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("with one in flight = %v, want ErrRouteFull", err)
	}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	if _, created, err := b.q.Enqueue(ctx, refused); err != nil || !created {
		t.Fatalf("after one was sent = %v, %v; want accepted", created, err)
	}
}

func TestRouteBytesLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	l := queue.Limits{RouteBytes: 10}
	// Bigger than the limit, but the queue is empty: it goes through.
	if _, _, err := b.q.Enqueue(ctx, limited("a", "0123456789012", l)); err != nil {
		t.Fatalf("into an empty queue: %v", err)
	}
	if _, _, err := b.q.Enqueue(ctx, limited("a", "0", l)); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("over the bytes = %v, want ErrRouteFull", err)
	}
	j := b.claim(t)
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	// Failed messages do not wait: they do not count.
	for _, body := range []string{"01234", "56789"} {
		if _, _, err := b.q.Enqueue(ctx, limited("a", body, l)); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
	if _, _, err := b.q.Enqueue(ctx, limited("a", "x", l)); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("11 bytes of 10 = %v, want ErrRouteFull", err)
	}
	if got := b.routeBytes(t); got != 10 {
		t.Errorf("route bytes = %d, want 10", got)
	}
}

func TestAppShareRefusesOnlyThatApp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	l := queue.Limits{RouteMessages: 10, AppMessages: 2, AppBytes: 100}
	for i := 0; i < 2; i++ {
		if _, _, err := b.q.Enqueue(ctx, limited("greedy", "hello", l)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.q.EnqueueRetrying(ctx, limited("greedy", "hello", l), time.Second); !errors.Is(err, queue.ErrAppFull) {
		t.Fatalf("over the app's share = %v, want ErrAppFull", err)
	}
	if _, _, err := b.q.Enqueue(ctx, limited("other", "hello", l)); err != nil {
		t.Fatalf("another app: %v", err)
	}
	// And by bytes.
	lb := queue.Limits{AppBytes: 8}
	if _, _, err := b.q.Enqueue(ctx, limited("other", "1234", lb)); !errors.Is(err, queue.ErrAppFull) {
		t.Fatalf("5+4 bytes of 8 = %v, want ErrAppFull", err)
	}
	b.waiting(t, "greedy", 2, 10)
	b.waiting(t, "other", 1, 5)
}

// The counters follow every way in and out of waiting, exactly, and are
// gone once nothing waits: no exit leaves a count behind.
func TestCountersStayExactAcrossEveryExit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rdb := b.srv.Client()
	enq := func(body string) string {
		t.Helper()
		id, _, err := b.q.Enqueue(ctx, limited("a", body, queue.Limits{}))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	sent, failed, deleted, deferred := enq("1"), enq("22"), enq("333"), enq("4444")
	b.waiting(t, "a", 4, 10)
	if got := b.routeBytes(t); got != 10 {
		t.Fatalf("route bytes = %d, want 10", got)
	}

	// A retried enqueue of the same id counts nothing twice.
	again := limited("a", "1", queue.Limits{})
	again.ID = sent
	if _, _, err := b.q.Enqueue(ctx, again); err != nil {
		t.Fatal(err)
	}
	b.waiting(t, "a", 4, 10)

	if err := b.q.Delete(ctx, "m365", deleted); err != nil {
		t.Fatal(err)
	}
	b.waiting(t, "a", 3, 7)

	outcome := map[string]queue.Outcome{
		sent:     {Status: queue.StatusSent, Attempted: true},
		failed:   {Status: queue.StatusFailed, Attempted: true},
		deferred: {Status: queue.StatusDeferred, Attempted: true, Due: b.clock.Now().Add(time.Minute)},
	}
	for i := range 3 {
		j := b.claim(t)
		if i == 0 {
			b.waiting(t, "a", 3, 7) // in flight still counts
		}
		if err := b.q.Complete(ctx, j, outcome[j.ID]); err != nil {
			t.Fatal(err)
		}
	}
	b.waiting(t, "a", 1, 4) // only the deferred one

	// A worker dies holding it; its lease expires and another takes over.
	b.clock.Advance(time.Minute)
	b.claim(t)
	b.clock.Advance(2 * time.Minute)
	j := b.claim(t)
	b.waiting(t, "a", 1, 4)
	// max_age ends it: failed, like any other failure.
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Detail: "max_age"}); err != nil {
		t.Fatal(err)
	}
	b.waiting(t, "a", 0, 0)

	// Requeued failed messages wait again, once each, however often requeued.
	if err := b.q.Requeue(ctx, "m365", failed); err != nil {
		t.Fatal(err)
	}
	b.waiting(t, "a", 1, 2)
	if n, err := b.q.RequeueAll(ctx, "m365"); err != nil || n != 1 {
		t.Fatalf("RequeueAll = %d, %v", n, err)
	}
	b.waiting(t, "a", 2, 6)
	if err := b.q.Delete(ctx, "m365", failed); err != nil {
		t.Fatal(err)
	}
	b.waiting(t, "a", 1, 4)
	j = b.claim(t)
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	// Exact, not merely reset: the hash is empty before any enqueue clears it.
	if h := rdb.HGetAll(ctx, "mailgate:{m365}:waiting").Val(); len(h) != 0 {
		t.Errorf("counters left after everything left: %v", h)
	}
}

// A counter that drifted upwards (here: written by hand) keeps a route
// full only until the route drains.
func TestStrayCountsClearWhenTheRouteDrains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rdb := b.srv.Client()
	l := queue.Limits{RouteBytes: 100, AppMessages: 5}
	if _, _, err := b.q.Enqueue(ctx, limited("a", "hello", l)); err != nil {
		t.Fatal(err)
	}
	rdb.HIncrBy(ctx, "mailgate:{m365}:waiting", "bytes", 1000)
	rdb.HIncrBy(ctx, "mailgate:{m365}:waiting", "app:a:messages", 1000)
	if _, _, err := b.q.Enqueue(ctx, limited("b", "hello", l)); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("with a stray count = %v, want ErrRouteFull", err)
	}
	j := b.claim(t)
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d.Bytes != 0 {
		t.Errorf("drained route shows %d bytes", d.Bytes)
	}
	for i := 0; i < 5; i++ {
		if _, _, err := b.q.Enqueue(ctx, limited("a", "hello", l)); err != nil {
			t.Fatalf("after draining, message %d: %v", i, err)
		}
	}
	b.waiting(t, "a", 5, 25)
}

func TestFailedSetIsPrunedWhenRetentionEnds(t *testing.T) {
	t.Parallel()
	b := setup(t) // retention 1h
	ctx := context.Background()
	b.fail(t, "old")
	b.clock.Advance(30 * time.Minute)
	kept := b.fail(t, "newer")
	if d := must(b.q.Depth(ctx, "m365"))(t); d.Failed != 2 {
		t.Fatalf("failed = %d, want 2", d.Failed)
	}
	b.clock.Advance(30*time.Minute + time.Second)
	d, err := b.q.Depth(ctx, "m365")
	if err != nil {
		t.Fatal(err)
	}
	if d.Failed != 1 {
		t.Fatalf("failed after the first one's retention = %d, want 1", d.Failed)
	}
	page, _, err := b.q.ListFailed(ctx, "m365", 10, "")
	if err != nil || len(page) != 1 || page[0].ID != kept {
		t.Fatalf("ListFailed = %v, %v; want only %s", ids(page), err, kept)
	}
}

// Work per prune is bounded: a backlog of expired ids goes in batches.
func TestPruneFailedIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rdb := b.srv.Client()
	old := b.clock.Now().Add(-2 * time.Hour).UnixMilli()
	for i := 0; i < queue.PruneBatch+7; i++ {
		rdb.ZAdd(ctx, "mailgate:{m365}:failed", redis.Z{Score: float64(old), Member: queue.NewID(b.clock.Now())})
	}
	if n, err := b.q.PruneFailed(ctx, "m365"); err != nil || n != queue.PruneBatch {
		t.Fatalf("first prune = %d, %v; want %d", n, err, queue.PruneBatch)
	}
	if n, err := b.q.PruneFailed(ctx, "m365"); err != nil || n != 7 {
		t.Fatalf("second prune = %d, %v; want 7", n, err)
	}
}

// Full says what the enqueue script does with the next message.
func TestFull(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		msgs, bytes, maxMsgs, maxBytes int64
		want                           bool
	}{
		{0, 0, 1, 1, false},       // empty: takes anything
		{1, 0, 1, 0, true},        // at the message limit
		{1, 5, 10, 5, true},       // at the bytes limit
		{1, 4, 10, 5, false},      // room for a message of one byte
		{5, 1 << 40, 0, 0, false}, // no limits
	} {
		if got := queue.Full(tt.msgs, tt.bytes, tt.maxMsgs, tt.maxBytes); got != tt.want {
			t.Errorf("Full(%d, %d, %d, %d) = %v", tt.msgs, tt.bytes, tt.maxMsgs, tt.maxBytes, got)
		}
	}
}

// A scheduled message waits like any other (it will be sent, and it holds
// Redis memory until then), and cancelling it takes it out of the count.
func TestScheduledCountsUntilCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := limited("a", "later", queue.Limits{RouteMessages: 1})
	m.SendAt = b.clock.Now().Add(time.Hour)
	id, _, err := b.q.Enqueue(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	b.waiting(t, "a", 1, 5)
	if _, _, err := b.q.Enqueue(ctx, limited("a", "now", queue.Limits{RouteMessages: 1})); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("with one scheduled = %v, want ErrRouteFull", err)
	}
	if err := b.q.Cancel(ctx, "m365", "a", id); err != nil {
		t.Fatal(err)
	}
	if h := b.srv.Client().HGetAll(ctx, "mailgate:{m365}:waiting").Val(); len(h) != 0 {
		t.Errorf("counters left after the cancel: %v", h)
	}
	if _, _, err := b.q.Enqueue(ctx, limited("a", "now", queue.Limits{RouteMessages: 1})); err != nil {
		t.Fatalf("after the cancel: %v", err)
	}
}

// The check and the store are one step: submissions racing for the last
// places of a route take exactly as many as the limit allows.
func TestConcurrentEnqueuesStopAtTheLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const limit, tries = 5, 40
	l := queue.Limits{RouteMessages: limit}
	errs := make(chan error, tries)
	for i := 0; i < tries; i++ {
		go func() {
			_, _, err := b.q.Enqueue(ctx, limited("a", "x", l))
			errs <- err
		}()
	}
	accepted := 0
	for i := 0; i < tries; i++ {
		switch err := <-errs; {
		case err == nil:
			accepted++
		case !errors.Is(err, queue.ErrRouteFull):
			t.Fatal(err)
		}
	}
	if accepted != limit {
		t.Errorf("%d accepted, want exactly %d", accepted, limit)
	}
	b.waiting(t, "a", limit, limit)
}
