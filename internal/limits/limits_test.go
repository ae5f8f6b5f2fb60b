package limits_test

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/keys"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testclock"
)

type bundle struct {
	rdb   *redis.Client
	clock *testclock.Clock
	// a and b are two mailgate instances: separate clients, one Redis.
	a, b *limits.Limiter
}

func setup(t *testing.T) bundle {
	t.Helper()
	srv := redistest.Start(t)
	c := testclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	rdb := srv.Client()
	return bundle{
		rdb:   rdb,
		clock: c,
		a:     limits.New(rdb, "", c.Now),
		b:     limits.New(srv.Client(), "", c.Now),
	}
}

const (
	route   = "m365"
	mailbox = "alerts@contoso.com"
)

func TestRecipientsRollingWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	lim := limits.Limits{RecipientsPerDay: 10}
	t0 := b.clock.Now()
	W := limits.RecipientWindow

	admit := func(l *limits.Limiter, n int, want time.Duration) {
		t.Helper()
		wait, err := l.AdmitMessage(ctx, route, mailbox, n, lim)
		if err != nil || wait != want {
			t.Fatalf("at t0+%v: AdmitMessage(%d) = %v, %v; want %v", b.clock.Now().Sub(t0), n, wait, err, want)
		}
	}

	admit(b.a, 4, 0) // t0: 4
	b.clock.Advance(time.Hour)
	admit(b.b, 5, 0) // t0+1h: 5, by the other instance
	b.clock.Advance(time.Hour)
	// 9 + 2 > 10: one recipient must leave, the 4 of t0 leave at t0+W.
	admit(b.a, 2, W-2*time.Hour)
	admit(b.b, 1, 0) // 9 + 1 fits exactly
	// 10 + 5: the 4 of t0 and the 5 of t0+1h must leave.
	admit(b.a, 5, W-time.Hour)

	b.clock.Advance(W - 2*time.Hour - time.Millisecond) // t0+W-1ms: the t0 entry is still in
	admit(b.b, 4, time.Millisecond)
	b.clock.Advance(time.Millisecond) // t0+W: it is out
	admit(b.a, 4, 0)

	u, err := b.b.Usage(ctx, route, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if u.RecipientsLastDay != 10 || u.MessagesLastMinute != 1 || u.Connections != 0 {
		t.Fatalf("Usage = %+v, want 10 recipients, 1 message", u)
	}
	// Usage changes nothing but leaves out what has left the window.
	b.clock.Advance(time.Hour)
	if u, err = b.a.Usage(ctx, route, mailbox); err != nil || u.RecipientsLastDay != 5 || u.MessagesLastMinute != 0 {
		t.Fatalf("Usage an hour later = %+v, %v; want 5 recipients", u, err)
	}
}

func TestMessageOverDailyLimitIsAnError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	for _, lim := range []limits.Limits{
		{RecipientsPerDay: 10},
		{RecipientsPerDay: 10, MessagesPerMinute: 30},
	} {
		wait, err := b.a.AdmitMessage(ctx, route, mailbox, 11, lim)
		if !errors.Is(err, limits.ErrTooManyRecipients) || wait != 0 {
			t.Fatalf("%+v: AdmitMessage(11) = %v, %v; want ErrTooManyRecipients", lim, wait, err)
		}
	}
	if _, err := b.a.AdmitMessage(ctx, route, mailbox, 0, limits.Limits{RecipientsPerDay: 10}); err == nil || errors.Is(err, limits.ErrTooManyRecipients) {
		t.Fatalf("AdmitMessage(0 recipients) = %v, want another error", err)
	}
	// Nothing was counted.
	if n := b.rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys after refusals, want 0", n)
	}
}

// A message refused by one limit does not use up the other's budget.
func TestRefusalDoesNotConsumeTheOtherLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	both := limits.Limits{MessagesPerMinute: 30, RecipientsPerDay: 10}

	t.Run("per-minute refusal records no recipients", func(t *testing.T) {
		if wait, err := b.a.AdmitMessage(ctx, route, "one@contoso.com", 5, both); err != nil || wait != 0 {
			t.Fatalf("first AdmitMessage = %v, %v", wait, err)
		}
		wait, err := b.b.AdmitMessage(ctx, route, "one@contoso.com", 1, both)
		if err != nil {
			t.Fatal(err)
		}
		// Spacing is 61 s / 30 = 2.033 s (see the package comment); the
		// wait is that less the time since the first call, measured by
		// Redis's clock, which on a busy machine can be a good part of a
		// second: only "about one spacing" is this test's business.
		if spacing := limits.MessageWindow / 30; wait <= spacing-time.Second || wait > spacing+time.Millisecond {
			t.Fatalf("second AdmitMessage waits %v, want about %v (the per-minute spacing)", wait, spacing)
		}
		if u, err := b.a.Usage(ctx, route, "one@contoso.com"); err != nil || u.RecipientsLastDay != 5 {
			t.Fatalf("Usage = %+v, %v; want 5 recipients", u, err)
		}
	})

	t.Run("daily refusal spends no per-minute slot", func(t *testing.T) {
		if wait, err := b.a.AdmitMessage(ctx, route, "two@contoso.com", 10, limits.Limits{RecipientsPerDay: 10}); err != nil || wait != 0 {
			t.Fatalf("first AdmitMessage = %v, %v", wait, err)
		}
		wait, err := b.a.AdmitMessage(ctx, route, "two@contoso.com", 1, both)
		if err != nil || wait != limits.RecipientWindow {
			t.Fatalf("AdmitMessage over the daily limit = %v, %v; want %v", wait, err, limits.RecipientWindow)
		}
		b.clock.Advance(limits.RecipientWindow)
		// Had the refusal taken a GCRA slot, this would wait ~2 s.
		if wait, err := b.a.AdmitMessage(ctx, route, "two@contoso.com", 1, both); err != nil || wait != 0 {
			t.Fatalf("AdmitMessage after the window = %v, %v; want 0", wait, err)
		}
	})
}

