package delivery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/smtpreply"
)

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	t.Parallel()
	initial, maxB := 30*time.Second, 30*time.Minute
	prevHi := time.Duration(0)
	for n := 1; n <= 12; n++ {
		lo := Backoff(n, initial, maxB, 0)
		hi := Backoff(n, initial, maxB, 0.999999)
		if lo > hi || hi > maxB || lo < initial/2 {
			t.Fatalf("attempt %d: backoff in [%v, %v], want within [%v, %v]", n, lo, hi, initial/2, maxB)
		}
		if hi < prevHi {
			t.Fatalf("attempt %d: backoff shrank from %v to %v", n, prevHi, hi)
		}
		prevHi = hi
	}
	if got := Backoff(1, initial, maxB, 0); got != 15*time.Second {
		t.Fatalf("first backoff without jitter = %v, want 15s (half of 30s)", got)
	}
	if got := Backoff(20, initial, maxB, 0.5); got < maxB*3/4-time.Second || got > maxB {
		t.Fatalf("late backoff = %v, want about 3/4 of the cap", got)
	}
}

func TestRoundWait(t *testing.T) {
	t.Parallel()
	for in, want := range map[time.Duration]string{
		123 * time.Millisecond:                "120ms",
		1234 * time.Millisecond:               "1.2s",
		61*time.Second + 400*time.Millisecond: "1m1s",
	} {
		if got := roundWait(in).String(); got != want {
			t.Errorf("roundWait(%v) = %s, want %s", in, got, want)
		}
	}
}

// decideWorker is a worker with a fixed clock and no jitter, for decide.
func decideWorker(now time.Time) *Worker {
	return NewWorker(WorkerOptions{
		Route:  &config.Route{Name: "m365", Auth: config.RouteAuth{Mechanism: config.MechLogin, Username: "relay@contoso.com"}},
		Policy: Policy{MaxAge: time.Hour, BackoffInitial: time.Minute, BackoffMax: 10 * time.Minute},
		Now:    func() time.Time { return now },
		Jitter: func() float64 { return 0 },
	})
}

func reply(code int, text string) smtpreply.Reply { return smtpreply.Parse(code, text) }

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	fresh := &queue.Job{ID: "j", CreatedAt: now.Add(-time.Minute), Recipients: []string{"a@x.com", "b@x.com"}}
	old := &queue.Job{ID: "j", CreatedAt: now.Add(-time.Hour), Recipients: []string{"a@x.com"}, Attempts: 7}
	ok := reply(250, "2.0.0 OK")
	cases := []struct {
		name      string
		job       *queue.Job
		res       Result
		err       error
		status    string
		attempted bool
		rcpts     []string // the recipients left for a retry
		detailHas string
		wantHold  bool
		due       time.Duration // from now, for deferred
	}{
		{name: "all accepted", job: fresh, res: Result{Reply: ok, Accepted: []string{"a@x.com", "b@x.com"}},
			status: queue.StatusSent, attempted: true, detailHas: "accepted for a@x.com, b@x.com"},
		{name: "one refused for good", job: fresh, res: Result{Reply: ok, Accepted: []string{"b@x.com"},
			Refused: []RecipientReply{{"a@x.com", reply(550, "5.1.10 not found")}}},
			status: queue.StatusSent, attempted: true, detailHas: "refused a@x.com: 550 5.1.10"},
		{name: "one refused for now", job: fresh, res: Result{Reply: ok, Accepted: []string{"b@x.com"},
			Refused: []RecipientReply{{"a@x.com", reply(452, "4.5.3 too many recipients")}}},
			status: queue.StatusDeferred, attempted: true, rcpts: []string{"a@x.com"}, detailHas: "deferred a@x.com", due: 30 * time.Second},
		{name: "all refused for good", job: fresh, res: Result{Refused: []RecipientReply{
			{"a@x.com", reply(550, "5.1.10 x")}, {"b@x.com", reply(550, "5.1.10 y")}}},
			status: queue.StatusFailed, attempted: true},
		{name: "network error", job: fresh, err: &StepError{Stage: StageConnect, Err: errors.New("connection refused")},
			status: queue.StatusDeferred, attempted: true, detailHas: "connect failed", due: 30 * time.Second},
		{name: "4xx at DATA", job: fresh, err: &StepError{Stage: StageData, Reply: ptr(reply(451, "4.7.500 busy"))},
			status: queue.StatusDeferred, attempted: true, detailHas: "data: 451 4.7.500", due: 30 * time.Second},
		{name: "Send As denied", job: fresh, err: &StepError{Stage: StageMail, Reply: ptr(reply(550, "5.7.60 no send as"))},
			status: queue.StatusFailed, attempted: true, detailHas: "Add-RecipientPermission"},
		{name: "SMTP AUTH disabled holds the route", job: fresh, err: &StepError{Stage: StageAuth, Reply: ptr(reply(535, "5.7.139 disabled"))},
			status: queue.StatusQueued, attempted: false, wantHold: true, detailHas: "is held"},
		{name: "last attempt at max_age, not after it", job: &queue.Job{CreatedAt: now.Add(-59*time.Minute - 50*time.Second), Attempts: 3},
			err:    &StepError{Stage: StageData, Reply: ptr(reply(451, "4.3.0 later"))},
			status: queue.StatusDeferred, attempted: true, due: 10 * time.Second},
		{name: "past max_age fails with the reason", job: old, err: &StepError{Stage: StageData, Reply: ptr(reply(451, "4.3.0 later"))},
			status: queue.StatusFailed, attempted: true, detailHas: "max_age"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := decideWorker(now)
			w.policy.HoldRoutes = tc.wantHold
			o, hold := w.decide(tc.job, tc.res, tc.err)
			if o.Status != tc.status || o.Attempted != tc.attempted {
				t.Fatalf("outcome %s attempted=%v, want %s attempted=%v (%s)", o.Status, o.Attempted, tc.status, tc.attempted, o.Detail)
			}
			if tc.detailHas != "" && !strings.Contains(o.Detail, tc.detailHas) {
				t.Fatalf("detail %q lacks %q", o.Detail, tc.detailHas)
			}
			if tc.rcpts != nil && strings.Join(o.Recipients, ",") != strings.Join(tc.rcpts, ",") {
				t.Fatalf("recipients left %v, want %v", o.Recipients, tc.rcpts)
			}
			if (hold != nil && hold.route) != tc.wantHold {
				t.Fatalf("hold = %+v, want route hold %v", hold, tc.wantHold)
			}
			if tc.due != 0 && !o.Due.Equal(now.Add(tc.due)) {
				t.Fatalf("due in %v, want %v", o.Due.Sub(now), tc.due)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
