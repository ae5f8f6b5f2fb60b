package queue_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
)

// fail enqueues a message and fails it as a worker would on a 5xx.
func (b bundle) fail(t *testing.T, body string) string {
	t.Helper()
	ctx := context.Background()
	id, _, err := b.q.Enqueue(ctx, message(body))
	if err != nil {
		t.Fatal(err)
	}
	j, err := b.q.Claim(ctx, "m365", time.Minute)
	if err != nil || j == nil || j.ID != id {
		t.Fatalf("Claim = %+v, %v; want %s", j, err, id)
	}
	resp := &queue.Response{Code: 554, EnhancedCode: "5.6.0", Text: "Corrupt message content"}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Attempted: true,
		Response: resp, Detail: "554 5.6.0 Corrupt message content"}); err != nil {
		t.Fatal(err)
	}
	return id
}

func ids(page []queue.Status) []string {
	out := make([]string, len(page))
	for i, s := range page {
		out[i] = s.ID
	}
	return out
}

func TestRequeueGivesTheMessageBackWithItsBodyAndHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := b.fail(t, "hello\r\n")
	created := b.clock.Now()

	b.clock.Advance(3 * time.Hour)
	if err := b.q.Requeue(ctx, "m365", id); err != nil {
		t.Fatal(err)
	}
	st, err := b.q.Get(ctx, "m365", id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != queue.StatusQueued || st.Attempts != 1 || st.LastResponse == nil || st.LastResponse.Code != 554 {
		t.Fatalf("status after requeue: %+v", st)
	}
	last := st.Events[len(st.Events)-1]
	if len(st.Events) != 3 || last.Status != queue.StatusQueued || last.Detail != "requeued by an operator" {
		t.Fatalf("events after requeue: %+v", st.Events)
	}
	rdb := b.srv.Client()
	for _, k := range []string{"mailgate:{m365}:msg:" + id, "mailgate:{m365}:ev:" + id} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl != -1 {
			t.Fatalf("TTL of %s after requeue = %v, want none", k, ttl)
		}
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d != (queue.Depth{Ready: 1, Bytes: 7}) {
		t.Fatalf("depth after requeue = %+v", d)
	}

	j, err := b.q.Claim(ctx, "m365", time.Minute)
	if err != nil || j == nil || j.ID != id {
		t.Fatalf("Claim after requeue = %+v, %v", j, err)
	}
	if string(j.Body) != "hello\r\n" || j.Attempts != 1 || len(j.Recipients) != 2 {
		t.Fatalf("requeued job: %+v", j)
	}
	// max_age counts from the requeue, not from the message's creation.
	if !j.CreatedAt.Equal(b.clock.Now()) || j.CreatedAt.Equal(created) {
		t.Fatalf("job CreatedAt = %v, want the requeue time %v", j.CreatedAt, b.clock.Now())
	}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	if st := must(b.q.Get(ctx, "m365", id))(t); st.Status != queue.StatusSent || st.Attempts != 2 {
		t.Fatalf("status after delivery: %+v", st)
	}
}

func TestRequeueRefusesWhatIsNotAFailedMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	queued, _ := must2(b.q.Enqueue(ctx, message("q")))(t)
	tests := []struct{ name, id string }{
		{"unknown", queue.NewID(b.clock.Now())},
		{"malformed", "../../etc/passwd"},
		{"queued", queued},
	}
	j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct{ name, id string }{"sent", queued})
	failed := b.fail(t, "f")
	if err := b.q.Requeue(ctx, "m365", failed); err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct{ name, id string }{"already requeued", failed})
	for _, tt := range tests {
		if err := b.q.Requeue(ctx, "m365", tt.id); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("%s: Requeue = %v, want ErrNotFound", tt.name, err)
		}
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d != (queue.Depth{Ready: 1, Bytes: 1}) {
		t.Fatalf("depth = %+v", d)
	}
}

func TestDeleteRemovesEverythingButNotAMessageBeingSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rdb := b.srv.Client()

	failed := b.fail(t, "f")
	queued, _ := must2(b.q.Enqueue(ctx, message("q")))(t)
	for _, id := range []string{failed, queued} {
		if err := b.q.Delete(ctx, "m365", id); err != nil {
			t.Fatalf("Delete(%s): %v", id, err)
		}
		if _, err := b.q.Get(ctx, "m365", id); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("Get after Delete = %v", err)
		}
		if err := b.q.Delete(ctx, "m365", id); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("second Delete = %v, want ErrNotFound", err)
		}
	}
	if n := rdb.Exists(ctx, "mailgate:{m365}:msg:"+failed, "mailgate:{m365}:ev:"+failed,
		"mailgate:{m365}:msg:"+queued, "mailgate:{m365}:ev:"+queued).Val(); n != 0 {
		t.Fatalf("%d keys left after Delete", n)
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d != (queue.Depth{}) {
		t.Fatalf("depth after Delete = %+v", d)
	}

	sending, _ := must2(b.q.Enqueue(ctx, message("s")))(t)
	j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
	if err := b.q.Delete(ctx, "m365", sending); !errors.Is(err, queue.ErrInFlight) {
		t.Fatalf("Delete of a message being sent = %v, want ErrInFlight", err)
	}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
		t.Fatalf("the worker's outcome after a refused Delete: %v", err)
	}
}

func TestBulkRequeueAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	// More than one batch, so the batching is exercised.
	var failed []string
	for range queue.BulkBatch + 5 {
		failed = append(failed, b.fail(t, "x"))
		b.clock.Advance(time.Millisecond)
	}
	queued, _ := must2(b.q.Enqueue(ctx, message("stays")))(t)

	n, err := b.q.RequeueAll(ctx, "m365")
	if err != nil || n != len(failed) {
		t.Fatalf("RequeueAll = %d, %v; want %d", n, err, len(failed))
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d != (queue.Depth{Ready: int64(len(failed) + 1), Bytes: int64(len(failed) + len("stays"))}) {
		t.Fatalf("depth after RequeueAll = %+v", d)
	}
	if n, err := b.q.RequeueAll(ctx, "m365"); err != nil || n != 0 {
		t.Fatalf("second RequeueAll = %d, %v", n, err)
	}

	// Fail three of them again; DeleteAll removes exactly those.
	if err := b.q.Delete(ctx, "m365", queued); err != nil {
		t.Fatal(err)
	}
	for range len(failed) - 3 {
		j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
		if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusSent, Attempted: true}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		j := must(b.q.Claim(ctx, "m365", time.Minute))(t)
		if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Attempted: true}); err != nil {
			t.Fatal(err)
		}
	}
	stays, _ := must2(b.q.Enqueue(ctx, message("stays")))(t)
	n, err = b.q.DeleteAll(ctx, "m365")
	if err != nil || n != 3 {
		t.Fatalf("DeleteAll = %d, %v; want 3", n, err)
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d != (queue.Depth{Ready: 1, Bytes: int64(len("stays"))}) {
		t.Fatalf("depth after DeleteAll = %+v", d)
	}
	if st, err := b.q.Get(ctx, "m365", stays); err != nil || st.Status != queue.StatusQueued {
		t.Fatalf("a queued message was touched by DeleteAll: %+v, %v", st, err)
	}
}

func TestListFailedNewestFirstPagedAndPruned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rdb := b.srv.Client()

	var failed []string // oldest first
	for range 5 {
		failed = append(failed, b.fail(t, "x"))
		b.clock.Advance(time.Second)
	}
	// Two more fail in the same millisecond: the cursor must not lose one.
	failed = append(failed, b.fail(t, "y"), b.fail(t, "z"))
	newestFirst := slices.Clone(failed)
	slices.Reverse(newestFirst)
	if failed[5] < failed[6] { // equal scores list in reverse lexical order
		newestFirst[0], newestFirst[1] = failed[6], failed[5]
	} else {
		newestFirst[0], newestFirst[1] = failed[5], failed[6]
	}

	all, next, err := b.q.ListFailed(ctx, "m365", 100, "")
	if err != nil || next != "" || !slices.Equal(ids(all), newestFirst) {
		t.Fatalf("ListFailed = %v, %q, %v; want %v", ids(all), next, err, newestFirst)
	}
	if all[0].App != "monitoring" || all[0].Status != queue.StatusFailed || all[0].LastResponse.Code != 554 {
		t.Fatalf("listed message: %+v", all[0])
	}

	var paged []string
	cursor := ""
	for range 10 {
		page, next, err := b.q.ListFailed(ctx, "m365", 1, cursor)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(page)...)
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(paged, newestFirst) {
		t.Fatalf("pages of 1 = %v, want %v", paged, newestFirst)
	}
	if _, _, err := b.q.ListFailed(ctx, "m365", 1, "nonsense"); !errors.Is(err, queue.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}

	// The oldest two expire (their retention ended); they disappear from
	// the list and from the failed set.
	rdb.Del(ctx, "mailgate:{m365}:msg:"+failed[0], "mailgate:{m365}:msg:"+failed[1])
	page, next, err := b.q.ListFailed(ctx, "m365", 100, "")
	if err != nil || next != "" || !slices.Equal(ids(page), newestFirst[:5]) {
		t.Fatalf("after expiry: %v, %q, %v", ids(page), next, err)
	}
	if d := must(b.q.Depth(ctx, "m365"))(t); d.Failed != 5 {
		t.Fatalf("failed set after pruning holds %d, want 5", d.Failed)
	}
	page, next = must2(b.q.ListFailed(ctx, "m365", 4, ""))(t)
	if len(page) != 4 || next == "" {
		t.Fatalf("a full page must give a cursor: %v, %q", ids(page), next)
	}
}