// The per-minute limit runs on the Redis server's clock, so this test runs in
// real time, scaled: 600 a minute is 10 a second, and no window of one second
// may hold more than 10 admissions. Four callers on two instances retry from
// just before the wait they are given runs out.
//
// Each admission happened inside Redis somewhere between the caller's clock
// readings before and after the call (the server runs on this machine, on the
// same clock). The check counts every admission that could lie in a window,
// an upper bound of what did: it can fail spuriously only if call latencies
// add up to more than the 16.7 ms of slack the 61 s period leaves, and it can
// never pass wrongly.
func TestMessagesPerMinuteNeverExceededInAnyWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	const perMinute = 600
	perWindow, window := perMinute/60, time.Second
	lim := limits.Limits{MessagesPerMinute: perMinute}

	type admission struct{ before, after time.Time }
	var (
		mu   sync.Mutex
		got  []admission
		wg   sync.WaitGroup
		stop = time.Now().Add(2 * time.Second)
	)
	for i := range 4 {
		l := b.a
		if i%2 == 1 {
			l = b.b
		}
		wg.Go(func() {
			for time.Now().Before(stop) {
				before := time.Now()
				wait, err := l.AdmitMessage(ctx, route, mailbox, 1, lim)
				after := time.Now()
				if err != nil {
					t.Error(err)
					return
				}
				if wait == 0 {
					mu.Lock()
					got = append(got, admission{before, after})
					mu.Unlock()
					continue
				}
				// Sleep until just before the due time, then ask again and
				// again: admissions land as close to the GCRA's spacing as
				// callers can push them, the worst case for the window.
				if wait > 5*time.Millisecond {
					time.Sleep(wait - 5*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()

	// The most admissions any closed window [x, x+window] can hold: it is
	// reached with x at some admission's "after".
	sort.Slice(got, func(i, j int) bool { return got[i].after.Before(got[j].after) })
	most := 0
	for i := range got {
		x := got[i].after
		n := 0
		for _, a := range got[i:] {
			if !a.before.After(x.Add(window)) {
				n++
			}
		}
		most = max(most, n)
	}
	t.Logf("%d admissions in 2 s; at most %d could lie in one %v window", len(got), most, window)
	if most > perWindow {
		t.Fatalf("up to %d admissions in a %v window, limit %d", most, window, perWindow)
	}
	// 2 s at one per 101.7 ms is about 20; far fewer means the limiter
	// refuses what it should admit.
	if len(got) < 15 {
		t.Fatalf("only %d admissions in 2 s at %d a minute", len(got), perMinute)
	}
}

func TestMailboxesAreIndependent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	lim := limits.Limits{MessagesPerMinute: 1, RecipientsPerDay: 5}
	for _, mb := range []string{"a@contoso.com", "b@contoso.com"} {
		if wait, err := b.a.AdmitMessage(ctx, route, mb, 5, lim); err != nil || wait != 0 {
			t.Fatalf("%s: AdmitMessage = %v, %v", mb, wait, err)
		}
		if wait, err := b.a.AdmitMessage(ctx, route, mb, 1, lim); err != nil || wait == 0 {
			t.Fatalf("%s: second AdmitMessage = %v, %v; want a wait", mb, wait, err)
		}
		for range 3 {
			if le, wait, err := b.a.AcquireConn(ctx, route, mb, 3, time.Minute); err != nil || le == nil {
				t.Fatalf("%s: AcquireConn = %v, %v, %v", mb, le, wait, err)
			}
		}
	}
	// The same mailbox on another route has its own budget.
	if wait, err := b.a.AdmitMessage(ctx, "other", "a@contoso.com", 5, lim); err != nil || wait != 0 {
		t.Fatalf("other route: AdmitMessage = %v, %v", wait, err)
	}
}

func TestZeroMeansUnlimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	for i := range 100 {
		if wait, err := b.a.AdmitMessage(ctx, route, mailbox, 1000, limits.Limits{}); err != nil || wait != 0 {
			t.Fatalf("AdmitMessage %d = %v, %v", i, wait, err)
		}
	}
	if n := b.rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys without limits, want none", n)
	}
	// A lone limit applies alone.
	for i := range 50 {
		if wait, err := b.a.AdmitMessage(ctx, route, mailbox, 1000, limits.Limits{RecipientsPerDay: 50000}); err != nil || wait != 0 {
			t.Fatalf("AdmitMessage %d with only a daily limit = %v, %v", i, wait, err)
		}
	}
	for i := range 10 {
		if le, wait, err := b.a.AcquireConn(ctx, route, mailbox, 0, time.Minute); err != nil || le == nil {
			t.Fatalf("AcquireConn %d without limit = %v, %v, %v", i, le, wait, err)
		}
	}
	if u, err := b.a.Usage(ctx, route, mailbox); err != nil || u.Connections != 10 || u.RecipientsLastDay != 50000 {
		t.Fatalf("Usage = %+v, %v", u, err)
	}
}

// Every key of a mailbox carries the hash tag {route:mailbox}, mailbox lower
// case, so one script touches one slot on Redis Cluster.
func TestKeysShareOneHashTag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if _, err := b.a.AdmitMessage(ctx, route, "Alerts@Contoso.COM", 1, limits.Limits{MessagesPerMinute: 30, RecipientsPerDay: 10}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.a.AcquireConn(ctx, route, "ALERTS@contoso.com", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	keys := b.rdb.Keys(ctx, "*").Val()
	sort.Strings(keys)
	want := []string{
		"mailgate:limits:{m365:alerts@contoso.com}:conns",
		"mailgate:limits:{m365:alerts@contoso.com}:log",
		"mailgate:limits:{m365:alerts@contoso.com}:rcpts",
		"rate:mailgate:limits:{m365:alerts@contoso.com}:gcra",
	}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	for _, r := range []string{"a:b", "a{b", "a}b", ""} {
		if _, err := b.a.AdmitMessage(ctx, r, mailbox, 1, limits.Limits{RecipientsPerDay: 1}); err == nil {
			t.Errorf("route %q accepted", r)
		}
	}
}

// The running sum beside the log is rebuilt from the log when it goes
// missing or says more than the log holds (eviction, a manual DEL).
func TestRecipientSumHealsFromLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	lim := limits.Limits{RecipientsPerDay: 5}
	sumKey := "mailgate:limits:{m365:alerts@contoso.com}:rcpts"
	if wait, err := b.a.AdmitMessage(ctx, route, mailbox, 3, lim); err != nil || wait != 0 {
		t.Fatalf("AdmitMessage = %v, %v", wait, err)
	}
	b.rdb.Del(ctx, sumKey)
	if wait, err := b.a.AdmitMessage(ctx, route, mailbox, 3, lim); err != nil || wait != limits.RecipientWindow {
		t.Fatalf("after the sum was deleted: AdmitMessage(3) = %v, %v; want %v", wait, err, limits.RecipientWindow)
	}
	b.rdb.Set(ctx, sumKey, 100, 0)
	if wait, err := b.a.AdmitMessage(ctx, route, mailbox, 2, lim); err != nil || wait != 0 {
		t.Fatalf("after the sum was inflated: AdmitMessage(2) = %v, %v; want 0", wait, err)
	}
	if u, err := b.a.Usage(ctx, route, mailbox); err != nil || u.RecipientsLastDay != 5 {
		t.Fatalf("Usage = %+v, %v; want 5 recipients", u, err)
	}
}

// The admit script's GCRA is redis_rate's: the state one writes, the other
// honours, so a mailbox's pace survives an upgrade and a mixed fleet.
func TestGCRACompatibleWithRedisRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	lim := limits.Limits{MessagesPerMinute: 30}
	k, err := keys.New("").Mailbox(route, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	rr := redis_rate.NewLimiter(b.rdb)
	rl := redis_rate.Limit{Rate: 30, Period: limits.MessageWindow, Burst: 1}
	if res, err := rr.Allow(ctx, k.GCRA, rl); err != nil || res.Allowed != 1 {
		t.Fatalf("redis_rate: %+v %v", res, err)
	}
	spacing := limits.MessageWindow / 30
	wait, err := b.a.AdmitMessage(ctx, route, mailbox, 1, lim)
	if err != nil || wait <= spacing-time.Second || wait > spacing+time.Millisecond {
		t.Fatalf("after redis_rate admitted one: wait %v, %v; want about %v", wait, err, spacing)
	}
	other := "other@contoso.com"
	if wait, err := b.a.AdmitMessage(ctx, route, other, 1, lim); err != nil || wait != 0 {
		t.Fatalf("first admission: %v, %v", wait, err)
	}
	k2, err := keys.New("").Mailbox(route, other)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rr.Allow(ctx, k2.GCRA, rl)
	if err != nil || res.Allowed != 0 || res.RetryAfter <= spacing-time.Second || res.RetryAfter > spacing {
		t.Fatalf("redis_rate after the script admitted one: %+v %v; want a refusal for about %v", res, err, spacing)
	}
}
