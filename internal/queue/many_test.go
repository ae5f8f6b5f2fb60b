package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
)

// EnqueueMany stores each message on its own, in order, with the
// idempotency keys of Enqueue, also when Redis has lost its scripts.
func TestEnqueueMany(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if err := b.srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	first, _, err := b.q.Enqueue(ctx, withKey(message("earlier\r\n"), "k-old"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Client().ScriptFlush(ctx).Err(); err != nil { // NOSCRIPT on the pipeline
		t.Fatal(err)
	}
	ms := []queue.Message{
		withKey(message("one\r\n"), "k1"),
		withKey(message("replay\r\n"), "k-old"),
		message("two\r\n"),
		withKey(message("same key in one batch\r\n"), "k1"),
	}
	res := b.q.EnqueueMany(ctx, ms)
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
	if !res[0].Created || !res[2].Created || res[0].ID == res[2].ID {
		t.Fatalf("new messages: %+v", res)
	}
	if res[1].Created || res[1].ID != first {
		t.Fatalf("replayed key: %+v, want the earlier id %s", res[1], first)
	}
	if res[3].Created || res[3].ID != res[0].ID {
		t.Fatalf("a key used twice in one batch: %+v, want %s", res[3], res[0].ID)
	}
	if d, err := b.q.Depth(ctx, "m365"); err != nil || d.Ready != 3 {
		t.Fatalf("ready %d (%v), want 3", d.Ready, err)
	}
	// Again with the same ids (a retried pipeline): nothing new.
	again := b.q.EnqueueMany(ctx, ms)
	for i, r := range again {
		if r.Err != nil || r.ID != res[i].ID {
			t.Fatalf("retry of message %d: %+v, first %+v", i, r, res[i])
		}
	}
	if d, err := b.q.Depth(ctx, "m365"); err != nil || d.Ready != 3 {
		t.Fatalf("ready %d (%v) after a retry, want 3", d.Ready, err)
	}
}

// Concurrent EnqueueRetrying calls (sent together in pipelines) each get
// their own message's id, and every message is stored once; a second call
// with an earlier call's idempotency key gets the earlier id.
func TestEnqueueRetryingConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := message(fmt.Sprintf("m%d\r\n", i))
			m.ID = queue.NewID(b.clock.Now())
			if i%2 == 0 {
				m.IdempotencyKey = fmt.Sprintf("k%d", i)
			}
			id, created, err := b.q.EnqueueRetrying(ctx, m, time.Second)
			if err != nil || !created || id != m.ID {
				t.Errorf("message %d: %q %v %v, want %q", i, id, created, err, m.ID)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	if d, err := b.q.Depth(ctx, "m365"); err != nil || d.Ready != n {
		t.Fatalf("ready %d (%v), want %d", d.Ready, err, n)
	}
	for i, id := range ids {
		if st, err := b.q.Get(ctx, "m365", id); err != nil || st.Subject != "Disk full" {
			t.Fatalf("message %d: %v %v", i, st, err)
		}
	}
	m := withKey(message("again\r\n"), "k0")
	if id, created, err := b.q.EnqueueRetrying(ctx, m, time.Second); err != nil || created || id != ids[0] {
		t.Fatalf("key k0 again: %q %v %v, want %q not created", id, created, err, ids[0])
	}
}

func withKey(m queue.Message, key string) queue.Message {
	m.IdempotencyKey = key
	return m
}
