package queue_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/keys"
	"github.com/mailgate/mailgate/internal/queue"
)

func from(sender, body string) queue.Message {
	m := message(body)
	m.From = sender
	return m
}

func (b bundle) enqueue(t *testing.T, m queue.Message) string {
	t.Helper()
	id, _, err := b.q.Enqueue(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Millisecond) // distinct due times: a defined order
	return id
}

func (b bundle) claimNext(t *testing.T) *queue.Job {
	t.Helper()
	j, err := b.q.Claim(context.Background(), "m365", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A mailbox told to wait waits as a whole: none of its messages is claimed
// before its time, another mailbox's message queued behind them is, and the
// message handed back keeps its place at the front of its lane.
func TestLaneWaitsAsAWhole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var alice []string
	for i := 0; i < 5; i++ {
		alice = append(alice, b.enqueue(t, from("Alice@contoso.com", "a")))
	}
	bob := b.enqueue(t, from("bob@contoso.com", "b"))

	j := b.claimNext(t)
	if j == nil || j.ID != alice[0] || j.Lane != "alice@contoso.com" {
		t.Fatalf("first claim %+v, want alice's first", j)
	}
	if err := b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusQueued, Due: b.clock.Now().Add(time.Minute), LaneWaits: true}); err != nil {
		t.Fatal(err)
	}
	if j := b.claimNext(t); j == nil || j.ID != bob {
		t.Fatalf("claim while alice waits: %+v, want bob's", j)
	}
	jobs, next, err := b.q.ClaimBatch(ctx, "m365", time.Minute, queue.ClaimOptions{Max: 8})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("claimed %d while alice waits (%v)", len(jobs), err)
	}
	if want := b.clock.Now().Add(time.Minute).Truncate(time.Millisecond); next.Before(want.Add(-10*time.Millisecond)) || next.After(want) {
		t.Errorf("next %s, want about %s", next, want)
	}
	b.clock.Advance(time.Minute)
	jobs, _, err = b.q.ClaimBatch(ctx, "m365", time.Minute, queue.ClaimOptions{Max: 3})
	if err != nil || len(jobs) != 3 {
		t.Fatalf("batch after the wait: %d jobs, %v", len(jobs), err)
	}
	for i, j := range jobs {
		if j.ID != alice[i] {
			t.Errorf("batch[%d] = %s, want alice[%d] (the handed-back one first)", i, j.ID, i)
		}
	}
}

// Lanes take turns: a backlog of one mailbox does not hold up another's
// message queued after it.
func TestLanesTakeTurns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a1 := b.enqueue(t, from("alice@contoso.com", "1"))
	a2 := b.enqueue(t, from("alice@contoso.com", "2"))
	a3 := b.enqueue(t, from("alice@contoso.com", "3"))
	b1 := b.enqueue(t, from("bob@contoso.com", "1"))
	var got []string
	for j := b.claimNext(t); j != nil; j = b.claimNext(t) {
		got = append(got, j.ID)
		b.clock.Advance(time.Millisecond)
	}
	want := []string{a1, b1, a2, a3}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("claim order %v, want %v", got, want)
	}
}

// With a pace, a lane's next message is not claimed before the pace has
// passed since the last one was.
func TestLanePace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.enqueue(t, from("alice@contoso.com", "1"))
	second := b.enqueue(t, from("alice@contoso.com", "2"))
	o := queue.ClaimOptions{Max: 1, Pace: 2 * time.Second}
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 1 {
		t.Fatal("nothing claimed")
	}
	b.clock.Advance(1999 * time.Millisecond)
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 0 {
		t.Fatal("claimed within the pace")
	}
	b.clock.Advance(time.Millisecond)
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 1 || jobs[0].ID != second {
		t.Fatalf("after the pace: %v", jobs)
	}
}

// A lane that emptied while it still waits (its pace, here) keeps the wait
// for the next message that joins it, and a message joining a lane whose
// time is already set does not move it earlier; a message due before the
// lane's time (its only message is scheduled for later) does.
func TestLaneJoinedWhileWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	o := queue.ClaimOptions{Max: 1, Pace: 2 * time.Second}
	b.enqueue(t, from("alice@contoso.com", "1"))
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 1 {
		t.Fatal("nothing claimed")
	}
	second := b.enqueue(t, from("alice@contoso.com", "2")) // the lane was empty, its pace runs
	third := b.enqueue(t, from("alice@contoso.com", "3"))  // joins a lane whose time is set
	b.clock.Advance(time.Second)
	if jobs, next := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 0 || next.IsZero() {
		t.Fatalf("claimed %d within the pace of an emptied lane (next %s)", len(jobs), next)
	}
	b.clock.Advance(time.Second)
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 1 || jobs[0].ID != second {
		t.Fatalf("after the pace: %v, want the second message", jobs)
	}
	b.clock.Advance(2 * time.Second)
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 1 || jobs[0].ID != third {
		t.Fatalf("after the next pace: %v, want the third message", jobs)
	}

	later := from("bob@contoso.com", "later")
	later.SendAt = b.clock.Now().Add(time.Hour)
	b.enqueue(t, later)
	now := b.enqueue(t, from("bob@contoso.com", "now"))
	if jobs, _ := must2(b.q.ClaimBatch(ctx, "m365", time.Minute, o))(t); len(jobs) != 1 || jobs[0].ID != now {
		t.Fatalf("a message due now in a lane whose only message is scheduled: %v, want it claimed", jobs)
	}
}

