package delivery

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/smtpreply"
)

// decide turns an attempt's result into the outcome to record, and says
// whether the route or the mailbox must stop.
func (w *Worker) decide(job *queue.Job, res Result, err error) (queue.Outcome, *holdAction) {
	var held errRouteHeld
	if errors.As(err, &held) {
		return w.handBack(held.reason), nil
	}
	if err != nil {
		var se *StepError
		if !errors.As(err, &se) {
			se = &StepError{Stage: StageConnect, Err: err}
		}
		if se.Reply == nil {
			d := Diagnose(w.route, se)
			detail := withHint(fmt.Sprintf("%s failed: %v", se.Stage, se.Err), d.Hint)
			if d.Config && w.policy.HoldRoutes {
				return w.handBack(detail), &holdAction{route: true, reason: detail}
			}
			return w.deferred(job, nil, nil, detail), nil
		}
		resp := response(*se.Reply)
		v := smtpreply.Classify(*se.Reply)
		detail := withHint(se.Stage+": "+se.Reply.String(), Diagnose(w.route, se).Hint)
		switch v.Action {
		case smtpreply.Fail:
			return queue.Outcome{Status: queue.StatusFailed, Attempted: true, Response: resp, Detail: detail}, nil
		case smtpreply.HoldRoute:
			if w.policy.HoldRoutes && w.mailboxOnly(se) {
				// One mailbox of a {from} route cannot authenticate (SMTP AUTH
				// is often enabled mailbox by mailbox): only its messages
				// wait, and it is tried again once per probe interval.
				until := w.now().Add(w.policy.ProbeInterval)
				o := queue.Outcome{Status: queue.StatusQueued, Due: until, Response: resp, LaneWaits: true,
					Detail: "mailbox " + mailbox.Of(w.route, job.From) + " cannot authenticate, its messages wait: " + detail}
				return o, &holdAction{mailbox: true, until: until, reason: detail}
			}
			if w.policy.HoldRoutes {
				return w.handBack(detail), &holdAction{route: true, reason: detail}
			}
		case smtpreply.WaitMailbox:
			if w.policy.HoldRoutes {
				until := w.now().Add(w.policy.QuotaWait)
				o := queue.Outcome{Status: queue.StatusQueued, Due: until, Response: resp, LaneWaits: true,
					Detail: detail + "; waiting until " + until.UTC().Format(time.RFC3339)}
				return o, &holdAction{mailbox: true, until: until, reason: detail}
			}
		}
		return w.deferred(job, nil, resp, detail), nil
	}

	var temp, perm []RecipientReply
	for _, r := range res.Refused {
		if smtpreply.Classify(r.Reply).Action == smtpreply.Fail {
			perm = append(perm, r)
		} else {
			temp = append(temp, r)
		}
	}
	var parts []string
	if len(res.Accepted) > 0 {
		parts = append(parts, fmt.Sprintf("accepted for %s: %s", strings.Join(res.Accepted, ", "), res.Reply))
	}
	for _, r := range perm {
		parts = append(parts, fmt.Sprintf("refused %s: %s", r.Recipient, r.Reply))
	}
	for _, r := range temp {
		parts = append(parts, fmt.Sprintf("deferred %s: %s", r.Recipient, r.Reply))
	}
	detail := strings.Join(parts, "; ")
	if len(temp) > 0 {
		rest := make([]string, len(temp))
		for i, r := range temp {
			rest[i] = r.Recipient
		}
		resp := response(temp[0].Reply)
		if len(res.Accepted) > 0 {
			resp = response(res.Reply)
		}
		return w.deferred(job, rest, resp, detail), nil
	}
	if len(res.Accepted) == 0 {
		return queue.Outcome{Status: queue.StatusFailed, Attempted: true, Response: response(perm[0].Reply), Detail: detail}, nil
	}
	return queue.Outcome{Status: queue.StatusSent, Attempted: true, Response: response(res.Reply), Detail: detail}, nil
}

// deferred schedules the next attempt, or fails the message when that
// attempt would come after max_age.
func (w *Worker) deferred(job *queue.Job, rcpts []string, resp *queue.Response, detail string) queue.Outcome {
	now := w.now()
	deadline := job.CreatedAt.Add(w.policy.MaxAge)
	if !now.Before(deadline) {
		return queue.Outcome{Status: queue.StatusFailed, Attempted: true, Response: resp,
			Detail: fmt.Sprintf("not delivered within delivery.max_age (%s) after %d attempts; last: %s",
				w.policy.MaxAge, job.Attempts+1, detail)}
	}
	wait := Backoff(job.Attempts+1, w.policy.BackoffInitial, w.policy.BackoffMax, w.jitter())
	// The last attempt is made at max_age, not skipped because the backoff
	// would overshoot it.
	wait = min(wait, deadline.Sub(now))
	return queue.Outcome{Status: queue.StatusDeferred, Attempted: true, Due: now.Add(wait), Response: resp, Recipients: rcpts,
		Detail: fmt.Sprintf("%s; next attempt in %s", detail, roundWait(wait))}
}

// roundWait shows a wait with the precision that matters for its size.
func roundWait(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(10 * time.Millisecond)
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// Backoff is the wait before attempt n (n >= 1 counts attempts made):
// initial doubling per attempt up to max, of which the upper half is random
// ("equal jitter"), so retries of many messages spread out instead of
// hitting the server together.
func Backoff(n int, initial, max time.Duration, jitter float64) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

func response(r smtpreply.Reply) *queue.Response {
	return &queue.Response{Code: r.Code, EnhancedCode: r.Enhanced, Text: r.Text}
}

func withHint(detail, hint string) string {
	if hint == "" {
		return detail
	}
	return detail + " (" + hint + ")"
}
