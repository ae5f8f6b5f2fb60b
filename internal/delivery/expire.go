package delivery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/queue"
)

// delivery.max_age also ends the wait of messages that are never attempted:
// those of a held route and those of a mailbox that waits (a quota, a
// limit). A worker that claims such a message past max_age fails it instead
// of handing it back (expireIfWaiting); the messages nobody claims — a held
// route's, a mailbox's waiting for an hour — are failed by a sweep that one
// worker of all instances runs every expireEvery (expireWaiting). Either
// way the message keeps its body and can be requeued.

// expireEvery is how often the waiting messages of a route are swept for
// max_age, across all instances together.
const expireEvery = time.Minute

// expireSweepMost bounds one sweep's work; the rest waits for the next.
const expireSweepMost = 10000

// expireIfWaiting fails a message handed back without an attempt when it
// has waited for longer than max_age.
func (w *Worker) expireIfWaiting(job *queue.Job, o queue.Outcome) queue.Outcome {
	if o.Attempted || o.Status != queue.StatusQueued || w.policy.MaxAge <= 0 ||
		w.now().Before(job.CreatedAt.Add(w.policy.MaxAge)) {
		return o
	}
	age := fmtAge(w.policy.MaxAge)
	detail := fmt.Sprintf("expired after %s while mailbox %s waited for its limits", age, mailbox.Of(w.route, job.From))
	if held, ok := strings.CutPrefix(o.Detail, heldPrefix(w.route.Name)); ok {
		detail = fmt.Sprintf("expired after %s while route %s was held: %s", age, w.route.Name, held)
	} else if o.Detail != "" {
		detail = fmt.Sprintf("expired after %s while mailbox %s waited: %s", age, mailbox.Of(w.route, job.From), o.Detail)
	}
	return queue.Outcome{Status: queue.StatusFailed, Response: o.Response, Detail: detail}
}

// expireWaiting runs the max_age sweep of the route's waiting messages when
// no worker of any instance did within expireEvery.
func (w *Worker) expireWaiting(ctx context.Context) {
	if w.policy.MaxAge <= 0 {
		return
	}
	every := min(expireEvery, max(w.policy.ProbeInterval, time.Second))
	if w.now().Sub(w.lastSweep) < every {
		return
	}
	w.lastSweep = w.now()
	var held, asked bool
	var reason string
	n, err := w.queue.ExpireWaiting(ctx, w.route.Name, w.policy.MaxAge, every, expireSweepMost, func(lane string) string {
		age := fmtAge(w.policy.MaxAge)
		if !asked {
			held, reason = w.holds.heldNow(ctx)
			asked = true
		}
		if held {
			return fmt.Sprintf("expired after %s while route %s was held: %s", age, w.route.Name, reason)
		}
		mbox := mailbox.Of(w.route, lane)
		if w.health != nil && mbox != "" {
			if until, why, err := w.health.MailboxWait(ctx, w.route.Name, mbox); err == nil && until.After(w.now()) {
				return fmt.Sprintf("expired after %s while mailbox %s waited: %s", age, mbox, why)
			}
		}
		return fmt.Sprintf("expired after %s waiting to be sent (mailbox %s waited for its limits)", age, lane)
	})
	if err != nil {
		w.log.Warn("cannot sweep waiting messages past delivery.max_age", "err", err)
		return
	}
	if n > 0 {
		w.log.Warn("waiting messages failed: older than delivery.max_age; they can be requeued", "count", n, "held", held)
	}
}

// fmtAge shows a duration the way it is configured: 24h, not 24h0m0s.
func fmtAge(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