// A message deleted (or cancelled) while it waits leaves an entry in its
// lane that the claim drops.
func TestLaneSkipsWhatLeftReady(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gone := b.enqueue(t, from("alice@contoso.com", "1"))
	kept := b.enqueue(t, from("alice@contoso.com", "2"))
	// Remove from ready only, the way a script that knows no lanes does.
	if err := b.srv.Client().ZRem(context.Background(), keys.New("").Route("m365").Ready(), gone).Err(); err != nil {
		t.Fatal(err)
	}
	if j := b.claimNext(t); j == nil || j.ID != kept {
		t.Fatalf("claimed %+v, want the message still in ready", j)
	}
	if j := b.claimNext(t); j != nil {
		t.Fatalf("claimed %s twice", j.ID)
	}
}

// Messages queued by the shape before lanes (in ready only, without a lane
// field) are found after Migrate, and only once.
func TestMigrateOldShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	old := b.enqueue(t, from("Alice@Contoso.com", "old"))
	rk := keys.New("").Route("m365")
	rdb := b.srv.Client()
	if err := rdb.Del(ctx, rk.Lanes(), rk.Lane("alice@contoso.com")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HDel(ctx, rk.Msg(old), "lane").Err(); err != nil {
		t.Fatal(err)
	}
	if j := b.claimNext(t); j != nil {
		t.Fatal("the test did not remove the lane")
	}
	n, err := b.q.Migrate(ctx, "m365")
	if err != nil || n != 1 {
		t.Fatalf("Migrate = %d, %v", n, err)
	}
	if n := must(b.q.Migrate(ctx, "m365"))(t); n != 0 {
		t.Fatalf("second Migrate moved %d", n)
	}
	j := b.claimNext(t)
	if j == nil || j.ID != old || j.Lane != "alice@contoso.com" {
		t.Fatalf("claim after Migrate: %+v", j)
	}
}

// A message that waited past max_age without a claim fails with the
// reason given, keeps its body and can be requeued; a younger one stays.
func TestExpireWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	old := b.enqueue(t, from("alice@contoso.com", "old"))
	b.clock.Advance(30 * time.Minute)
	young := b.enqueue(t, from("alice@contoso.com", "young"))
	b.clock.Advance(31 * time.Minute)
	reason := func(lane string) string { return "expired after 1h while route m365 was held: 535 " + lane }
	n, err := b.q.ExpireWaiting(ctx, "m365", time.Hour, time.Minute, 100, reason)
	if err != nil || n != 1 {
		t.Fatalf("ExpireWaiting = %d, %v", n, err)
	}
	if n := must(b.q.ExpireWaiting(ctx, "m365", time.Hour, time.Minute, 100, reason))(t); n != 0 {
		t.Fatalf("a second sweep within the period did work: %d", n)
	}
	st, err := b.q.Get(ctx, "m365", old)
	if err != nil || st.Status != queue.StatusFailed {
		t.Fatalf("old: %+v %v", st, err)
	}
	if last := st.Events[len(st.Events)-1]; last.Detail != "expired after 1h while route m365 was held: 535 alice@contoso.com" {
		t.Fatalf("last event %+v", last)
	}
	if st := must(b.q.Get(ctx, "m365", young))(t); st.Status != queue.StatusQueued {
		t.Fatalf("young: %s", st.Status)
	}
	// The failed message no longer counts as waiting; the young one does.
	if d, err := b.q.Depth(ctx, "m365"); err != nil || d.Ready != 1 || d.Failed != 1 || d.Bytes != int64(len("young")) {
		t.Fatalf("depth after the sweep: %+v, %v", d, err)
	}
	if err := b.q.Requeue(ctx, "m365", old); err != nil {
		t.Fatal(err)
	}
	j := b.claimNext(t)
	if j == nil || j.ID != young && j.ID != old {
		t.Fatalf("claim after requeue: %+v", j)
	}
}
